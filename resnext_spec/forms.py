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
from .layout import canonical_shapes, form_c_name, layers
from .weights import check_weights


def _path_entries(config: ArchConfig, form: str):
    """(form-c tensor, [its path tensors in path order], axis) for every per-path tensor of ``form``.

    Read off ``layout.body_layers``: a path layer names the form-(c) layer it slices and the axis.
    """
    groups: dict[str, tuple[list[str], int]] = {}
    for layer in layers(config, form):
        if layer.path is None:
            continue
        c_layer = form_c_name(layer)
        for t in layer.tensors:
            groups.setdefault(f"{c_layer}.{t}", ([], layer.cut_axis))[0].append(f"{layer.name}.{t}")
    return [(c_name, names, axis) for c_name, (names, axis) in groups.items()]


def _split(weights: dict[str, np.ndarray], config: ArchConfig, dst: str) -> dict[str, np.ndarray]:
    out = dict(weights)
    for c_name, names, axis in _path_entries(config, dst):
        if c_name not in out:
            continue  # partial dicts (gradients) lack running statistics
        full = out.pop(c_name)
        n = full.shape[axis] // len(names)
        for p, name in enumerate(names):
            index = [slice(None)] * full.ndim
            index[axis] = slice(p * n, (p + 1) * n)
            out[name] = np.ascontiguousarray(full[tuple(index)])
    return out


def _join(weights: dict[str, np.ndarray], config: ArchConfig, src: str) -> dict[str, np.ndarray]:
    out = dict(weights)
    for c_name, names, axis in _path_entries(config, src):
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
