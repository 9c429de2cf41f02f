"""Grouped convolution in Flax NNX, computed natively or by one of the JAX lowerings.

:class:`GroupedConv` is an ``nnx.Conv`` (the same ``kernel`` parameter, HWIO with I
the channels of one group) whose ``__call__`` follows ``conv_impl``. The lowerings live in
``resnext_jax.grouped``, shared with Keras on JAX; why there is a choice: ``resnext_spec.grouped``;
what each lowering measured: docs/grouped_convolutions.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from resnext_jax import LOWERINGS, patches_conv, split_conv, taps_conv
from resnext_spec.grouped import resolve_conv_impl
from resnext_spec.parts import STD_EPS

__all__ = ["GroupedConv", "patches_conv", "split_conv", "taps_conv"]


class GroupedConv(nnx.Conv):
    """``nnx.Conv`` with symmetric padding, computed by ``conv_impl``: a grouped conv, or a
    dense one in float64 (``resnext_spec.grouped``: XLA:CPU has no float64 conv kernel).

    The parameters are exactly ``nnx.Conv``'s, so weights and checkpoints do not
    depend on the lowering.
    """

    def __init__(self, *args, conv_impl: str = "auto", std: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.std = std  # the kernel standardised on each call (BiT; timm's StdConv2d)
        group_channels = self.in_features // self.feature_group_count
        float64 = jnp.dtype(self.dtype or self.param_dtype) == jnp.float64
        self.conv_impl = resolve_conv_impl(
            conv_impl, self.feature_group_count, "xla", jax.default_backend(), group_channels, float64
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.conv_impl == "native" and not self.std:
            return super().__call__(x)
        (pad, _), _ = self.padding
        stride = self.strides if isinstance(self.strides, int) else self.strides[0]
        bias = None if self.bias is None else self.bias[...]
        kernel = standardised(self.kernel[...]) if self.std else self.kernel[...]
        x, kernel, bias = self.promote_dtype((x, kernel, bias), dtype=self.dtype)
        if self.conv_impl == "native":
            y = jax.lax.conv_general_dilated(
                x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=self.feature_group_count,
            )  # fmt: skip
        else:
            y = LOWERINGS[self.conv_impl](x, kernel, self.feature_group_count, stride, pad)
        return y if bias is None else y + bias  # a lowering computes the conv alone


def standardised(kernel: jax.Array) -> jax.Array:
    """Weight standardisation of an HWIO kernel: each output filter (the last axis) to zero mean and
    unit biased variance over (kh, kw, in), eps 1e-8 (BiT's; timm's ``StdConv2d``)."""
    mean = jnp.mean(kernel, axis=(0, 1, 2), keepdims=True)
    var = jnp.mean(jnp.square(kernel - mean), axis=(0, 1, 2), keepdims=True)
    return (kernel - mean) * jax.lax.rsqrt(var + STD_EPS)
