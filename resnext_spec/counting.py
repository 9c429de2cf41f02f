"""Parameter and multiply-add counts of a config, read off its layers (``layout.layers``).

Whatever part a config holds, its tensors are listed once in the spec, so its counts follow
without a formula of their own. The formulas written out from the layer arithmetic stay in the
tests (``tests/helpers.py``) as the oracle these are checked against. FLOPs follow the paper's
convention (Table 1): multiply-adds of convolutions and linear layers; norms, ReLU, pooling and
additions are not counted.
"""

from __future__ import annotations

import math

from .config import ArchConfig
from .layout import BN_STATS, LayerSpec, body_layers, conv_output_size, layers, plan


def count_params(config: ArchConfig) -> int:
    """Trainable parameters (BN affine included, running statistics not); the same for every form."""
    return sum(
        math.prod(layer.tensor_shape(t))
        for layer in layers(config, "c")
        for t in layer.tensors
        if t not in BN_STATS
    )


def _conv(layer: LayerSpec, size: int) -> tuple[int, int]:
    """A conv's output size on a square ``size`` input, and its multiply-adds there."""
    out = conv_output_size(size, layer.shape[-1], layer.stride, layer.padding)
    return out, out * out * math.prod(layer.shape)


def _pooled_macs(layer: LayerSpec, channels: int) -> int:
    """An attention layer's multiply-adds on pooled features: a 1x1 conv's weights once each, a
    1-D conv's taps once per channel (it slides along them)."""
    if layer.kind == "conv1d":
        return channels * math.prod(layer.shape)
    return math.prod(layer.shape) if layer.kind in ("conv", "linear") else 0


def pooled_size(pool: str | None, size: int) -> int:
    """The side after a stem's pool or an anti-aliasing pool (stride 2) of this kind."""
    if pool in ("max", "max_fixed", "max_blur", "blur"):  # 3x3/2, padding 1 (reflect for the blur)
        return conv_output_size(size, 3, 2, 1)
    return size // 2 if pool == "avg" else size


def count_flops(config: ArchConfig, image_size: int | None = None) -> int:
    """Multiply-adds of one forward pass on a square ``image_size`` input (default: the size the
    stem is made for, 224 for ImageNet stems and 32 for CIFAR's).

    The body's convs run one after another from the block's input size; the shortcut's conv at
    the block's output size; an attention part's convs on pooled (1x1) features.
    """
    p = plan(config)
    size = image_size or p.stem.image_size
    macs = 0
    for step in p.stem.steps:
        size, m = _conv(step.conv, size)
        macs += m
    size = pooled_size(p.stem.pool, size)
    for b in p.blocks:
        h = size
        for layer in body_layers(b, "c"):
            if layer.kind == "conv":
                h, m = _conv(layer, h)
                macs += m
                if b.aa and layer.name.endswith(f".{b.aa_after}"):
                    h = pooled_size(b.aa, h)
        macs += sum(_pooled_macs(layer, b.out_channels) for layer in b.attention.layers)
        if b.shortcut.conv is not None:
            macs += _conv(b.shortcut.conv, -(-size // b.stride) if b.shortcut.pools else size)[1]
        size = h
    return macs + sum(math.prod(layer.shape) for layer in layers(config) if layer.kind == "linear")
