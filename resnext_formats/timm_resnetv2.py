"""timm's pre-activation ResNets (``models/resnetv2.py``): its tensor names <-> the canonical ones.

timm names a v2 network's modules its own way: ``stem.conv`` (a deep stem ``stem.conv1``,
``stem.norm1``, ..., ``stem.conv3``), ``stages.S.blocks.I`` with ``norm1`` on the block's input,
``conv1``, ``norm2``, ``conv2``, ``norm3``, ``conv3`` (a basic block ``norm1``, ``conv1``, ``norm2``,
``conv2``), ``downsample.conv`` (no norm: it takes the pre-activated input), the final ``norm``, and
a head that is a 1x1 conv, ``head.fc``. The canonical names keep torchvision's: the block's input
norm is ``bn0`` and each conv's norm follows it (``conv1``, ``bn1``, ...), so timm's ``normK`` is
``bn(K-1)``. The map is a renaming plus the head's reshape, so it is exact both ways.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from resnext_spec import ArchConfig

# A deep stem's steps: canonical container slot -> timm's name.
DEEP_STEM = {"conv1.0": "stem.conv1", "conv1.1": "stem.norm1", "conv1.3": "stem.conv2",
             "conv1.4": "stem.norm2", "conv1.6": "stem.conv3"}  # fmt: skip
BLOCK = {"bn0": "norm1", "conv1": "conv1", "bn1": "norm2", "conv2": "conv2", "bn2": "norm3", "conv3": "conv3"}


def is_timm_resnetv2(names: list[str]) -> bool:
    """A state_dict of timm's ResNetV2: a ``stem.`` and pre-activation blocks under ``stages.``."""
    return any(n.startswith("stem.conv") for n in names) and any(
        re.match(r"stages\.0\.blocks\.0\.norm1\.", n) for n in names
    )


def timm_name(name: str, config: ArchConfig) -> str:
    """timm's name of a canonical tensor of ``config`` (form c)."""
    module, tensor = name.rsplit(".", 1)
    if module in DEEP_STEM:
        return f"{DEEP_STEM[module]}.{tensor}"
    if module == "conv1":
        return f"stem.conv.{tensor}"
    if module == "fc":
        return f"head.fc.{tensor}"
    if module == "norm":
        return name
    m = re.fullmatch(r"layer(\d+)\.(\d+)\.(.+)", module)
    if m is None:
        raise KeyError(name)
    stage, block, part = int(m.group(1)) - 1, m.group(2), m.group(3)
    prefix = f"stages.{stage}.blocks.{block}"
    if part.startswith("downsample."):  # its conv; a pre-activation shortcut has no norm
        return f"{prefix}.downsample.conv.{tensor}"
    return f"{prefix}.{BLOCK[part]}.{tensor}"


def to_timm(weights: Mapping[str, np.ndarray], config: ArchConfig) -> dict[str, np.ndarray]:
    """Canonical form-(c) weights of a pre-activation ``config`` in timm's ResNetV2 names and shapes."""
    out = {}
    for name, value in weights.items():
        value = np.asarray(value)
        if name == "fc.weight":
            value = value.reshape(*value.shape, 1, 1)  # timm's head is a 1x1 conv
        out[timm_name(name, config)] = value
    return out


def from_timm(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The canonical names of a timm ResNetV2 state_dict (``num_batches_tracked`` dropped). A name
    this map does not know is kept as it is, so the caller's check names it."""
    stem = {v: k for k, v in DEEP_STEM.items()} | {"stem.conv": "conv1", "head.fc": "fc", "norm": "norm"}
    block = {v: k for k, v in BLOCK.items()}
    # avg_down's pool (timm's DownsampleAvg) holds no tensor, and keeps slot 0 canonically. Every
    # timm v2 with a deep stem has it ("d", "t") and none with a 7x7 stem does.
    slot = 1 if avg_down_of(weights) else 0
    out = {}
    for name, value in weights.items():
        if name.endswith("num_batches_tracked"):
            continue
        module, tensor = name.rsplit(".", 1)
        value = np.asarray(value)
        if module in stem:
            canonical = f"{stem[module]}.{tensor}"
        elif m := re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", module):
            prefix, part = f"layer{int(m.group(1)) + 1}.{m.group(2)}", m.group(3)
            if part == "downsample.conv":
                canonical = f"{prefix}.downsample.{slot}.{tensor}"
            else:
                canonical = f"{prefix}.{block.get(part, part)}.{tensor}"
        else:
            canonical = name
        if canonical == "fc.weight" and value.ndim == 4:
            value = value.reshape(value.shape[:2])
        out[canonical] = value
    return out


def avg_down_of(weights: Mapping[str, np.ndarray]) -> bool:
    """Whether a timm v2 state_dict has average-pooled shortcuts, which hold no tensor: timm's v2
    models with a deep stem ("d", "t") have them and those with a 7x7 stem do not."""
    return "stem.conv1.weight" in weights
