"""What every runner of the harness shares: the pass result, the SGD check's settings, the dtypes.

A runner takes NCHW numpy input (it transposes for NHWC frameworks itself; the
models are never changed) and returns float64 numpy results keyed by canonical
names in the model's own form: what the checks compare. This is harness code,
not model code, so it lives here and not in the framework packages. Frameworks
are imported only when their runner is made, so the harness works with any
subset installed.

Every runner computes in one ``dtype``: "float32" (the checks), "float64" (the
float64 checks, and torch's float64 reference) or "bfloat16" (the informational
reduced-precision rows: torch autocast, Keras ``mixed_bfloat16``, Flax bf16 compute).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from resnext_spec import ArchConfig, stage_names
from resnext_spec.errors import ConfigError

DTYPES = ("float32", "float64", "bfloat16")


@dataclass
class PassResult:
    """One forward + backward pass, in float64 numpy, keyed by canonical names of the model's form.

    ``grads`` holds the parameters only (running statistics have no gradient);
    ``state`` holds every canonical tensor after the pass, so a training-mode
    pass shows the running statistics it updated (the first result of
    ``sgd_steps`` may hold those statistics only, where its runner fuses the
    pass with the update). ``stages`` holds what the pass computed on the way to the
    logits, at every point of ``resnext_spec.stage_names`` but the logits (maps NCHW),
    so a build that parts from the reference shows where.
    """

    logits: np.ndarray
    loss: float
    grads: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    stages: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class SGD:
    """The optimiser of the ``sgd`` check: torch.optim.SGD's update, ``steps`` steps, momentum carried."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    steps: int = 3


class Runner(Protocol):
    framework: str
    dtype: str

    def build(self, config: ArchConfig, form: str) -> Any: ...
    def export(self, model: Any) -> dict[str, np.ndarray]: ...
    def load(self, model: Any, weights: dict[str, np.ndarray]) -> None: ...
    def count(self, model: Any) -> int: ...
    def stages(self, model: Any, x: np.ndarray) -> dict[str, np.ndarray]: ...  # eval, with "logits"
    def forward_backward(self, model: Any, x: np.ndarray, labels: np.ndarray, train: bool) -> PassResult: ...
    def sgd_steps(
        self, model: Any, x: np.ndarray, labels: np.ndarray, sgd: SGD
    ) -> tuple[PassResult, dict[str, np.ndarray]]: ...
    def full_fp32(self) -> AbstractContextManager: ...
    def compiled(self, model: Any) -> bool: ...  # whether this build's passes run compiled
    def runs_beside(self, config: ArchConfig, form: str) -> bool: ...  # may run in a worker thread

    compile_s: float  # seconds spent tracing and compiling so far


COMPILE_MODES = ("auto", "always", "never")
# "auto" compiles a build unless its blocks hold more explicit paths (forms a and b) than this.
# XLA's compile time grows faster than the graph (2 CPU cores): resnext26_8x16d form (a) (64 paths)
# traced and compiled its gradient pass in 6.6 s and its SGD step in 10.5 s, where eagerly the pass
# and three steps ran in 39 s; resnext50_32x4d form (a) (512 paths) took 62 s and 115 s to trace and
# compile its two passes, where one gradient pass ran eagerly in 27 s (docs/results/cpu_forward_times.md),
# and the harness runs each compiled function only one to three times.
MAX_COMPILED_PATHS = 128


def check_compile(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ConfigError(f"unknown compile mode {mode!r}; choose from {list(COMPILE_MODES)}")
    return mode


def explicit_paths(config: ArchConfig, form: str) -> int:
    """How many separate transformation paths a build's blocks spell out (0 for form c)."""
    if form == "c" or config.block != "bottleneck":
        return 0
    return sum(config.layers) * config.cardinality


def compiles(mode: str, config: ArchConfig, form: str) -> bool:
    """Whether a build runs compiled under ``mode`` ("auto": unless too many explicit paths)."""
    return mode == "always" or (mode == "auto" and explicit_paths(config, form) <= MAX_COMPILED_PATHS)


class UnsupportedPrecision(ConfigError):
    """A framework/backend that cannot compute a precision faithfully: refused before any work."""


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown precision {dtype!r}; choose from {list(DTYPES)}")
    return dtype


def jax_x64(needed: bool) -> AbstractContextManager:
    """JAX's 64-bit mode while float64 builds run (a no-op context otherwise, or without JAX).

    Scoped, not global: outside it JAX keeps its float32 defaults, so float32 runs
    in the same process are unchanged.
    """
    if not needed:
        return nullcontext()
    try:
        import jax
    except ImportError:
        return nullcontext()
    return jax.enable_x64(True)


def split_stages(
    out: dict[str, Any], config: ArchConfig, numpy, nhwc: bool
) -> tuple[Any, dict[str, np.ndarray]]:
    """A ``forward_stages`` result as (logits as the framework has them, the other points as
    float64 numpy in torch's NCHW layout, in the network's order): what a :class:`PassResult`
    holds. (The order is restored: JAX's pytrees and Keras on torch sort a dict's keys.)"""
    stages = {}
    for name in stage_names(config):
        if name != "logits":
            a = numpy(out[name])
            stages[name] = a.transpose(0, 3, 1, 2) if nhwc and a.ndim == 4 else a
    return out.get("logits"), stages
