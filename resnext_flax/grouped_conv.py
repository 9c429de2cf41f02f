"""Grouped convolution in Flax NNX, computed natively or as per-group patches.

:class:`GroupedConv` is an ``nnx.Conv`` (the same ``kernel`` parameter, HWIO with I
the channels of one group) whose ``__call__`` follows ``conv_impl``. Why there is a
choice: ``resnext_spec.grouped``; what each lowering measured: docs/grouped_convolutions.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from resnext_spec.grouped import PATCHES_BUDGET, patches_chunks, resolve_conv_impl
from resnext_spec.layout import conv_output_size


def patches_conv(
    x: jax.Array, w: jax.Array, groups: int, stride: int, padding: int, budget: int = PATCHES_BUDGET
) -> jax.Array:
    """Grouped conv of NHWC ``x`` with HWIO ``w`` by patches, in chunks of the batch.

    A chunk holds at most ``budget`` bytes of patches and is rematerialised: its
    patches are made again in the backward pass rather than kept, so memory stays
    near the native conv's (``resnext_spec.grouped``).
    """
    n, h, wd, c = x.shape
    chunks, size = patches_chunks(x.shape, w.shape[0], stride, padding, x.dtype.itemsize, budget)
    if chunks == 1:
        return _patches_conv(x, w, groups, stride, padding)
    xs = jnp.pad(x, ((0, chunks * size - n), (0, 0), (0, 0), (0, 0))).reshape(chunks, size, h, wd, c)
    one_chunk = jax.checkpoint(lambda xc: _patches_conv(xc, w, groups, stride, padding))
    out = jax.lax.map(one_chunk, xs)
    return out.reshape(chunks * size, *out.shape[2:])[:n]


def _patches_conv(x: jax.Array, w: jax.Array, groups: int, stride: int, padding: int) -> jax.Array:
    """Grouped conv of NHWC ``x`` with HWIO ``w``: im2col per group, one matmul batched over groups.

    Window (i, j) of the zero-padded input is the input that kernel tap (i, j) reads
    for every output pixel; side by side they are the columns of a dense conv's
    im2col, and group g's output is its columns times its (k*k*gi, go) kernel block.
    """
    k, _, gi, c_out = w.shape
    go = c_out // groups
    n, h, wd, c = x.shape
    ho, wo = conv_output_size(h, k, stride, padding), conv_output_size(wd, k, stride, padding)
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    windows = [
        jax.lax.slice(
            xp,
            (0, i, j, 0),
            (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
            (1, stride, stride, 1),
        )
        for i in range(k)
        for j in range(k)
    ]
    # cols[g, pixel, (tap, i)]: group-major, so that the matmul batches over groups.
    cols = jnp.stack([win.reshape(n * ho * wo, groups, gi) for win in windows], axis=2)
    cols = cols.transpose(1, 0, 2, 3).reshape(groups, n * ho * wo, k * k * gi)
    w_g = w.reshape(k * k, gi, groups, go).transpose(2, 0, 1, 3).reshape(groups, k * k * gi, go)
    out = jnp.matmul(cols, w_g)  # (groups, pixels, go)
    return out.transpose(1, 0, 2).reshape(n, ho, wo, c_out)


class GroupedConv(nnx.Conv):
    """``nnx.Conv`` with ``feature_group_count`` > 1 and symmetric padding, computed by ``conv_impl``.

    The parameters are exactly ``nnx.Conv``'s, so weights and checkpoints do not
    depend on the lowering.
    """

    def __init__(self, *args, conv_impl: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conv_impl = resolve_conv_impl(conv_impl, self.feature_group_count, "xla", jax.default_backend())

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.conv_impl == "native":
            return super().__call__(x)
        (pad, _), _ = self.padding
        stride = self.strides if isinstance(self.strides, int) else self.strides[0]
        x, kernel, _ = self.promote_dtype((x, self.kernel[...], None), dtype=self.dtype)
        return patches_conv(x, kernel, self.feature_group_count, stride, pad)
