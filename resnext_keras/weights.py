"""Canonical (torch-layout) weights in and out of a Keras model.

The map is an explicit table from ``resnext_spec.layers``: canonical name ->
Keras variable plus a named, invertible layout transform. Conv kernels are
OIHW <-> HWIO, the dense kernel (out, in) <-> (in, out), BN tensors are renamed
(weight/bias/running_mean/running_var <-> gamma/beta/moving_mean/moving_variance).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import keras
import numpy as np

from resnext_spec import (
    ArchConfig,
    CheckpointError,
    atomic_write,
    check_weights,
    load_checkpoint_as,
    save_checkpoint,
)
from resnext_spec.checkpoint import (
    H5_CONFIG,
    H5_DIGEST,
    H5_ERRORS,
    H5_FORM,
    check_digest,
    damaged_h5,
    read_h5_header,
    tensor_digest,
)
from resnext_spec.layout import FROM_CHANNELS_LAST, TO_CHANNELS_LAST, tensor_table

from .model import ResNet, create_model, layer_name

# (layer kind, canonical tensor) -> the Keras variable's attribute. A registered part's own layer
# names its variables as the canonical tensors (``weight``), so it needs no entry here.
VARIABLES = {
    ("conv", "weight"): "kernel",
    ("conv", "bias"): "bias",
    ("conv1d", "weight"): "kernel",
    ("bn", "weight"): "gamma",
    ("bn", "bias"): "beta",
    ("bn", "running_mean"): "moving_mean",
    ("bn", "running_var"): "moving_variance",
    ("linear", "weight"): "kernel",
    ("linear", "bias"): "bias",
    ("bias", "bias"): "bias",
    ("gn", "weight"): "gamma",
    ("gn", "bias"): "beta",
}


def weight_table(model: ResNet) -> list[tuple[str, keras.Variable, str]]:
    """(canonical name, Keras variable, transform) for every canonical tensor, in canonical order."""
    by_name = {layer.name: layer for layer in model.layers}
    return [
        (name, getattr(by_name[layer_name(layer)], VARIABLES.get((kind, tensor), tensor)), transform)
        for name, layer, kind, tensor, transform in tensor_table(model.config, model.form)
    ]


def export_weights(model: ResNet) -> dict[str, np.ndarray]:
    """The canonical dict of ``model``'s own form, float32, torch layout."""
    return {
        name: np.ascontiguousarray(FROM_CHANNELS_LAST[t](keras.ops.convert_to_numpy(var.value))).astype(
            np.float32, copy=False
        )
        for name, var, t in weight_table(model)
    }


def import_weights(model: ResNet, weights: Mapping[str, object], strict: bool = True) -> None:
    """Load canonical ``weights`` of ``model``'s form; all checked before any is written.

    A missing or unexpected name, wrong shape or non-float tensor raises one
    error listing every problem, and the model is unchanged. ``strict=False``
    allows missing names (they keep their values).
    """
    arrays = check_weights(weights, model.config, model.form, strict=strict)
    for name, var, t in weight_table(model):
        if name in arrays:
            var.assign(np.ascontiguousarray(TO_CHANNELS_LAST[t](arrays[name])).astype(var.dtype))


def count_params(model: keras.Model) -> int:
    """Trainable parameters (BN gamma/beta included); moving statistics are not parameters.

    Keras's own ``model.count_params()`` counts the moving mean and variance too.
    """
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def save(model: ResNet, path: str | os.PathLike) -> None:
    """Write ``model`` as a canonical safetensors checkpoint (atomic)."""
    save_checkpoint(path, export_weights(model), model.config, model.form)


def load(path: str | os.PathLike, form: str | None = None) -> ResNet:
    """Build and fill a model from a canonical checkpoint (``.safetensors``) or this package's own
    ``.weights.h5`` (which records its network), converting to ``form`` if given."""
    weights, config, form = load_checkpoint_as(path, form, native=(".weights.h5", _native))
    model = create_model(config=config, form=form)
    import_weights(model, weights)
    return model


def _native(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], ArchConfig, str]:
    model = load_weights_file(path)
    return export_weights(model), model.config, model.form


def save_weights_atomic(model: ResNet, path: str | os.PathLike) -> None:
    """``model.save_weights`` to a ``.weights.h5`` file, written atomically.

    Keras names the file's groups by layer class and creation order
    (``layers/conv2d_7/vars/0``), not by layer name, so the file alone cannot say
    which network it holds. The config and form go into its root attributes, and
    :func:`load_weights_file` rebuilds the right model from them.
    """
    atomic_write(path, lambda tmp: _save_h5(model, tmp))


def _save_h5(model: ResNet, tmp: str) -> None:
    import h5py

    # Keras insists on the '.weights.h5' suffix: write beside, then move onto the temp path.
    named = f"{tmp}.weights.h5"
    try:
        model.save_weights(named)
        with h5py.File(named, "a") as f:
            f.attrs[H5_CONFIG] = model.config.to_json()
            f.attrs[H5_FORM] = model.form
            f.attrs[H5_DIGEST] = tensor_digest(export_weights(model))
        os.replace(named, tmp)
    finally:
        if os.path.exists(named):
            os.remove(named)


def load_weights_file(
    path: str | os.PathLike, config: ArchConfig | None = None, form: str | None = None
) -> ResNet:
    """Build the model a ``.weights.h5`` file holds and load it (its checksum checked, if it has one).

    The config and form come from the file (see :func:`save_weights_atomic`) or,
    for a file without them, from the arguments. A file that does not fit is a
    :class:`CheckpointError`.
    """
    import h5py

    stored_config, stored_form = read_h5_header(path)
    config, form = config or stored_config, form or stored_form or "c"
    if config is None:
        raise CheckpointError(f"{path}: a Keras weights file without a stored config; say which model it is")
    model = create_model(config=config, form=form)
    # Keras skips what does not fit with a warning; compare the file with what this
    # model would write, so a wrong file is an error and not a half-loaded model.
    with tempfile.TemporaryDirectory() as tmp:
        model.save_weights(os.path.join(tmp, "expected.weights.h5"))
        expected = _h5_shapes(os.path.join(tmp, "expected.weights.h5"))
    try:
        got = _h5_shapes(path)
    except H5_ERRORS as e:
        raise damaged_h5(path, e) from e
    problems = [f"missing {k}" for k in expected if k not in got]
    problems += [f"unexpected {k}" for k in got if k not in expected]
    problems += [
        f"{k}: shape {got[k]}, model has {v}" for k, v in expected.items() if k in got and got[k] != v
    ]
    if problems:
        raise CheckpointError(
            f"{path}: does not fit {config} in form {form!r} ({len(problems)} problems: "
            + "; ".join(problems[:8])
            + ")"
        )
    try:
        model.load_weights(path)
        with h5py.File(path, "r") as f:
            stored = f.attrs.get(H5_DIGEST)
    except H5_ERRORS as e:
        raise damaged_h5(path, e) from e
    check_digest(export_weights(model), stored, path)
    return model


def _h5_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    import h5py

    shapes: dict[str, tuple[int, ...]] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: shapes.update({name: obj.shape}) if isinstance(obj, h5py.Dataset) else None
        )
    return shapes
