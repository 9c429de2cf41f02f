"""What a checkpoint read from any source is: weights, the network they belong to, and the input
that network expects. ``resnext_formats`` reads every file people hold into a :class:`Source`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from .config import ArchConfig

# What a source network expects its input to be, as per-channel (mean, std) on a 0..1 RGB scale.
# "imagenet": torchvision, timm, transformers and keras-hub ResNets. "caffe": keras.applications'
# ResNets, which take BGR with the ImageNet mean subtracted on a 0..255 scale and no division;
# the channel order is put right by reversing the input channels of conv1 (CAFFE_FLIPS_CONV1).
PREPROCESSING = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": ((123.68 / 255, 116.779 / 255, 103.939 / 255), (1 / 255, 1 / 255, 1 / 255)),
}


@dataclass
class Source:
    """Canonical weights from a file, with the network they belong to and the input it expects."""

    weights: dict[str, np.ndarray]
    config: ArchConfig
    form: str
    notes: list[str] = field(default_factory=list)
    preprocessing: str | None = None  # a PREPROCESSING key; None: the data's own statistics


def caffe_to_rgb(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weights for RGB input from weights for BGR input: conv1's input channels reversed, exactly."""
    return {**weights, "conv1.weight": np.ascontiguousarray(weights["conv1.weight"][:, ::-1])}


def recorded_image_size(path: str | os.PathLike | None) -> int | None:
    """The image size the training run a checkpoint belongs to was trained at, from the ``state.json``
    ``resnext-train`` writes beside it: ``path`` is a run folder, its ``checkpoint/`` or a file in
    that; None for anything else (a preset, a file of another library's)."""
    if path is None or not os.path.exists(path):
        return None
    here = os.path.abspath(os.fspath(path))
    folders = [here, os.path.join(here, "checkpoint")] if os.path.isdir(here) else [os.path.dirname(here)]
    for folder in folders:
        state = os.path.join(folder, "state.json")
        if os.path.isfile(state):
            with open(state) as f:
                return json.load(f).get("image_size")
    return None
