"""What a dataset is here: a train and a test split of uint8 NHWC images with integer labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from resnext_spec.errors import ResNeXtError


class DataError(ResNeXtError):
    """A dataset that cannot be read as asked: missing, truncated or malformed, named in the message."""


class Split(Protocol):
    """Images are read on demand, so a folder of images need not fit in memory."""

    labels: np.ndarray  # int64, one per image

    def __len__(self) -> int: ...

    def images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 array (len(indices), H, W, 3), every image the same size."""
        ...


@dataclass
class ArraySplit:
    """A split held in memory (CIFAR)."""

    data: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, indices: np.ndarray) -> np.ndarray:
        return self.data[indices]


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int
    classes: list[str]
    # Augmentation that fits the data: CIFAR pads 4 and crops 32; folders are stored
    # resized and crop to the model's input size.
    pad: int
    crop: int
    test_split: str = "test"  # the held-out split's own name: CIFAR's test batch, a folder's val/
    note: str | None = None  # how images are brought to ``crop``, in words, where it is not CIFAR's
