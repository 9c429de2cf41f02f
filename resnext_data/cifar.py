"""CIFAR-10 and CIFAR-100 from the files as distributed, with no download.

Four layouts are read, each as a folder or as its ``.tar.gz``:

- ``cifar-10-batches-bin/``: ``data_batch_{1..5}.bin`` and ``test_batch.bin``, records of
  1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32x32);
- ``cifar-100-binary/``: ``train.bin``, ``test.bin``, records of a coarse and a fine
  label byte + 3072 pixel bytes (the fine label is the class);
- ``cifar-10-batches-py/`` and ``cifar-100-python/``: pickled dicts with ``b"data"``
  (uint8, N x 3072) and ``b"labels"`` / ``b"fine_labels"``.

The pickles are read by an unpickler that admits only what those files hold (dicts,
lists, bytes, strings, ints and numpy arrays), never arbitrary code. A missing,
truncated or malformed file is a :class:`DataError` naming it.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections.abc import Callable

import numpy as np

from .datasets import ArraySplit, DataError, Dataset

PIXELS = 32 * 32 * 3
# layout folder -> (dataset name, python version?, train files, test file, label bytes or key, classes)
LAYOUTS = {
    "cifar-10-batches-bin": (
        "cifar10",
        False,
        [f"data_batch_{i}.bin" for i in range(1, 6)],
        "test_batch.bin",
        1,
    ),
    "cifar-100-binary": ("cifar100", False, ["train.bin"], "test.bin", 2),
    "cifar-10-batches-py": (
        "cifar10",
        True,
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        b"labels",
    ),
    "cifar-100-python": ("cifar100", True, ["train"], "test", b"fine_labels"),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


class _CifarUnpickler(pickle.Unpickler):
    """Admits the few globals a CIFAR pickle names: numpy's array rebuilders and bytes' codec."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR file holds no such object")
        if module == "numpy.core.multiarray":  # the name numpy 1.x wrote; numpy 2 moved it
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    # Measured on 3,000 damaged batches: UnpicklingError "pickle data was truncated", EOFError,
    # UnicodeDecodeError and ValueError "unsupported pickle protocol", LookupError "unknown
    # encoding", TypeError from a codec handed a tuple.
    except (pickle.UnpicklingError, EOFError, ValueError, LookupError, TypeError) as e:
        raise DataError(f"{where}: not a CIFAR python batch ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR python batch (a pickled {type(obj).__name__}, not a dict)")
    return obj


def _find_layout(path: str) -> tuple[str, str] | None:
    """(layout, where it is) for a layout folder, a folder holding one, or a .tar.gz."""
    if os.path.isdir(path):
        base = os.path.basename(os.path.normpath(path))
        if base in LAYOUTS:
            return base, path
        for layout in LAYOUTS:
            if os.path.isdir(os.path.join(path, layout)):
                return layout, os.path.join(path, layout)
        return None
    if path.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(path, "r:gz") as tar:
                first = tar.next()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{path}: not a readable .tar.gz ({type(e).__name__}: {e})") from e
        top = first.name.split("/")[0] if first is not None else ""
        return (top, path) if top in LAYOUTS else None
    return None


def is_cifar(path: str) -> bool:
    return _find_layout(path) is not None


def _reader(layout: str, where: str) -> Callable[[str], bytes]:
    """A function from a file name in the layout to its bytes."""
    if os.path.isdir(where):

        def read(name: str) -> bytes:
            file = os.path.join(where, name)
            if not os.path.isfile(file):
                raise DataError(f"{file}: missing (a {layout} folder holds it)")
            with open(file, "rb") as f:
                return f.read()

        return read
    try:  # the archive is read whole once: CIFAR is 160-180 MB unpacked
        with tarfile.open(where, "r:gz") as tar:
            members = {
                m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile() and "/" in m.name
            }
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{where}: truncated or corrupt .tar.gz ({type(e).__name__}: {e})") from e

    def read_member(name: str) -> bytes:
        member = f"{layout}/{name}"
        if member not in members:
            raise DataError(f"{where}: {member} missing from the archive")
        return members[member]

    return read_member


def _check(images: np.ndarray, labels: np.ndarray, num_classes: int, where: str) -> None:
    if len(labels) == 0:
        raise DataError(f"{where}: holds no images")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"{where}: label {int(labels.max())} out of range for {num_classes} classes")


def _read_binary(data: bytes, label_bytes: int, num_classes: int, where: str):
    record = label_bytes + PIXELS
    if len(data) == 0 or len(data) % record:
        raise DataError(
            f"{where}: {len(data)} bytes is not a whole number of {record}-byte records (truncated?)"
        )
    rows = np.frombuffer(data, np.uint8).reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: the fine label, the second byte
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    _check(images, labels, num_classes, where)
    return images, labels


def _read_python(data: bytes, key: bytes, num_classes: int, where: str):
    batch = _unpickle(data, where)
    if b"data" not in batch or key not in batch:
        raise DataError(f"{where}: a pickled dict without {b'data'!r} and {key!r}: not a CIFAR batch")
    images, labels = batch[b"data"], np.asarray(batch[key], dtype=np.int64)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        raise DataError(f"{where}: data is not a uint8 N x {PIXELS} array")
    if images.shape != (len(labels), PIXELS):
        raise DataError(f"{where}: data {images.shape} does not fit {len(labels)} labels of {PIXELS} bytes")
    _check(images, labels, num_classes, where)
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar(path: str | os.PathLike) -> Dataset:
    """CIFAR-10 or CIFAR-100 in any of the four distributed layouts; see the module docstring."""
    path = os.fspath(path)
    found = _find_layout(path)
    if found is None:
        raise DataError(f"{path}: no CIFAR layout found (looked for {', '.join(LAYOUTS)} or their .tar.gz)")
    layout, where = found
    name, python, train_files, test_file, label = LAYOUTS[layout]
    read = _reader(layout, where)
    num_classes = NUM_CLASSES[name]

    def split(files: list[str]) -> ArraySplit:
        parts = []
        for f in files:
            data, at = read(f), f"{where}/{f}" if not os.path.isdir(where) else os.path.join(where, f)
            if python:
                parts.append(_read_python(data, label, num_classes, at))
            else:
                parts.append(_read_binary(data, label, num_classes, at))
        images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
        return ArraySplit(images, np.concatenate([p[1] for p in parts]))

    classes = [str(i) for i in range(num_classes)]
    return Dataset(name, split(train_files), split([test_file]), num_classes, classes, pad=4, crop=32)
