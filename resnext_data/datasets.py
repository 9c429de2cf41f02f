"""What a dataset is here: a train and a test split of uint8 NHWC images with integer labels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class DataError(ValueError):
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


def load_dataset(path: str | os.PathLike, image_size: int = 224, resize: int | None = None) -> Dataset:
    """CIFAR-10/100 (binary or python version, folder or .tar.gz) or an image folder with train/ and val/.

    ``image_size`` and ``resize`` apply to image folders only (CIFAR stays 32x32).
    """
    from .cifar import is_cifar, load_cifar
    from .folder import load_image_folder

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    if is_cifar(path):
        return load_cifar(path)
    if os.path.isdir(os.path.join(path, "train")):
        return load_image_folder(path, image_size=image_size, resize=resize)
    raise DataError(
        f"{path}: not a dataset this reads: expected CIFAR-10/100 (cifar-10-batches-bin/, "
        "cifar-10-batches-py/, cifar-100-binary/, cifar-100-python/ or their .tar.gz) "
        "or a folder with train/ and val/ holding one sub-folder per class"
    )
