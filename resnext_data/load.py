"""``load_dataset``: the dispatcher over the readers, above them (CIFAR archives, image folders)."""

from __future__ import annotations

import os

from .cifar import is_cifar, load_cifar
from .datasets import DataError, Dataset
from .folder import load_image_folder


def load_dataset(
    path: str | os.PathLike, image_size: int | None = None, resize: int | None = None
) -> Dataset:
    """CIFAR-10/100 (binary or python version, folder or .tar.gz) or an image folder with train/ and val/.

    ``image_size`` and ``resize`` apply to image folders only (CIFAR stays 32x32); a folder's default
    size follows its images (:func:`~resnext_data.folder.default_image_size`).
    """
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
