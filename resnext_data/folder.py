"""A folder of images, one sub-folder per class, in ``train/`` and ``val/`` (torchvision's ImageFolder).

Images are decoded when a batch asks for them: each is resized so its shorter side is
``resize`` and centre-cropped to ``resize`` x ``resize``; the pipeline then crops
``image_size`` from that (at random in training, centred in evaluation), as the
ImageNet recipe of torchvision's references does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .datasets import DataError, Dataset

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class FolderSplit:
    files: list[str]
    labels: np.ndarray
    resize: int

    def __len__(self) -> int:
        return len(self.files)

    def images(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self._load(self.files[i]) for i in indices])

    def _load(self, file: str) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(file) as im:
                im = im.convert("RGB")
                w, h = im.size
                scale = self.resize / min(w, h)
                im = im.resize((max(self.resize, round(w * scale)), max(self.resize, round(h * scale))))
                left, top = (im.size[0] - self.resize) // 2, (im.size[1] - self.resize) // 2
                return np.asarray(im.crop((left, top, left + self.resize, top + self.resize)), np.uint8)
        except OSError as e:  # PIL's error for truncated and foreign files
            raise DataError(f"{file}: not a readable image ({e})") from e


def _scan(root: str, classes: list[str] | None) -> tuple[list[str], list[str], np.ndarray]:
    if not os.path.isdir(root):
        raise DataError(f"{root}: missing (an image folder dataset has train/ and val/)")
    found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not found:
        raise DataError(f"{root}: no class sub-folders")
    if classes is None:
        classes = found
    elif unknown := sorted(set(found) - set(classes)):
        raise DataError(f"{root}: classes not in train/: {', '.join(unknown)}")
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        images = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))
        if not images and root.endswith("train"):
            raise DataError(f"{folder}: a class folder with no images")
        files += [os.path.join(folder, f) for f in images]
        labels += [label] * len(images)
    if not files:
        raise DataError(f"{root}: no images")
    return classes, files, np.asarray(labels, np.int64)


IMAGENET_CROP = 224  # torchvision's ImageNet recipe: shorter side to 256, crop 224 (7/8)
SAMPLED = 32  # images whose size sets the default crop


def default_image_size(files: list[str]) -> int:
    """The crop for a folder when none is asked: torchvision's 224, or 7/8 of the images' shorter side
    where they are smaller than 256 px (the smallest of the first few images), so small images are
    not blown up to 256 first."""
    from PIL import Image

    sides = []
    for file in files[:SAMPLED]:
        try:
            with Image.open(file) as im:
                sides.append(min(im.size))
        except OSError as e:
            raise DataError(f"{file}: not a readable image ({e})") from e
    side = min(sides)
    return IMAGENET_CROP if side >= round(IMAGENET_CROP * 8 / 7) else max(8, round(side * 7 / 8))


def load_image_folder(
    path: str | os.PathLike, image_size: int | None = None, resize: int | None = None
) -> Dataset:
    """``path/train/<class>/*`` and ``path/val/<class>/*``; ``resize`` defaults to image_size * 8/7, and
    ``image_size`` to :func:`default_image_size`. The dataset's ``note`` says what is done."""
    path = os.fspath(path)
    classes, train_files, train_labels = _scan(os.path.join(path, "train"), None)
    _, val_files, val_labels = _scan(os.path.join(path, "val"), classes)
    chosen = image_size is None
    if chosen:
        image_size = default_image_size(train_files)
    resize = resize or round(image_size * 8 / 7)
    if resize < image_size:
        raise DataError(f"resize {resize} is smaller than the crop {image_size}")
    note = (
        f"images are resized (shorter side) to {resize} px and cropped to {image_size}x{image_size} "
        "(at random in training, centred in evaluation)"
        + (
            f"; {image_size} px was chosen from the images' own size, pass --image-size to choose another"
            if chosen
            else ""
        )
    )
    return Dataset(
        os.path.basename(os.path.normpath(path)),
        FolderSplit(train_files, train_labels, resize),
        FolderSplit(val_files, val_labels, resize),
        len(classes),
        classes,
        pad=0,
        crop=image_size,
        test_split="val",
        note=note,
    )
