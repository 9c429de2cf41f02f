"""Seeded canonical weights drawn in numpy, so every framework starts from the same numbers.

Drawn in form (c) and converted by ``forms.to_form``, so this module sits above both.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .config import ArchConfig, check_form_for
from .forms import to_form
from .layout import layers, plan


def _seeded_weights(
    config: ArchConfig,
    form: str,
    seed: int,
    bn: Callable[[np.random.Generator, str, int], dict],
    other: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray],
) -> dict[str, np.ndarray]:
    """Convs He-normal (fan-out) with any bias U(+-1/sqrt(fan_in)), 1-D convs and the linear
    layer U(+-1/sqrt(fan_in)), BN tensors from ``bn``, a registered part's own tensors from ``other``.

    Drawn in form (c), layer by layer in canonical order, and converted, so every form
    gets the same function from the same seed.
    """
    check_form_for(config, form)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for layer in layers(config, "c"):
        n = layer.name
        if layer.kind == "conv":
            o, i, kh, kw = layer.shape
            std = np.sqrt(2.0 / (o * kh * kw))
            out[f"{n}.weight"] = (rng.standard_normal(layer.shape, dtype=np.float32) * std).astype(np.float32)
            if layer.bias:  # nn.Conv2d's own draw, U(+-1/sqrt(fan_in)): never zero, so never hides
                bound = 1.0 / np.sqrt(i * kh * kw)
                out[f"{n}.bias"] = rng.uniform(-bound, bound, o).astype(np.float32)
        elif layer.kind == "conv1d":  # ECA's: nn.Conv1d's own draw, U(+-1/sqrt(fan_in)), no bias
            o, i, k = layer.shape
            bound = 1.0 / np.sqrt(i * k)
            out[f"{n}.weight"] = rng.uniform(-bound, bound, layer.shape).astype(np.float32)
        elif layer.kind in ("bn", "gn"):  # a GroupNorm takes BN's affine pair, having no statistics
            drawn = bn(rng, n, layer.shape[0])
            out |= {f"{n}.{k}": drawn[k].astype(np.float32) for k in layer.tensors}
        elif layer.kind == "linear":
            o, i = layer.shape
            bound = 1.0 / np.sqrt(i)
            out[f"{n}.weight"] = rng.uniform(-bound, bound, (o, i)).astype(np.float32)
            out[f"{n}.bias"] = rng.uniform(-bound, bound, o).astype(np.float32)
        else:  # a registered part's own tensors
            out |= {f"{n}.{t}": other(rng, layer.tensor_shape(t)) for t in layer.tensors}
    return to_form(out, config, "c", form) if form != "c" else out


def random_weights(config: ArchConfig, form: str = "c", seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded canonical weights in which no BN is an identity.

    Random init makes BN gamma=1, beta=0, mean=0, var=1, which hides swapped or
    mis-laid-out BN tensors; here every BN tensor is drawn at random (variance
    kept positive). Convs use He-normal (fan-out), the linear layer U(+-1/sqrt(in)).
    """

    def bn(rng: np.random.Generator, name: str, c: int) -> dict:
        return {
            "weight": rng.uniform(0.5, 1.5, c),
            "bias": rng.normal(0.0, 0.2, c),
            "running_mean": rng.normal(0.0, 0.2, c),
            "running_var": rng.uniform(0.5, 1.5, c),
        }

    def other(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)

    return _seeded_weights(config, form, seed, bn, other)


def init_weights(
    config: ArchConfig, form: str = "c", seed: int = 0, zero_init_residual: bool = False
) -> dict[str, np.ndarray]:
    """torchvision's initialisation, drawn once in numpy so that every framework starts equal.

    Convs He-normal with fan-out (``kaiming_normal_(mode="fan_out")``), BN gamma=1,
    beta=0 and fresh statistics, the linear layer as ``nn.Linear`` draws it
    (U(+-1/sqrt(in)) for weight and bias). ``zero_init_residual`` zeroes the gamma of
    each block's last BN, so every block starts as its shortcut (Goyal et al. 2017).
    """
    last_bn = {f"{b.name}.{'bn3' if b.block == 'bottleneck' else 'bn2'}" for b in plan(config).blocks}

    def bn(rng: np.random.Generator, name: str, c: int) -> dict:
        gamma = 0.0 if zero_init_residual and name in last_bn else 1.0
        return {
            "weight": np.full(c, gamma),
            "bias": np.zeros(c),
            "running_mean": np.zeros(c),
            "running_var": np.ones(c),
        }

    def other(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        # A registered part's own tensors start at 1: a scale that leaves the signal as it is.
        return np.ones(shape, np.float32)

    return _seeded_weights(config, form, seed, bn, other)
