"""Grouped convolution in Keras 3, computed natively or as per-group patches (any backend).

:class:`GroupedConv2D` is a ``Conv2D`` (the same ``kernel`` variable, HWIO with I the
channels of one group, the same name in ``.weights.h5``) whose convolution follows
``conv_impl``. Why there is a choice: ``resnext_spec.grouped``; what each lowering
measured: docs/grouped_convolutions.md. On JAX it computes with ``resnext_jax``'s lowerings,
Flax's own; patches and split are also written here in ``keras.ops`` for TensorFlow and torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
from keras import layers, ops

from resnext_spec.grouped import (
    PATCHES_BUDGET,
    check_conv_impl,
    patches_chunks,
    resolve_conv_impl,
)
from resnext_spec.layout import conv_output_size


def _engine() -> tuple[str, str]:
    """(engine, platform) for ``resolve_conv_impl``: who runs Keras's ops, on what device."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return "xla", jax.default_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return backend, "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    return backend, "cpu"


def patches_conv(x, w, groups: int, stride: int, budget: int = PATCHES_BUDGET):
    """Grouped 'valid' conv of NHWC ``x`` with HWIO ``w`` by patches, in chunks of the batch.

    A chunk holds at most ``budget`` bytes of patches and is rematerialised
    (``keras.remat``): its patches are made again in the backward pass rather than
    kept, so memory stays near the native conv's (``resnext_spec.grouped``). On
    TensorFlow the forward value is TensorFlow's own kernel (see ``_tf_patches_conv``).
    """
    n, h, wd, c = x.shape
    if None in (n, h, wd):  # traced with an unknown batch or size: nothing to measure chunks by
        chunks, size = 1, n
    else:
        bits = int("".join(ch for ch in keras.backend.standardize_dtype(x.dtype) if ch.isdigit()))  # f64: 64
        chunks, size = patches_chunks(x.shape, w.shape[0], stride, 0, bits // 8, budget)
    if keras.backend.backend() == "tensorflow":
        return _tf_patches_conv(x, w, groups, stride, chunks, size)
    if chunks == 1:
        return _patches_conv(x, w, groups, stride)
    # JAX and torch: each chunk rematerialised, in a map (XLA compiles one chunk once, whatever the batch).
    one_chunk = keras.remat(lambda xc: _patches_conv(xc, w, groups, stride))
    xs = ops.reshape(ops.pad(x, ((0, chunks * size - n), (0, 0), (0, 0), (0, 0))), (chunks, size, h, wd, c))
    out = ops.map(one_chunk, xs)
    return ops.reshape(out, (chunks * size, *out.shape[2:]))[:n]


def _tf_patches_conv(x, w, groups: int, stride: int, chunks: int, size: int):
    """On TensorFlow: its own grouped conv forward, with the patches lowering's gradient.

    TensorFlow computes a grouped conv forward on every CPU, with gradients only where oneDNN
    runs them; this takes its forward value and, in the backward pass, differentiates the patches
    lowering instead, ``size`` images at a time (recomputed from ``x`` and ``w``: the
    same function, so the same gradient up to the order of additions, and the patches
    of one chunk alive at a time).
    """
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):
            dx, dw = [], None
            for i in range(0, x.shape[0], size) if chunks > 1 else [0]:
                xc, dyc = (x[i : i + size], dy[i : i + size]) if chunks > 1 else (x, dy)
                with tf.GradientTape() as tape:
                    tape.watch([xc, w])
                    y = _patches_conv(xc, w, groups, stride)
                gx, gw = tape.gradient(y, [xc, w], output_gradients=dyc)
                dx.append(gx)
                dw = gw if dw is None else dw + gw
            return tf.concat(dx, axis=0), dw

        return tf.nn.conv2d(x, w, stride, "VALID"), grad

    return conv(x, tf.convert_to_tensor(w))


def tf_grouped_conv(x, w, groups: int, stride: int):
    """TensorFlow's own grouped 'valid' conv, with its own gradients where it has them on the device.

    Where oneDNN runs TensorFlow's CPU kernels (float32 and bfloat16 with TF_ENABLE_ONEDNN_OPTS on,
    the default on x86 Linux) and on GPU, TensorFlow has grouped gradient kernels, and this is
    ``tf.nn.conv2d`` with its registered gradients. Elsewhere (float64, or oneDNN off) TensorFlow
    refuses them ("Gradients for grouped convolutions are not supported on CPU"), and both are
    written as grouped forward convolutions (:func:`tf_written_grouped_conv`). The same function
    either way, up to the order of the additions.
    """
    import tensorflow as tf

    if tf_has_grouped_gradients(x.dtype):
        return tf.nn.conv2d(x, w, stride, "VALID")
    return tf_written_grouped_conv(x, w, groups, stride)


