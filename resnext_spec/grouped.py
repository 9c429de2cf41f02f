"""How form (c)'s grouped convolution is computed in Keras and Flax: the one policy.

XLA's CPU convolution handles ``feature_group_count > 1`` slowly, the gradient above
all. For one 3x3 layer of resnext50_32x4d (batch 8, 56x56, 128 channels, 32 groups;
2 CPU cores, JAX 0.10) the native grouped conv took 105 ms forward and 6.2 s for its
kernel gradient, against 28 ms / 181 ms for a dense 128-channel conv. Keras's
TensorFlow backend sends every grouped conv through XLA too (``keras.ops.conv``
compiles it with ``jit_compile=True``, anew on every call), because TensorFlow has no
CPU gradient for grouped convolutions ("Gradients for grouped convolutions are not
supported on CPU", TensorFlow 2.21, float32 and float64 alike).

- ``"native"``: the backend's own grouped convolution: ``feature_group_count`` in JAX
  (cuDNN on GPU), ``keras.ops.conv`` on Keras's TensorFlow backend (XLA on CPU).
- ``"patches"``: im2col per group (the k*k shifted windows side by side) and one
  batched matrix product over the groups, differentiated by plain autodiff. The same
  layer: 72 ms forward, 90 ms kernel gradient; 7 ms / 7 ms at 7x7 with 1024 channels.
  On Keras's TensorFlow backend the layer is marked ``supports_jit = False``, so that
  ``jit_compile="auto"`` keeps the model out of XLA: TensorFlow's graph runs the
  patches' small ops faster than XLA does. There the forward value comes from
  TensorFlow's own grouped kernel (oneDNN, which has no CPU gradient) and only the
  backward pass differentiates the patches: resnext50_32x4d inference 4.12 -> 8.17
  img/s (batch 8, 224 px, the AVX2 CI machine), training 1.03 -> 1.10.
- ``"auto"``: ``"patches"`` on CPU (Flax, Keras on JAX and on TensorFlow); ``"native"``
  on GPU, and on Keras's torch backend, whose native grouped conv is torch's own (the
  layer above on Keras-torch: 22 ms forward, 40 ms both gradients; patches 176 / 308 ms).

Whole networks (batch 8, 224 px, train step / inference, img/s, 2 cores):
resnext50_32x4d in Flax 1.78 / 9.6 with patches (0.17 / 9.0 native), ResNet-50 2.49 /
18.5; Keras on TensorFlow 4.80 / 24.5 with patches outside XLA (2.28 / 11.3 under XLA),
ResNet-50 6.06 / 30.4. (That Keras-TF row was first written down as TensorFlow's own
kernel; the code that was to pick it never matched a ``tf.DType``, so every Keras-TF
grouped conv ran as patches outside XLA, which is what ``"auto"`` now chooses by name.)

Also measured and not kept: the k*k taps as fused broadcast multiply-adds with a
custom gradient (7 ms forward for the layer above alone, but slower inside the
network: resnext50_32x4d trained at 1.20 img/s against 1.78 with patches, XLA fusing
the BN and ReLU before it into every tap); a dense block-diagonal kernel (C times the
multiply-adds; 181 ms kernel gradient); one einsum per tap over the groups (120 ms
forward). Either lowering computes the same function from the same weights; only the
order of the additions differs.

Memory: the patches are k*k times the conv's input, and the backward pass holds
several such buffers at once (the patches, their gradient, the transposes between
them). Unchunked, a resnext29_8x64d training step at batch 16 (32 px) needed 2.93 GiB
of XLA temporaries against 1.64 GiB native, and batch 128 did not fit in 24 GB. So a
batch whose patches would pass ``PATCHES_BUDGET`` is cut into equal chunks, run one
after another with the patches recomputed in the backward pass (rematerialised):
2.08 GiB at batch 16, 14.3 GiB at batch 128 (native 12.3), at the same speed within
this machine's noise (16 s a step at batch 16).
"""

from __future__ import annotations

CONV_IMPLS = ("auto", "native", "patches")
PATCHES_BUDGET = 128 * 2**20  # bytes of patches per chunk of the batch


def check_conv_impl(impl: str) -> str:
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {impl!r}: expected one of {', '.join(CONV_IMPLS)}")
    return impl


def resolve_conv_impl(impl: str, groups: int, engine: str = "xla", platform: str = "cpu") -> str:
    """The lowering ``impl`` stands for, for one conv layer.

    ``engine`` is what runs it: "xla" (JAX, Flax, Keras on JAX), "tensorflow" or
    "torch" (Keras on torch); ``platform`` the device kind ("cpu", "gpu", ...). An
    ungrouped conv is always "native": only grouped convs have another lowering.
    """
    check_conv_impl(impl)
    if groups == 1:
        return "native"
    if impl != "auto":
        return impl
    if engine == "torch":  # torch's own grouped conv has a fast CPU gradient (oneDNN)
        return "native"
    return "patches" if platform == "cpu" else "native"


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one spatial axis (torch's formula)."""
    return (size + 2 * padding - kernel) // stride + 1


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
