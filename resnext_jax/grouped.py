"""The grouped convolution's lowerings in JAX, written once: Flax computes with them, and Keras does
on its JAX backend.

Each takes NHWC ``x``, an HWIO ``w`` whose I is one group's channels, the group count, the stride
and a symmetric zero padding, and computes the same function as XLA's grouped conv: by patches
(im2col per group, one batched matmul), split (one dense conv per group) or taps (a sum of shifted
windows, differentiated as split). Why there is a choice: ``resnext_spec.grouped``; what each
measured: docs/grouped_convolutions.md.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from resnext_spec.grouped import PATCHES_BUDGET, patches_chunks
from resnext_spec.layout import conv_output_size

__all__ = ["LOWERINGS", "patches_conv", "split_conv", "taps_conv"]


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
    windows = _windows(xp, k, stride, ho, wo)
    # cols[g, pixel, (tap, i)]: group-major, so that the matmul batches over groups.
    cols = jnp.stack([win.reshape(n * ho * wo, groups, gi) for win in windows], axis=2)
    cols = cols.transpose(1, 0, 2, 3).reshape(groups, n * ho * wo, k * k * gi)
    w_g = w.reshape(k * k, gi, groups, go).transpose(2, 0, 1, 3).reshape(groups, k * k * gi, go)
    out = jnp.matmul(cols, w_g)  # (groups, pixels, go)
    return out.transpose(1, 0, 2).reshape(n, ho, wo, c_out)


def split_conv(x: jax.Array, w: jax.Array, groups: int, stride: int, padding: int) -> jax.Array:
    """Grouped conv of NHWC ``x`` with HWIO ``w`` as one dense conv per group, concatenated.

    The same function as the grouped conv by definition (group g's outputs read only
    group g's inputs); XLA:CPU runs dense convs, forward and back, far faster than grouped.
    """
    pad = ((padding, padding), (padding, padding))
    numbers = ("NHWC", "HWIO", "NHWC")
    parts = [
        jax.lax.conv_general_dilated(xg, wg, (stride, stride), pad, dimension_numbers=numbers)
        for xg, wg in zip(jnp.split(x, groups, axis=-1), jnp.split(w, groups, axis=-1), strict=True)
    ]
    return jnp.concatenate(parts, axis=-1)


def taps_conv(x: jax.Array, w: jax.Array, groups: int, stride: int, padding: int) -> jax.Array:
    """Grouped conv of NHWC ``x`` with HWIO ``w`` as a sum over taps of shifted windows, and as
    split where it is differentiated.

    Output channel (g, o) is the sum, over kernel taps t and the group's input channels i,
    of window t of the padded input (channel (g, i)) times ``w[t, i, (g, o)]``: 9 x i
    broadcast multiply-adds that XLA fuses into one pass over the input, where patches
    write and read a 9x copy of it. Worth it for narrow groups only (``resnext_spec.grouped``),
    and in inference only: a pass that is differentiated runs split's forward and gradients,
    which trained resnext50_32x4d faster than taps' forward with its own gradients did.
    """
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    return _taps(xp, w, groups, stride)


def _windows(x: jax.Array, k: int, stride: int, ho: int, wo: int) -> list[jax.Array]:
    """Window (i, j) of ``x``: the input that kernel tap (i, j) reads for every output pixel."""
    n, _, _, c = x.shape
    return [
        jax.lax.slice(
            x,
            (0, i, j, 0),
            (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
            (1, stride, stride, 1),
        )
        for i in range(k)
        for j in range(k)
    ]


def _taps_forward(x: jax.Array, w: jax.Array, groups: int, stride: int) -> jax.Array:
    """The 'valid' grouped conv of (padded) ``x`` by taps, summed in float32 at least."""
    k, _, gi, c_out = w.shape
    n, h, wd, _ = x.shape
    ho, wo = conv_output_size(h, k, stride, 0), conv_output_size(wd, k, stride, 0)
    acc = jnp.promote_types(x.dtype, jnp.float32)
    w_t = w.reshape(k * k, gi, groups, c_out // groups).astype(acc)
    # The barrier keeps x's producer (BN, ReLU) out of this fusion: fused, it would be
    # recomputed for each of the 9 x gi terms (measured: resnext50_32x4d training 12% slower).
    x = jax.lax.optimization_barrier(x)
    out = None
    for t, window in enumerate(_windows(x, k, stride, ho, wo)):
        window = window.reshape(n, ho, wo, groups, gi).astype(acc)
        for i in range(gi):
            term = window[..., i, None] * w_t[t, i]  # (n, ho, wo, groups, go)
            out = term if out is None else out + term
    return out.reshape(n, ho, wo, c_out).astype(x.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _taps(x: jax.Array, w: jax.Array, groups: int, stride: int) -> jax.Array:
    return _taps_forward(x, w, groups, stride)


def _split_forward(x, w, groups, stride):
    """Differentiated: split's value, kept with its inputs for split's gradients."""
    return split_conv(x, w, groups, stride, 0), (x, w)


def _split_backward(groups, stride, inputs, dy):
    return jax.vjp(lambda a, b: split_conv(a, b, groups, stride, 0), *inputs)[1](dy)


# Taps had gradients of its own (its input gradient a taps conv of the dilated dy, its kernel
# gradient one variadic reduction). They won their layer (56x56, 4 channels a group: 36.6 ms
# with the forward against split's 57.9) and lost in the network: resnext50_32x4d training, batch
# 8, 2.64-2.78 s a step against 2.48-2.58 s with split's forward and gradients (two runs each).
_taps.defvjp(_split_forward, _split_backward)


# conv_impl -> its lowering, for the callers that resolve one by name.
LOWERINGS = {"patches": patches_conv, "split": split_conv, "taps": taps_conv}
