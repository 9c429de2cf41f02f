"""Canonical checkpoint files: safetensors with the config, form and format version.

Writes are atomic: the bytes go to a temporary file beside the destination,
are flushed to disk, and only then renamed over it, so a reader never sees a
half-written file and a failed write leaves any earlier file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .config import ArchConfig, check_form_for
from .errors import ConfigError, ResNeXtError
from .forms import to_form
from .weights import check_weights

FORMAT_NAME = "resnext-three-ways"
FORMAT_VERSION = "1"


class CheckpointError(ResNeXtError):
    """A file that is not a readable checkpoint of this project (truncated, foreign, wrong version)."""


# Metadata key of the checksum of a file's tensors (see tensor_digest); files without one still load.
DIGEST_KEY = "tensors_sha256"
# What h5py, and Keras reading through it, raise for damaged HDF5; every HDF5 reader turns these
# into an error naming the file. Measured on 1,500 truncated or byte-flipped .weights.h5 files:
# OSError "Unable to synchronously open file (truncated file ...)", RuntimeError "Object
# visitation failed", KeyError "Unable to synchronously open object (invalid dataset size, likely
# file corruption)", ValueError "A total of 1 objects could not be loaded" (Keras) and
# UnicodeDecodeError (a ValueError) in an attribute. Nothing else, so a TypeError is a bug.
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError)


def stored_config(header: Mapping, path: str | os.PathLike, where: str) -> tuple[ArchConfig, str]:
    """The (config, form) a file of ours records under ``"config"`` (JSON) and ``"form"`` in its
    ``where`` (safetensors metadata, HDF5 attributes, msgpack header); CheckpointError if damaged."""
    try:
        config = ArchConfig.from_json(str(header["config"]))
        return config, check_form_for(config, str(header["form"]))
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"{path}: bad config or form in the {where}: {e}") from e


def tensor_digest(weights: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of canonical weights: every name, shape and float32 value, in name order.

    The project's own files (safetensors, Keras ``.weights.h5``, Flax ``.msgpack``)
    record it at writing and check it at reading, so a flipped bit in tensor data is
    an error instead of a quietly different model. It is computed from the canonical
    tensors, not the file's bytes, so each format checks the same thing its own way.
    """
    h = hashlib.sha256()
    for name in sorted(weights):
        a = np.ascontiguousarray(np.asarray(weights[name], np.float32))
        h.update(f"{name}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_digest(weights: Mapping[str, np.ndarray], stored: object, path: str | os.PathLike) -> None:
    """CheckpointError unless ``weights`` hash to ``stored`` (None: a file written without a checksum)."""
    if stored is None:
        return
    if str(stored) != tensor_digest(weights):
        raise CheckpointError(
            f"{path}: the tensor data does not match the file's checksum ({DIGEST_KEY}): the file is damaged"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded.

    Shared by every writer of the project (safetensors, torch, Keras, Flax files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_dir(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(folder)`` on a new folder beside ``path`` and rename it to ``path`` only if it
    succeeded (replacing what is there: the caller has checked it may); else nothing is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write(tmp)
        if path.exists():  # overwriting was asked for (--force)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def save_checkpoint(
    path: str | os.PathLike,
    weights: Mapping[str, np.ndarray],
    config: ArchConfig,
    form: str = "c",
) -> None:
    """Write canonical ``weights`` of (config, form) to a safetensors file, atomically.

    The weights are checked against the config first: a file is only written if
    it would load back into the model it claims to be.
    """
    check_form_for(config, form)
    # The canonical format is float32, whatever precision the weights were computed in.
    arrays = {k: v.astype(np.float32, copy=False) for k, v in check_weights(weights, config, form).items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": config.to_json(),
        "form": form,
        DIGEST_KEY: tensor_digest(arrays),
    }
    data = st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], ArchConfig, str]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(weights, config, form)``.

    Raises :class:`CheckpointError` naming the problem for a missing, truncated,
    foreign or newer-version file, and :class:`WeightsMismatchError` if its
    tensors do not match its own config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    data = path.read_bytes()
    metadata = read_safetensors_metadata(data, path)
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a {FORMAT_NAME} checkpoint "
            f"(metadata format={metadata.get('format')!r}); it has no config to build a model from"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {metadata.get('format_version')!r}; "
            f"this version reads {FORMAT_VERSION!r}"
        )
    config, form = stored_config(metadata, path, "metadata")
    weights = read_safetensors(data, path)
    weights = check_weights(weights, config, form, context=f" ({path})")
    check_digest(weights, metadata.get(DIGEST_KEY), path)
    return weights, config, form


# A framework's own file that records its network: (its suffix, path -> (weights, config, form)).
NativeReader = tuple[str, Callable[[str | os.PathLike], tuple[dict[str, np.ndarray], ArchConfig, str]]]


def load_checkpoint_as(
    path: str | os.PathLike, form: str | None = None, native: NativeReader | None = None
) -> tuple[dict[str, np.ndarray], ArchConfig, str]:
    """:func:`load_checkpoint`, or ``native``'s reader for a file with its suffix, converted to ``form``
    (default: the file's own): what every ``load`` needs."""
    if native is not None and str(path).endswith(native[0]):
        weights, config, src = native[1](path)
    else:
        weights, config, src = load_checkpoint(path)
    form = form or src
    return to_form(weights, config, src, form), config, form


def read_safetensors_metadata(data: bytes, path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of the safetensors bytes ``data``; CheckpointError if they are not one."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(
            f"{path}: not a safetensors file, or truncated (header says {n} bytes, file has {len(data) - 8})"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON)") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: not a safetensors file (__metadata__ is not a map of strings)")
    return metadata


def read_safetensors(data: bytes, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file held in ``data``; truncation is a CheckpointError."""
    read_safetensors_metadata(data, path)
    try:
        return dict(st_load(data))
    except (SafetensorError, ValueError, TypeError, OverflowError) as e:  # numpy refuses some forged shapes
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({e})") from e


# What a Keras ``.weights.h5`` written by this project (``resnext_keras.save_weights_atomic``) keeps
# in its root attributes beside Keras's own groups, which key layers by class and order only.
H5_CONFIG, H5_FORM, H5_DIGEST = "resnext_config", "resnext_form", f"resnext_{DIGEST_KEY}"


def damaged_h5(path, e: Exception) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable Keras weights file, or damaged ({type(e).__name__}: {e})")


def read_h5_header(path: str | os.PathLike) -> tuple[ArchConfig | None, str | None]:
    """(config, form) stored in a ``.weights.h5`` by this project, or (None, None) for another Keras
    file (keras.applications'): h5py only, so telling the two apart needs no framework."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f:
                raise CheckpointError(f"{path}: an HDF5 file, but not a Keras .weights.h5 file (no 'layers')")
            config, form = f.attrs.get(H5_CONFIG), f.attrs.get(H5_FORM)
    except CheckpointError:
        raise
    except H5_ERRORS as e:
        raise damaged_h5(path, e) from e
    if config is None:
        return None, None
    return stored_config({"config": config, "form": form}, path, "file's attributes")
