"""Small synthetic datasets written in the real distributed layouts, for the tests and benchmarks.

The images are built in HWC order first and then written the way each format stores
them (CIFAR: planar R, G, B planes of 32x32), so reading them back is checked against
the images themselves, not against the reader's own arithmetic.
"""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np

# Four classes a network can learn in a few steps: noisy images of four colours.
PALETTE = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)], np.float64)


def cifar_images(
    n: int, num_classes: int, seed: int, learnable: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if learnable:
        fine = rng.integers(0, len(PALETTE), n).astype(np.int64)
        noisy = PALETTE[fine][:, None, None, :] + rng.normal(0, 40, (n, 32, 32, 3))
        images = np.clip(noisy, 0, 255).astype(np.uint8)
    else:
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, num_classes, n).astype(np.int64)
    coarse = (fine // 5).astype(np.int64)
    return images, fine, coarse


def planar(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_cifar(
    root: str, kind: str, n_train: int = 40, n_test: int = 16, seed: int = 0, learnable: bool = False
):
    """kind: cifar10-bin, cifar100-bin, cifar10-py, cifar100-py. Returns (folder, train, test).

    ``learnable``: four colour classes (see PALETTE) instead of noise with random labels.
    """
    num_classes = 100 if kind.startswith("cifar100") else 10
    train = cifar_images(n_train, num_classes, seed, learnable)
    test = cifar_images(n_test, num_classes, seed + 1, learnable)
    folder = os.path.join(
        root,
        {
            "cifar10-bin": "cifar-10-batches-bin",
            "cifar100-bin": "cifar-100-binary",
            "cifar10-py": "cifar-10-batches-py",
            "cifar100-py": "cifar-100-python",
        }[kind],
    )
    os.makedirs(folder, exist_ok=True)

    def write(name: str, data: bytes) -> None:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)

    def records(part, first: int, last: int) -> bytes:
        images, fine, coarse = (a[first:last] for a in part)
        labels = [fine[:, None]] if num_classes == 10 else [coarse[:, None], fine[:, None]]
        return np.concatenate([*(lab.astype(np.uint8) for lab in labels), planar(images)], 1).tobytes()

    def batch(part, first: int, last: int) -> bytes:
        images, fine, coarse = (a[first:last] for a in part)
        d = {b"batch_label": b"testing batch", b"data": planar(images), b"filenames": [b"x.png"] * len(fine)}
        if num_classes == 10:
            d[b"labels"] = fine.tolist()
        else:
            d[b"fine_labels"], d[b"coarse_labels"] = fine.tolist(), coarse.tolist()
        return pickle.dumps(d, protocol=2)  # the protocol of the distributed files

    if kind == "cifar10-bin":
        for i in range(5):
            write(f"data_batch_{i + 1}.bin", records(train, i * n_train // 5, (i + 1) * n_train // 5))
        write("test_batch.bin", records(test, 0, n_test))
    elif kind == "cifar100-bin":
        write("train.bin", records(train, 0, n_train))
        write("test.bin", records(test, 0, n_test))
    elif kind == "cifar10-py":
        for i in range(5):
            write(f"data_batch_{i + 1}", batch(train, i * n_train // 5, (i + 1) * n_train // 5))
        write("test_batch", batch(test, 0, n_test))
    else:
        write("train", batch(train, 0, n_train))
        write("test", batch(test, 0, n_test))
    return folder, train, test


def tar_gz(folder: str, path: str) -> str:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=os.path.basename(folder))
    return path


def write_image_folder(root: str, classes=("cat", "dog", "emu"), per_class: int = 3, size=(40, 30)) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(root, split, c, f"{i}.png"))
    return root
