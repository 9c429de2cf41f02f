"""Grouped convolution in Flax NNX, computed natively or as per-group patches.

:class:`GroupedConv` is an ``nnx.Conv`` (the same ``kernel`` parameter, HWIO with I
the channels of one group) whose ``__call__`` follows ``conv_impl``. Why there is a
choice: ``resnext_spec.grouped``; what each lowering measured: docs/grouped_convolutions.md.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from resnext_spec.grouped import PATCHES_BUDGET, patches_chunks, resolve_conv_impl
from resnext_spec.layout import conv_output_size

TAPS_ROWS = 64  # rows of the taps kernel gradient's two-level sum (64 measured faster than 256)


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
    """Grouped conv of NHWC ``x`` with HWIO ``w`` as a sum over taps of shifted windows.

    Output channel (g, o) is the sum, over kernel taps t and the group's input channels i,
    of window t of the padded input (channel (g, i)) times ``w[t, i, (g, o)]``: 9 x i
    broadcast multiply-adds that XLA fuses into one pass over the input, where patches
    write and read a 9x copy of it. Worth it for narrow groups only (``resnext_spec.grouped``).
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


def _taps_fwd(x, w, groups, stride):
    return _taps_forward(x, w, groups, stride), (x, w)


def _taps_bwd(groups, stride, residuals, dy):
    x, w = residuals
    dy = jax.lax.optimization_barrier(dy)
    return _taps_input_grad(dy, w, x.shape, groups, stride), _taps_kernel_grad(x, dy, w.shape, groups, stride)


_taps.defvjp(_taps_fwd, _taps_bwd)


def _taps_input_grad(dy: jax.Array, w: jax.Array, x_shape, groups: int, stride: int) -> jax.Array:
    """dL/dx: a stride-1 taps conv of ``dy`` (zeros between its rows and columns for stride 2,
    padded by k - 1, and on the high side by the rows the stride skipped) with the kernel
    flipped in space and its input and output channels swapped within each group."""
    k, _, gi, c_out = w.shape
    go = c_out // groups
    _, ho, wo, _ = dy.shape
    skipped_h, skipped_w = x_shape[1] - ((ho - 1) * stride + k), x_shape[2] - ((wo - 1) * stride + k)
    zero = jnp.zeros((), dy.dtype)
    config = [
        (0, 0, 0),
        (k - 1, k - 1 + skipped_h, stride - 1),
        (k - 1, k - 1 + skipped_w, stride - 1),
        (0, 0, 0),
    ]
    flipped = (
        w.reshape(k, k, gi, groups, go)[::-1, ::-1].transpose(0, 1, 4, 3, 2).reshape(k, k, go, groups * gi)
    )
    return _taps_forward(jax.lax.pad(dy, zero, config), flipped, groups, 1)


def _taps_kernel_grad(x: jax.Array, dy: jax.Array, w_shape, groups: int, stride: int) -> jax.Array:
    """dL/dw[t, i, (g, o)] = sum over pixels p of window_t[p, (g, i)] * dy[p, (g, o)].

    All 9 x gi sums in one variadic reduction, one pass over the input; the pixels are cut
    into ``TAPS_ROWS`` rows summed first, then the rows' partial sums, so that no sum runs over
    more than ``max(TAPS_ROWS, pixels / TAPS_ROWS)`` terms (float32 error: 3.8e-7 where one long sum
    gave 7.4e-6).
    """
    k, _, gi, c_out = w_shape
    go = c_out // groups
    n, ho, wo, _ = dy.shape
    pixels = n * ho * wo
    rows = min(TAPS_ROWS, pixels)
    cols = -(-pixels // rows)
    pad = ((0, rows * cols - pixels), (0, 0), (0, 0))
    acc = jnp.promote_types(x.dtype, jnp.float32)
    dy_r = jnp.pad(dy.reshape(pixels, groups, go).astype(acc), pad).reshape(rows, cols, groups, go)
    products = []
    for window in _windows(x, k, stride, ho, wo):
        window = jnp.pad(window.reshape(pixels, groups, gi).astype(acc), pad).reshape(rows, cols, groups, gi)
        products += [window[..., i, None] * dy_r for i in range(gi)]
    zero = jnp.zeros((), acc)
    partial_sums = jax.lax.reduce(
        products, [zero] * len(products), lambda a, b: [u + v for u, v in zip(a, b, strict=True)], (0,)
    )
    dw = jnp.stack([s.sum(axis=0) for s in partial_sums])  # (taps x gi, groups, go)
    return dw.reshape(k, k, gi, c_out).astype(x.dtype)


class GroupedConv(nnx.Conv):
    """``nnx.Conv`` with symmetric padding, computed by ``conv_impl``: a grouped conv, or a
    dense one in float64 (``resnext_spec.grouped``: XLA:CPU has no float64 conv kernel).

    The parameters are exactly ``nnx.Conv``'s, so weights and checkpoints do not
    depend on the lowering.
    """

    def __init__(self, *args, conv_impl: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        group_channels = self.in_features // self.feature_group_count
        float64 = jnp.dtype(self.dtype or self.param_dtype) == jnp.float64
        self.conv_impl = resolve_conv_impl(
            conv_impl, self.feature_group_count, "xla", jax.default_backend(), group_channels, float64
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.conv_impl == "native":
            return super().__call__(x)
        (pad, _), _ = self.padding
        stride = self.strides if isinstance(self.strides, int) else self.strides[0]
        x, kernel, _ = self.promote_dtype((x, self.kernel[...], None), dtype=self.dtype)
        lowering = {"taps": taps_conv, "split": split_conv, "patches": patches_conv}[self.conv_impl]
        return lowering(x, kernel, self.feature_group_count, stride, pad)
