"""Canonical weights in and out of a torch model.

Torch is the canonical layout, so the mapping is the identity on names and
tensors; what this module adds is the strict, all-or-nothing check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

from resnext_spec import CheckpointError, atomic_write, check_weights, load_checkpoint_as, save_checkpoint
from resnext_spec.layout import canonical_shapes

from .model import ResNet, create_model


def export_weights(model: ResNet) -> dict[str, np.ndarray]:
    """The canonical dict of ``model``'s own form (float32 copies, ``num_batches_tracked`` dropped)."""
    state = model.state_dict()
    return {
        name: state[name].detach().to("cpu", torch.float32).numpy().copy()
        for name in canonical_shapes(model.config, model.form)
    }


def import_weights(model: ResNet, weights: Mapping[str, object], strict: bool = True) -> None:
    """Load canonical ``weights`` of ``model``'s form into ``model``.

    Everything is checked before anything is written: with a missing or unexpected
    name, a wrong shape or a non-float tensor, one error lists every problem and
    the model is unchanged. ``strict=False`` allows missing names (they keep
    their current values); unexpected names and wrong shapes still raise.
    """
    arrays = check_weights(weights, model.config, model.form, strict=strict)
    state = model.state_dict()
    with torch.no_grad():
        for name, value in arrays.items():
            target = state[name]
            # torch.tensor copies: from_numpy would share (and warn about) read-only arrays.
            target.copy_(torch.tensor(value, dtype=target.dtype))


def count_params(model: torch.nn.Module) -> int:
    """Parameters plus BN affine weights; running statistics are buffers and never counted."""
    return sum(p.numel() for p in model.parameters())


def save(model: ResNet, path: str | os.PathLike) -> None:
    """Write ``model`` as a canonical safetensors checkpoint (atomic)."""
    save_checkpoint(path, export_weights(model), model.config, model.form)


def load(path: str | os.PathLike, form: str | None = None) -> ResNet:
    """Build and fill a model from a canonical checkpoint, converting to ``form`` if given."""
    if str(path).endswith((".pth", ".pt")):
        raise CheckpointError(
            f"{path}: a torch state_dict does not record its network: build the model and load it "
            "(resnext_torch.load_native(path, config)), or port it to .safetensors (resnext port)"
        )
    weights, config, form = load_checkpoint_as(path, form)
    model = create_model(config=config, form=form)
    import_weights(model, weights)
    return model


def save_state_dict(model: ResNet, path: str | os.PathLike) -> None:
    """Write a plain torch ``state_dict`` (torchvision's file layout), atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` (ours or another library's) with every BatchNorm2d's statistics and affine terms
    drawn away from 0 and 1, seeded, in place; returns it.

    A freshly made BN is an identity in eval mode (mean 0, variance 1, gamma 1, beta 0), so a
    port that drops or swaps any of its tensors still matches; after this it cannot.
    """
    g = torch.Generator().manual_seed(seed)

    def draw(n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=g)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(draw(n, -0.5, 0.5))
                m.running_var.copy_(draw(n, 0.5, 1.5))
                m.weight.copy_(draw(n, 0.5, 1.5))
                m.bias.copy_(draw(n, -0.5, 0.5))
    return model
