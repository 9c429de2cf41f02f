"""How form (c)'s grouped convolution is computed in Keras and Flax: the one policy.

XLA's CPU convolution handles ``feature_group_count > 1`` slowly, its kernel gradient
above all, and TensorFlow's own CPU kernels have no grouped gradient (oneDNN's do, in float32
and bfloat16). So Keras and Flax take a ``conv_impl``:

- ``"native"``: the backend's own grouped convolution (``feature_group_count`` in JAX,
  cuDNN on GPU; torch's on Keras's torch backend). On Keras's TensorFlow backend it is
  TensorFlow's own grouped kernel, with TensorFlow's gradients where it has them (oneDNN in
  float32 and bfloat16, GPUs) and, where it does not (float64, oneDNN off), both gradients
  written as grouped forward convolutions (``resnext_keras.grouped_conv``).
- ``"patches"``: im2col per group and one batched matrix product over the groups,
  differentiated by plain autodiff; a batch whose patches would pass
  ``PATCHES_BUDGET`` is cut into equal chunks, recomputed in the backward pass.
- ``"split"``: one dense convolution per group, on that group's channels, concatenated.
  XLA:CPU runs dense convolutions, forward and back, far faster than grouped ones:
  resnext29_8x64d's first stage (batch 16, 32x32, 8 groups of 64) took 186 ms forward and
  both gradients against 413 for patches and 4.4 s native; resnext50_32x4d's 14x14 layer
  (32 groups of 16) 9 against 30 ms.
- ``"auto"``: ``"native"`` on GPU and on Keras's TensorFlow and torch backends (oneDNN
  runs grouped convolutions fast, forward and back). For JAX on CPU (Flax, Keras on JAX),
  where XLA's own is slow: taps for groups of at most ``TAPS_MAX_GROUP_CHANNELS`` input
  channels (below), ``"split"`` for wider ones; in float64, ``"patches"`` for every conv
  (Flax), because XLA:CPU has no float64 convolution kernel: a dense 3x3 conv of 16
  channels at 32x32, batch 8, took 17.5 ms forward and back in float64, 1.5 in float32, and
  1.7 as patches (a matmul) in float64.

Taps (XLA:CPU, chosen by ``"auto"`` only): the conv as a sum, over the kernel's taps and
a group's input channels, of shifted input windows times one kernel row, which XLA fuses
into one pass over the input. resnext50_32x4d at 56x56 (batch 8, 4 channels a group):
4.2 ms forward against 19.5 split and 122 patches. At 16 channels a group taps loses its
forward too, so taps stops at 4 (``TAPS_MAX_GROUP_CHANNELS``). Taps is the forward of
inference only: where it is differentiated, Flax and Keras on JAX alike run split's forward
and gradients, which trained resnext50_32x4d faster than taps with gradients of its own (2.48-2.58
against 2.64-2.78 s a step, Flax, batch 8), though those won their layer alone. Measured by
``python -m resnext_bench.lowerings`` and ``resnext-bench``; the tables are in
docs/grouped_convolutions.md.

Every lowering computes the same function from the same weights; only the order of
the additions differs. Why each choice, with the measurements behind it:
docs/grouped_convolutions.md.
"""

from __future__ import annotations

from .errors import ConfigError
from .layout import conv_output_size

CONV_IMPLS = ("auto", "native", "patches", "split")
PATCHES_BUDGET = 128 * 2**20  # bytes of patches per chunk of the batch
TAPS_MAX_GROUP_CHANNELS = 4  # "auto" computes groups this narrow by taps (XLA:CPU)


def check_conv_impl(impl: str) -> str:
    if impl not in CONV_IMPLS:
        raise ConfigError(f"unknown conv_impl {impl!r}: expected one of {', '.join(CONV_IMPLS)}")
    return impl


def resolve_conv_impl(
    impl: str,
    groups: int,
    engine: str = "xla",
    platform: str = "cpu",
    taps_channels: int | None = None,
    float64: bool = False,
) -> str:
    """The lowering ``impl`` stands for, for one conv layer.

    ``engine`` is what runs it: "xla" (JAX, Flax, Keras on JAX), "tensorflow" or
    "torch" (Keras on torch); ``platform`` the device kind ("cpu", "gpu", ...). An
    ungrouped conv is "native", except in float64 on XLA:CPU under "auto".
    ``taps_channels``: the input channels of one group, given by a build that has the
    taps lowering; "auto" then picks "taps" for groups that narrow on XLA:CPU.
    ``float64``: the layer computes in float64.
    """
    check_conv_impl(impl)
    xla_cpu = engine == "xla" and platform == "cpu"
    if impl == "auto" and xla_cpu and float64:  # no float64 conv kernel in XLA:CPU: a matmul
        return "patches"
    if groups == 1:
        return "native"
    if impl != "auto":
        return impl
    if not xla_cpu:  # GPUs, and oneDNN's grouped convs (Keras on TensorFlow and torch)
        return "native"
    if taps_channels is not None and taps_channels <= TAPS_MAX_GROUP_CHANNELS:
        return "taps"
    return "split"


def patches_chunks(
    x_shape: tuple[int, int, int, int],
    kernel: int,
    stride: int,
    padding: int,
    itemsize: int,
    budget: int = PATCHES_BUDGET,
) -> tuple[int, int]:
    """(chunks, images per chunk): one chunk's patches of NHWC ``x_shape`` within ``budget`` bytes.

    Chunks are equal (the loop over them is compiled once); ``chunks * size`` may pass
    the batch by less than one chunk, and the caller pads the batch with zero images.
    """
    batch, h, w, c = x_shape
    pixels = conv_output_size(h, kernel, stride, padding) * conv_output_size(w, kernel, stride, padding)
    per_chunk = max(1, budget // max(1, pixels * kernel * kernel * c * itemsize))
    chunks = -(-batch // per_chunk)
    return chunks, -(-batch // chunks)
