"""The trajectory check: K training steps in every build, compared with torch's, step by step.

One pass and one SGD step from zero momentum (the ``sgd`` check) cannot see an
optimizer that carries momentum or weight decay differently, or a learning-rate
change that lands late. Here every build trains ``STEPS`` steps from the same
weights on the same batches, with the learning rate dropping /10 half-way, each
with its own framework's optimizer as ``resnext-train`` runs it; the loss of every
step and, at the end, every parameter and running statistic are compared with torch
form (c), under the noise-floor rule: the floor is how far fp32 torch runs land from
a float64 torch run, from the plain weights and from weights and inputs moved at
fp32 rounding size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from resnext_spec import ArchConfig, is_running_stat, to_form
from resnext_spec.tolerances import FLOOR_SAMPLES, compare, perturb
from resnext_spec.training import Recipe

from .torch_runner import TorchRunner

STEPS = 6
# The recipe of the harness's sgd check; the rate drops /10 after half the steps.
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4


def learning_rates(steps: int = STEPS) -> list[float]:
    return [LR if k < steps // 2 else LR / 10 for k in range(steps)]


def batches(config: ArchConfig, batch: int, size: int, seed: int, steps: int = STEPS):
    """The seeded NHWC batches every build trains on, one per step."""
    rng = np.random.default_rng(seed + 7)
    return [
        (
            rng.standard_normal((batch, size, size, config.in_channels)).astype(np.float32),
            rng.integers(0, config.num_classes, batch),
        )
        for _ in range(steps)
    ]


def run_build(
    framework: str,
    config: ArchConfig,
    form: str,
    weights: dict[str, np.ndarray],
    data: list,
    conv_impl: str = "auto",
    float64: bool = False,
) -> dict[str, np.ndarray]:
    """Train on ``data``; returns {"loss": per-step losses} and the final state, in form (c), float64."""
    recipe = Recipe(batch_size=len(data[0][1]), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    engine = _engine(framework, config, form, weights, recipe, conv_impl, float64)
    losses = [
        engine.train_step(x, y, lr)[0] for (x, y), lr in zip(data, learning_rates(len(data)), strict=True)
    ]
    if framework == "torch":
        state = TorchRunner().state(engine.model)  # float64 as computed, where the model is float64
    else:
        state = {k: v.astype(np.float64) for k, v in engine.weights().items()}
    if form != "c":
        state = to_form(state, config, form, "c")
    return {"loss": np.asarray(losses, np.float64), **state}


def _engine(framework, config, form, weights, recipe, conv_impl, float64):
    """The framework's own training engine, as ``resnext-train`` runs it (imported only when asked for)."""
    if framework == "torch":
        from resnext_torch import TorchEngine

        return TorchEngine(config, form, weights, recipe, float64=float64)
    if framework == "keras":
        from resnext_keras import KerasEngine

        return KerasEngine(config, form, weights, recipe, conv_impl)
    from resnext_flax import FlaxEngine

    return FlaxEngine(config, form, weights, recipe, conv_impl)


def references(
    config: ArchConfig, w: dict[str, np.ndarray], batch: int, size: int, seed: int, steps: int = STEPS
) -> tuple[list, dict, dict, list[dict]]:
    """(data, torch fp32, torch float64, perturbed fp32 torch runs) from canonical (c) weights ``w``."""
    data = batches(config, batch, size, seed, steps)
    ref32 = run_build("torch", config, "c", w, data)
    ref64 = run_build("torch", config, "c", w, data, float64=True)
    rng = np.random.default_rng(seed + 3)
    samples = []
    for _ in range(FLOOR_SAMPLES):
        moved = {k: perturb(v, rng) for k, v in w.items()}
        samples.append(run_build("torch", config, "c", moved, [(perturb(x, rng), y) for x, y in data]))
    return data, ref32, ref64, samples


def check_build(mine: dict, ref32: dict, ref64: dict, samples: list[dict]) -> dict[str, object]:
    """The per-step loss and the final parameters and running statistics, each against its floor."""
    pick: dict[str, Callable[[dict], dict]] = {
        "loss per step": lambda r: {"loss": r["loss"]},
        "parameters": lambda r: {k: v for k, v in r.items() if k != "loss" and not is_running_stat(k)},
        "running stats": lambda r: {k: v for k, v in r.items() if is_running_stat(k)},
    }
    return {
        q: compare(f(mine), f(ref32), f(ref64), floor_samples=[f(s) for s in samples])
        for q, f in pick.items()
    }
