"""Exact conversions between the three block forms, in numpy.

Path p of forms (a)/(b) owns channels ``p*w .. (p+1)*w - 1`` of the grouped
form (c): those rows of conv1, group p of conv2 (which, in OIHW layout, is the
same rows), those channels of bn1/bn2, and in form (a) the matching input
columns of conv3. Every conversion is slicing or concatenation, so it is exact
and lossless both ways; (a) <-> (b) goes through (c).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .config import ArchConfig, check_form_for
from .layout import KIND_TENSORS, canonical_shapes, plan
from .weights import check_weights

# (layer, tensor axis sliced per path) of a bottleneck block, per form.
_PATH_LAYERS = {
    "b": (("conv1", 0), ("bn1", 0), ("conv2", 0), ("bn2", 0)),
    "a": (("conv1", 0), ("bn1", 0), ("conv2", 0), ("bn2", 0), ("conv3", 1)),
}
_KIND = {"conv1": "conv", "conv2": "conv", "conv3": "conv", "bn1": "bn", "bn2": "bn"}


def path_layers(form: str) -> tuple[tuple[str, int], ...]:
    """(layer of form (c), axis of its weight cut per path) for the paths of form ``form`` ("a"/"b")."""
    return _PATH_LAYERS[form]


def _path_entries(block_name: str, form: str):
    """(form-c name, path name template, axis) for every per-path tensor of a block."""
    for layer, axis in _PATH_LAYERS[form]:
        for t in KIND_TENSORS[_KIND[layer]]:
            yield f"{block_name}.{layer}.{t}", f"{block_name}.paths.{{p}}.{layer}.{t}", axis


def _split(weights: dict[str, np.ndarray], config: ArchConfig, dst: str) -> dict[str, np.ndarray]:
    out = dict(weights)
    for b in plan(config).blocks:
        for c_name, path_name, axis in _path_entries(b.name, dst):
            if c_name not in out:
                continue  # partial dicts (gradients) lack running statistics
            full = out.pop(c_name)
            for p in range(b.cardinality):
                index = [slice(None)] * full.ndim
                index[axis] = b.path_slice(p)
                out[path_name.format(p=p)] = np.ascontiguousarray(full[tuple(index)])
    return out


def _join(weights: dict[str, np.ndarray], config: ArchConfig, src: str) -> dict[str, np.ndarray]:
    out = dict(weights)
    for b in plan(config).blocks:
        for c_name, path_name, axis in _path_entries(b.name, src):
            names = [path_name.format(p=p) for p in range(b.cardinality)]
            if names[0] not in out:
                continue
            out[c_name] = np.concatenate([out.pop(n) for n in names], axis=axis)
    return out


def to_form(
    weights: Mapping[str, object],
    config: ArchConfig,
    src: str,
    dst: str,
    *,
    partial: bool = False,
) -> dict[str, np.ndarray]:
    """Convert canonical weights of ``config`` from form ``src`` to form ``dst``.

    The result is ordered like ``canonical_shapes(config, dst)``. With
    ``partial=True`` the input may lack names (e.g. a gradient dict has no BN
    running statistics); the conversion is linear in every tensor, so gradients
    convert exactly like weights.
    """
    check_form_for(config, src)
    check_form_for(config, dst)
    arrays = check_weights(weights, config, src, strict=not partial, context=f" (form {src!r})")
    if src == dst or config.block == "basic":
        return arrays
    c = arrays if src == "c" else _join(arrays, config, src)
    out = c if dst == "c" else _split(c, config, dst)
    return {k: out[k] for k in canonical_shapes(config, dst) if k in out}
