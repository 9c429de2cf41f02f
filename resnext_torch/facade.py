"""The calls every tool makes of a framework, the same in ``resnext_torch``, ``resnext_keras`` and
``resnext_flax``: build a (config, form, lowering) holding given weights, predict, the output at
every comparison point, and the framework's own weights file. Tools name a framework and call
these; none keeps a builder of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

from resnext_spec import ArchConfig, CheckpointError, stage_names
from resnext_spec.frameworks import relayout

from .model import ResNet, create_model
from .weights import import_weights, save_state_dict

NATIVE_SUFFIX = ".pth"  # what save_native writes: torchvision's file layout


def build(
    config: ArchConfig,
    form: str = "c",
    *,
    conv_impl: str = "auto",
    weights: Mapping[str, object] | None = None,
) -> ResNet:
    """A model of ``config`` in ``form`` holding ``weights`` (canonical; None keeps the initial ones).

    ``conv_impl`` is accepted for the same call in every framework: torch has one grouped conv.
    """
    model = create_model(config=config, form=form)
    if weights is not None:
        import_weights(model, weights)
    return model


def _input(model: ResNet, x: np.ndarray, layout: str) -> torch.Tensor:
    like = next(model.parameters())
    x = np.ascontiguousarray(relayout(np.asarray(x), layout, "nchw"))
    return torch.from_numpy(x).to(like.device, like.dtype)


def predict(model: ResNet, x: np.ndarray, layout: str = "nchw") -> np.ndarray:
    """Eval-mode output (logits; a headless model's pooled features) of numpy images in ``layout``."""
    model.eval()
    with torch.no_grad():
        return model(_input(model, x, layout)).float().cpu().numpy()


def stage_outputs(model: ResNet, x: np.ndarray, layout: str = "nchw") -> dict[str, np.ndarray]:
    """Eval-mode output at every point of ``resnext_spec.stage_names``, float64, maps in ``layout``."""
    model.eval()
    with torch.no_grad():
        out = model.forward_stages(_input(model, x, layout))
    return {k: relayout(out[k].double().cpu().numpy(), "nchw", layout) for k in stage_names(model.config)}


def save_native(model: ResNet, path: str | os.PathLike) -> None:
    """The framework's own weights file (a torchvision-layout ``state_dict``), written atomically."""
    save_state_dict(model, path)


def load_native(path: str | os.PathLike, config: ArchConfig | None = None, form: str | None = None) -> ResNet:
    """A model from :func:`save_native`'s file. A ``state_dict`` does not record its network, so
    ``config`` says it (``resnext_formats.read`` infers it from the tensors)."""
    if config is None:
        raise CheckpointError(f"{path}: a state_dict does not say which network it holds; give its config")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return build(config, form or "c", weights={k: v.float().numpy() for k, v in state.items()})
