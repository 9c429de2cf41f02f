"""Canonical (torch-layout) weights in and out of a Flax NNX model.

Module paths equal canonical names (``layer2.0.downsample.1`` is
``model.layer2[0].downsample[1]``), so the map is an explicit table of
canonical name -> (module path, Flax variable name, layout transform):
conv ``kernel`` HWIO, linear ``kernel`` (in, out), BN weight/bias/running_mean/
running_var -> scale/bias/mean/var.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from resnext_spec import check_weights, layers, load_checkpoint, save_checkpoint, to_form
from resnext_spec.layout import FROM_CHANNELS_LAST, TO_CHANNELS_LAST

from .model import ResNet

BN_VARIABLES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _module(model: nnx.Module, dotted: str) -> nnx.Module:
    node = model
    for part in dotted.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def weight_table(model: ResNet) -> list[tuple[str, nnx.Variable, str]]:
    """(canonical name, Flax variable, transform) for every canonical tensor, in canonical order."""
    table = []
    for spec in layers(model.config, model.form):
        module = _module(model, spec.name)
        if spec.kind == "conv":
            table.append((f"{spec.name}.weight", module.kernel, "conv"))
        elif spec.kind == "bn":
            for t, attr in BN_VARIABLES.items():
                table.append((f"{spec.name}.{t}", getattr(module, attr), "same"))
        else:
            table.append((f"{spec.name}.weight", module.kernel, "linear"))
            table.append((f"{spec.name}.bias", module.bias, "same"))
    return table


def export_weights(model: ResNet) -> dict[str, np.ndarray]:
    """The canonical dict of ``model``'s own form, float32, torch layout."""
    return {
        name: np.ascontiguousarray(FROM_CHANNELS_LAST[t](np.asarray(var[...]))).astype(np.float32, copy=False)
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
            var.set_value(
                jnp.asarray(np.ascontiguousarray(TO_CHANNELS_LAST[t](arrays[name])), dtype=var.dtype)
            )


def count_params(model: nnx.Module) -> int:
    """Trainable parameters (``nnx.Param``: BN scale/bias included, running statistics not)."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param))))


def save(model: ResNet, path: str | os.PathLike) -> None:
    """Write ``model`` as a canonical safetensors checkpoint (atomic)."""
    save_checkpoint(path, export_weights(model), model.config, model.form)


def load(path: str | os.PathLike, form: str | None = None) -> ResNet:
    """Build and fill a model from a canonical checkpoint, converting to ``form`` if given."""
    weights, config, src = load_checkpoint(path)
    form = form or src
    model = ResNet(config, form)  # initialised, then overwritten by the strict import
    import_weights(model, to_form(weights, config, src, form))
    return model