def tf_written_grouped_conv(x, w, groups: int, stride: int):
    """TensorFlow's grouped 'valid' conv with both gradients written as grouped *forward*
    convolutions, which every CPU kernel runs: for the dtypes and machines where TensorFlow has
    no grouped gradient kernels (:func:`tf_grouped_conv`).

    - input gradient: ``dy`` dilated by the stride (zeros between its rows and columns),
      padded by ``k - 1`` (and on the high side by the rows the forward's stride left out),
      convolved with the kernel flipped in space, its in and out channels swapped within
      each group;
    - kernel gradient: ``dW[kh, kw, i, (g, o)] = sum over n, h, w of x[n, h*s + kh, w*s + kw,
      (g, i)] * dy[n, h, w, (g, o)]``, a grouped conv whose batch is the per-group input
      channel ``i``, whose channels are (group, image), and whose kernel is ``dy`` (images
      as its input channels) dilated by the stride; its first ``k x k`` outputs are ``dW``.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):
            return _tf_input_grad(dy, w, tf.shape(x), groups, stride), _tf_kernel_grad(
                x, dy, w.shape, groups, stride
            )

        return tf.nn.conv2d(x, w, stride, "VALID"), grad

    return conv(x, tf.convert_to_tensor(w))


_GROUPED_GRADIENTS: dict[str, bool] = {}  # dtype name -> whether TensorFlow computes them here


def tf_has_grouped_gradients(dtype) -> bool:
    """Whether TensorFlow's own gradient kernels of a grouped conv run here in ``dtype``.

    Asked of TensorFlow once per dtype, on a 2-group conv of one pixel: oneDNN's kernels (TensorFlow's
    CPU default on x86) have them in float32 and bfloat16, and TensorFlow's own CPU kernels, which
    the others fall to, refuse groups. oneDNN has no float64, so that is not asked. Where TensorFlow
    has them they ran faster than the written ones at every grouped layer of resnext50_32x4d (batch
    8, one layer's kernel gradient 7.5 against 14.3 ms at 56x56, 1.5 against 3.4 ms at 14x14 stride
    2; docs/grouped_convolutions.md).
    """
    import tensorflow as tf

    name = tf.as_dtype(dtype).name
    if name not in _GROUPED_GRADIENTS:
        _GROUPED_GRADIENTS[name] = name != "float64" and _tf_grouped_gradients_run(dtype)
    return _GROUPED_GRADIENTS[name]


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Process-wide stderr (file descriptor 2) to /dev/null for a moment: TensorFlow's C++ runtime logs
    a refused kernel there ("Local rendezvous is aborting with status: INVALID_ARGUMENT: Gradients for
    grouped convolutions are not supported on CPU") before Python sees the error, and a probe that
    expects the refusal must not print what reads like a failure."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tf_grouped_gradients_run(dtype) -> bool:
    """Whether both grouped gradient kernels run on a 1-pixel image of 2 channels, 2 groups."""
    import tensorflow as tf

    with tf.init_scope(), _stderr_silenced():  # eagerly, even while a tf.function traces
        one = tf.ones([1, 1, 1, 2], dtype)  # the image, the 2-group 1x1 kernel and dy alike
        size, same = [1, 1, 1, 2], dict(strides=[1, 1, 1, 1], padding="VALID")
        try:
            tf.raw_ops.Conv2DBackpropInput(input_sizes=size, filter=one, out_backprop=one, **same)
            tf.raw_ops.Conv2DBackpropFilter(input=one, filter_sizes=size, out_backprop=one, **same)
        except tf.errors.OpError:
            return False
    return True


def _tf_dilate(t, s: int):
    """NHWC ``t`` with ``s - 1`` zero rows and columns between its rows and columns."""
    import tensorflow as tf

    if s == 1:
        return t
    n, h, w, c = tf.unstack(tf.shape(t))
    t = tf.pad(t[:, :, None, :, None, :], [[0, 0], [0, 0], [0, s - 1], [0, 0], [0, s - 1], [0, 0]])
    return tf.reshape(t, tf.stack([n, h * s, w * s, c]))[:, : (h - 1) * s + 1, : (w - 1) * s + 1, :]


def _tf_input_grad(dy, w, x_shape, groups: int, s: int):
    import tensorflow as tf

    k, _, gi, c_out = w.shape
    go = c_out // groups
    ho, wo = tf.shape(dy)[1], tf.shape(dy)[2]
    left_h, left_w = x_shape[1] - ((ho - 1) * s + k), x_shape[2] - ((wo - 1) * s + k)  # rows stride skipped
    d = tf.pad(
        _tf_dilate(dy, s), tf.stack([[0, 0], [k - 1, k - 1 + left_h], [k - 1, k - 1 + left_w], [0, 0]])
    )
    flipped = tf.reshape(w, [k, k, gi, groups, go])[::-1, ::-1]
    flipped = tf.reshape(tf.transpose(flipped, [0, 1, 4, 3, 2]), [k, k, go, groups * gi])
    return tf.nn.conv2d(d, flipped, 1, "VALID")


def _tf_kernel_grad(x, dy, w_shape, groups: int, s: int):
    import tensorflow as tf

    k, gi = w_shape[0], w_shape[2]
    n, h, wd = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    xt = tf.reshape(x, tf.stack([n, h, wd, groups, gi]))
    xt = tf.reshape(tf.transpose(xt, [4, 1, 2, 3, 0]), tf.stack([gi, h, wd, groups * n]))  # [i, H, W, (g, n)]
    kt = tf.transpose(dy, [1, 2, 0, 3])  # [Ho, Wo, n, (g, o)]: HWIO, n the input channels of a group
    out = tf.nn.conv2d(xt, kt, 1, "VALID", dilations=s)  # [i, >= k, >= k, (g, o)]
    return tf.transpose(out[:, :k, :k, :], [1, 2, 0, 3])


def split_conv(x, w, groups: int, stride: int):
    """Grouped 'valid' conv of NHWC ``x`` with HWIO ``w`` as one dense conv per group, concatenated.

    The same function as the grouped conv by definition; XLA:CPU runs dense convs,
    forward and back, far faster than grouped ones (``resnext_spec.grouped``).
    """
    parts = [
        ops.conv(xg, wg, strides=stride, padding="valid")
        for xg, wg in zip(ops.split(x, groups, axis=-1), ops.split(w, groups, axis=-1), strict=True)
    ]
    return ops.concatenate(parts, axis=-1)


def _windows(x, k: int, stride: int, ho: int, wo: int) -> list:
    """Window (i, j) of ``x``: the input that kernel tap (i, j) reads for every output pixel."""
    return [
        x[:, i : i + (ho - 1) * stride + 1 : stride, j : j + (wo - 1) * stride + 1 : stride, :]
        for i in range(k)
        for j in range(k)
    ]


def _patches_conv(x, w, groups: int, stride: int):
    """Grouped 'valid' conv of NHWC ``x`` with HWIO ``w``: im2col per group, one batched matmul.

    Window (i, j) of the (already padded) input is what kernel tap (i, j) reads for
    every output pixel; side by side they are the columns of a dense conv's im2col,
    and group g's output is its columns times its (k*k*gi, go) kernel block.
    """
    k, _, gi, c_out = w.shape
    go = c_out // groups
    _, h, wd, _ = x.shape
    ho, wo = conv_output_size(h, k, stride, 0), conv_output_size(wd, k, stride, 0)
    windows = _windows(x, k, stride, ho, wo)
    # cols[g, pixel, (tap, i)]: group-major, so that the matmul batches over groups.
    cols = ops.stack([ops.reshape(win, (-1, groups, gi)) for win in windows], axis=2)
    cols = ops.reshape(ops.transpose(cols, (1, 0, 2, 3)), (groups, -1, k * k * gi))
    w_g = ops.reshape(ops.transpose(ops.reshape(w, (k * k, gi, groups, go)), (2, 0, 1, 3)), (groups, -1, go))
    out = ops.matmul(cols, w_g)  # (groups, pixels, go)
    return ops.reshape(ops.transpose(out, (1, 0, 2)), (-1, ho, wo, c_out))


@keras.saving.register_keras_serializable(package="resnext_keras")
class GroupedConv2D(layers.Conv2D):
    """``Conv2D(groups=...)``, 'valid' padding, computed by ``conv_impl`` ("auto", "native", "patches",
    "split")."""

    def __init__(self, *args: Any, conv_impl: str = "auto", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conv_impl = check_conv_impl(conv_impl)
        self.lowering = resolve_conv_impl(conv_impl, self.groups, *_engine())
        self.tensorflow = keras.backend.backend() == "tensorflow"
        if self.tensorflow:
            # Either lowering runs faster in TensorFlow's graph (oneDNN) than compiled by XLA
            # (resnext_spec.grouped): with one layer that does not support jit, Keras's
            # jit_compile="auto" leaves the model out of XLA.
            self.supports_jit = False

    def build(self, input_shape) -> None:
        super().build(input_shape)
        # Now the group width is known: "auto" takes taps for narrow groups (JAX on CPU).
        group_channels = input_shape[-1] // self.groups
        self.lowering = resolve_conv_impl(
            self.conv_impl, self.groups, *_engine(), taps_channels=group_channels
        )

    def convolution_op(self, inputs, kernel):
        if self.padding == "valid" and self.lowering != "native" and keras.backend.backend() == "jax":
            # On JAX, the lowerings Flax computes with (one implementation: resnext_jax).
            from resnext_jax import LOWERINGS

            return LOWERINGS[self.lowering](
                inputs, ops.convert_to_tensor(kernel), self.groups, self.strides[0], 0
            )
        if self.padding == "valid" and self.lowering == "split":
            return split_conv(inputs, kernel, self.groups, self.strides[0])
        if self.padding == "valid" and self.lowering == "patches":
            return patches_conv(inputs, kernel, self.groups, self.strides[0])
        if self.padding == "valid" and self.lowering == "native" and self.tensorflow:
            return tf_grouped_conv(inputs, kernel, self.groups, self.strides[0])
        return super().convolution_op(inputs, kernel)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "conv_impl": self.conv_impl}
