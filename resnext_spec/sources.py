"""Reading any checkpoint a tool is given, through the reader registered for it.

``resnext-port`` reads every file people hold (ours, torchvision and timm, transformers,
keras.applications, keras-hub). A tool that takes "any file resnext-port reads" -- such as
``resnext-train --init-from`` -- may not import another tool (DESIGN.md: what two tools
share moves down), so the reader is registered under the entry-point group ``READERS``
(pyproject.toml) and found here, the registry below what it registers. With no reader
installed, our own safetensors checkpoints are still read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import numpy as np

from .checkpoint import load_checkpoint
from .config import ArchConfig
from .errors import ConfigError

READERS = "resnext.checkpoint_readers"

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


def read_source(path: str | os.PathLike) -> Source:
    """The checkpoint at ``path``, read by the registered reader (``resnext_port``'s: every
    format it reads), or as our safetensors checkpoint when no reader is installed."""
    found = entry_points(group=READERS)
    if found:
        return next(iter(found)).load()(path)
    if not os.fspath(path).endswith(".safetensors"):
        raise ConfigError(f"{path}: only this project's .safetensors is read without resnext_port installed")
    weights, config, form = load_checkpoint(path)
    return Source(weights, config, form)


def caffe_to_rgb(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weights for RGB input from weights for BGR input: conv1's input channels reversed, exactly."""
    return {**weights, "conv1.weight": np.ascontiguousarray(weights["conv1.weight"][:, ::-1])}
