"""The calls every tool makes of a framework, the same in ``resnext_torch``, ``resnext_keras`` and
``resnext_flax``: build a (config, form, lowering) holding given weights, predict, the output at
every comparison point, and the framework's own weights file. Tools name a framework and call
these; none keeps a builder of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from resnext_spec import ArchConfig, CheckpointError, stage_names
from resnext_spec.frameworks import relayout

from .model import ResNet, create_model
from .train import full_fp32
from .weights import import_weights, load_msgpack, save_msgpack

NATIVE_SUFFIX = ".msgpack"  # what save_native writes: flax.serialization's msgpack of the state


def build(
    config: ArchConfig,
    form: str = "c",
    *,
    conv_impl: str = "auto",
    weights: Mapping[str, object] | None = None,
) -> ResNet:
    """A model of ``config`` in ``form``, its grouped convs computed by ``conv_impl``, holding
    ``weights`` (canonical; None keeps the initial ones)."""
    model = create_model(config=config, form=form, conv_impl=conv_impl)
    if weights is not None:
        import_weights(model, weights)
    return model


def predict(model: ResNet, x: np.ndarray, layout: str = "nchw") -> np.ndarray:
    """Eval-mode output (logits; a headless model's pooled features) of numpy images in ``layout``."""
    model.eval()
    with full_fp32():  # JAX on a GPU would compute in TF32
        return np.asarray(model(np.ascontiguousarray(relayout(np.asarray(x), layout, "nhwc"))))


def stage_outputs(model: ResNet, x: np.ndarray, layout: str = "nchw") -> dict[str, np.ndarray]:
    """Eval-mode output at every point of ``resnext_spec.stage_names``, float64, maps in ``layout``."""
    model.eval()
    with full_fp32():
        out = model.forward_stages(np.ascontiguousarray(relayout(np.asarray(x), layout, "nhwc")))
    return {k: relayout(np.asarray(out[k], np.float64), "nhwc", layout) for k in stage_names(model.config)}


def save_native(model: ResNet, path: str | os.PathLike) -> None:
    """The framework's own weights file (flax.serialization msgpack with config and form), atomically."""
    save_msgpack(model, path)


def load_native(path: str | os.PathLike, config: ArchConfig | None = None, form: str | None = None) -> ResNet:
    """A model from :func:`save_native`'s file, which records its network and form; ``config`` and
    ``form``, if given, must be the file's."""
    model = load_msgpack(path)
    if (config is not None and config != model.config) or (form is not None and form != model.form):
        raise CheckpointError(f"{path}: holds {model.config} form ({model.form}), not what was asked")
    return model
