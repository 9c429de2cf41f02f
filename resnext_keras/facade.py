"""The calls every tool makes of a framework, the same in ``resnext_torch``, ``resnext_keras`` and
``resnext_flax``: build a (config, form, lowering) holding given weights, predict, the output at
every comparison point, and the framework's own weights file. Tools name a framework and call
these; none keeps a builder of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np

from resnext_spec import ArchConfig, stage_names
from resnext_spec.frameworks import relayout

from .model import ResNet, create_model, stages_model
from .train import full_fp32
from .weights import import_weights, load_weights_file, save_weights_atomic

NATIVE_SUFFIX = ".weights.h5"  # what save_native writes: Keras 3's weights file


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
    with full_fp32():  # JAX on a GPU would compute in TF32
        return keras.ops.convert_to_numpy(
            model(np.ascontiguousarray(relayout(np.asarray(x), layout, "nhwc")), training=False)
        )


def stage_outputs(model: ResNet, x: np.ndarray, layout: str = "nchw") -> dict[str, np.ndarray]:
    """Eval-mode output at every point of ``resnext_spec.stage_names``, float64, maps in ``layout``."""
    with full_fp32():
        got = stages_model(model)(
            np.ascontiguousarray(relayout(np.asarray(x), layout, "nhwc")), training=False
        )
    arrays = {
        k: np.asarray(keras.ops.convert_to_numpy(got[k]), np.float64) for k in stage_names(model.config)
    }
    if layout == "nchw":
        return {k: a.transpose(0, 3, 1, 2) if a.ndim == 4 else a for k, a in arrays.items()}
    return arrays


def save_native(model: ResNet, path: str | os.PathLike) -> None:
    """The framework's own weights file (Keras 3's ``.weights.h5``, the config in its attributes)."""
    save_weights_atomic(model, path)


def load_native(path: str | os.PathLike, config: ArchConfig | None = None, form: str | None = None) -> ResNet:
    """A model from a ``.weights.h5``: its network from the file's attributes, or from ``config``
    and ``form`` for a file without them; a file that does not fit is a ``CheckpointError``."""
    return load_weights_file(path, config, form)
