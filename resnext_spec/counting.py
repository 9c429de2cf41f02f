"""Parameter and multiply-add counts from a config alone, by formula.

These are written from the layer arithmetic (k*k*C_in*C_out/groups per conv),
not from ``canonical_shapes``, so the two can check each other. FLOPs follow
the paper's convention (Table 1): multiply-adds of convolutions and the fully
connected layer; BN, ReLU, pooling and additions are not counted.
"""

from __future__ import annotations

from .config import ArchConfig
from .layout import conv_output_size, plan


def _conv_params(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    return k * k * (c_in // groups) * c_out


def count_params(config: ArchConfig) -> int:
    """Trainable parameters (BN affine included, running statistics not); the same for every form."""
    p = plan(config)
    total = _conv_params(p.stem.in_channels, p.stem.out_channels, p.stem.kernel) + 2 * p.stem.out_channels
    for b in p.blocks:
        if b.block == "basic":
            total += _conv_params(b.in_channels, b.width, 3) + 2 * b.width
            total += _conv_params(b.width, b.width, 3) + 2 * b.width
        else:
            total += _conv_params(b.in_channels, b.width, 1) + 2 * b.width
            total += _conv_params(b.width, b.width, 3, b.cardinality) + 2 * b.width
            total += _conv_params(b.width, b.out_channels, 1) + 2 * b.out_channels
        if b.projection:
            total += _conv_params(b.in_channels, b.out_channels, 1) + 2 * b.out_channels
    return total + p.head.in_features * p.head.num_classes + p.head.num_classes


def count_flops(config: ArchConfig, image_size: int | None = None) -> int:
    """Multiply-adds of one forward pass on a square ``image_size`` input.

    The default size is 224 for the ImageNet stem and 32 for the CIFAR stem.
    """
    p = plan(config)
    size = image_size or (224 if p.stem.kind == "imagenet" else 32)
    s = p.stem
    size = conv_output_size(size, s.kernel, s.stride, s.padding)
    macs = size * size * _conv_params(s.in_channels, s.out_channels, s.kernel)
    if s.max_pool:
        size = conv_output_size(size, 3, 2, 1)
    for b in p.blocks:
        if b.block == "basic":
            h1 = conv_output_size(size, 3, b.conv1_stride, 1)
            h2 = conv_output_size(h1, 3, b.conv2_stride, 1)
            macs += h1 * h1 * _conv_params(b.in_channels, b.width, 3)
            macs += h2 * h2 * _conv_params(b.width, b.width, 3)
        else:
            h1 = conv_output_size(size, 1, b.conv1_stride, 0)
            h2 = conv_output_size(h1, 3, b.conv2_stride, 1)
            macs += h1 * h1 * _conv_params(b.in_channels, b.width, 1)
            macs += h2 * h2 * _conv_params(b.width, b.width, 3, b.cardinality)
            macs += h2 * h2 * _conv_params(b.width, b.out_channels, 1)
        if b.projection:
            macs += h2 * h2 * _conv_params(b.in_channels, b.out_channels, 1)
        size = h2
    return macs + p.head.in_features * p.head.num_classes
