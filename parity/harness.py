"""The parity harness: nine builds, one function, checked number by number.

For a preset and a seeded batch it makes canonical weights with every BN
tensor randomised, loads them into every (framework, form) build and compares
each against torch form (c) in fp32, with the same reference in float64 giving
the noise floor of every quantity (DESIGN.md). Bounds come from
``resnext_spec.tolerances`` and nowhere else.
"""

from __future__ import annotations

import itertools
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from resnext_spec import (
    ArchConfig,
    check_form,
    count_params,
    get_config,
    is_running_stat,
    list_presets,
    random_weights,
    to_form,
)
from resnext_spec.tolerances import EXACT, compare

from .runners import FRAMEWORKS, Runner, TorchRunner, make_runner

CHECKS = ("counts", "roundtrip", "copy", "eval", "train", "grad_eval", "grad_train", "sgd")
DEFAULT_MODELS = ("resnext29_8x64d",)
SGD = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)


@dataclass
class CheckResult:
    """One quantity of one build: its error against the reference, the floor and the bound."""

    model: str
    framework: str
    form: str
    check: str
    quantity: str
    error: float
    bound: float
    passed: bool
    tensor: str = ""
    floor: float | None = None
    l2: float | None = None
    l2_floor: float | None = None
    l2_bound: float | None = None
    detail: str = ""


@dataclass
class ParityResult:
    results: list[CheckResult] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def worst(self, check: str) -> CheckResult | None:
        """The result of ``check`` closest to (or furthest over) its bound."""
        rows = [r for r in self.results if r.check == check]
        return max(rows, key=lambda r: (r.error / r.bound) if r.bound else r.error, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "meta": self.meta, "results": [asdict(r) for r in self.results]}


def versions() -> dict[str, str]:
    """Versions of Python and of every library the harness may touch."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in (
        "numpy",
        "safetensors",
        "torch",
        "keras",
        "tensorflow-cpu",
        "tensorflow",
        "jax",
        "jaxlib",
        "flax",
        "optax",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def make_batch(config: ArchConfig, batch: int, image_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded NCHW float32 input and integer labels every build sees."""
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((batch, config.in_channels, image_size, image_size)).astype(np.float32)
    return x, rng.integers(0, config.num_classes, batch)


def _params(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in d.items() if not is_running_stat(k)}


def _stats(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in d.items() if is_running_stat(k)}


def _bitwise(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[bool, str]:
    if list(a) != list(b):
        return False, f"names differ: {sorted(set(a) ^ set(b))[:5]}"
    for k in a:
        if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes():
            return False, f"{k} differs"
    return True, ""


class Harness:
    """Runs the checks of one invocation; ``run_parity`` is the function to call."""

    def __init__(
        self,
        frameworks: Sequence[str],
        forms: Sequence[str],
        checks: Sequence[str],
        batch: int,
        image_size: int | None,
        seed: int,
        device: str,
        keras_backend: str | None,
        progress: Callable[[str], None],
    ) -> None:
        self.forms, self.checks = list(forms), list(checks)
        self.batch, self.image_size, self.seed, self.device = batch, image_size, seed, device
        self.progress = progress
        self.runners: dict[str, Runner] = {fw: make_runner(fw, device, keras_backend) for fw in frameworks}
        self.ref32 = TorchRunner(device)
        self.ref64 = TorchRunner(device, float64=True)

    def needs(self, *checks: str) -> bool:
        return any(c in self.checks for c in checks)

    def reference(self, runner: Runner, config: ArchConfig, w: dict, x, labels) -> dict[str, Any]:
        """Every quantity of torch form (c) that some check compares against."""
        model = runner.build(config, "c")
        out: dict[str, Any] = {}
        for mode, train in (("eval", False), ("train", True)):
            if self.needs(mode, f"grad_{mode}"):
                runner.load(model, w)
                out[mode] = runner.forward_backward(model, x, labels, train)
        if self.needs("sgd"):
            runner.load(model, w)
            out["sgd"] = runner.sgd_step(model, x, labels, **SGD)
        return out

    def run_model(self, name: str, config: ArchConfig, out: list[CheckResult]) -> None:
        size = self.image_size or (32 if config.stem == "cifar" else 64)
        w = random_weights(config, "c", self.seed)
        x, labels = make_batch(config, self.batch, size, self.seed)
        forms = [f for f in self.forms if config.block == "bottleneck" or f == "c"]
        ref32 = ref64 = {}
        if self.needs("eval", "train", "grad_eval", "grad_train", "sgd"):
            self.progress(f"{name}: torch (c) reference, fp32 and float64")
            ref32 = self.reference(self.ref32, config, w, x, labels)
            ref64 = self.reference(self.ref64, config, w, x, labels)
        exports: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        models: dict[tuple[str, str], Any] = {}
        for fw, form in itertools.product(self.runners, forms):
            t0 = time.perf_counter()
            self.progress(f"{name}: {fw} ({form})")
            runner = self.runners[fw]
            wf = to_form(w, config, "c", form)
            model = runner.build(config, form)
            runner.load(model, wf)
            row = dict(model=name, framework=fw, form=form)
            self.check_build(runner, model, config, form, wf, x, labels, ref32, ref64, row, out)
            if self.needs("copy"):
                runner.load(model, wf)
                exports[fw, form] = runner.export(model)
                models[fw, form] = model
            self.progress(f"{name}: {fw} ({form}) done in {time.perf_counter() - t0:.1f}s")
        if self.needs("copy"):
            self.check_copies(name, forms, exports, models, out)

    def check_build(self, runner, model, config, form, wf, x, labels, ref32, ref64, row, out) -> None:
        def to_c(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return to_form(d, config, form, "c", partial=True)

        def add(check: str, quantity: str, ys, r32, r64=None) -> None:
            c = compare(ys, r32, r64)
            out.append(
                CheckResult(
                    **row,
                    check=check,
                    quantity=quantity,
                    error=c.error,
                    bound=c.bound,
                    passed=c.passed,
                    tensor=c.tensor,
                    floor=c.floor if r64 else None,
                    l2=c.l2,
                    l2_floor=c.floor_l2 if r64 else None,
                    l2_bound=c.l2_bound,
                )
            )

        if self.needs("counts"):
            n, formula = runner.count(model), count_params(config)
            out.append(
                CheckResult(
                    **row,
                    check="counts",
                    quantity="params",
                    error=float(abs(n - formula)),
                    bound=EXACT,
                    passed=n == formula,
                    detail=f"{n:,} (formula {formula:,})",
                )
            )
        if self.needs("roundtrip"):
            first = runner.export(model)
            runner.load(model, first)
            ok, why = _bitwise(first, wf)
            ok2, why2 = _bitwise(runner.export(model), first)
            out.append(
                CheckResult(
                    **row,
                    check="roundtrip",
                    quantity="weights",
                    error=0.0 if ok and ok2 else 1.0,
                    bound=EXACT,
                    passed=ok and ok2,
                    detail=why or why2,
                )
            )
        for mode, train in (("eval", False), ("train", True)):
            if not self.needs(mode, f"grad_{mode}"):
                continue
            runner.load(model, wf)
            r = runner.forward_backward(model, x, labels, train)
            ref, ref_hi = ref32[mode], ref64[mode]
            if self.needs(mode):
                add(mode, "logits", {"logits": r.logits}, {"logits": ref.logits}, {"logits": ref_hi.logits})
                if train:
                    add(mode, "running stats", _stats(to_c(r.state)), _stats(ref.state), _stats(ref_hi.state))
            if self.needs(f"grad_{mode}"):
                add(f"grad_{mode}", "gradients", to_c(r.grads), ref.grads, ref_hi.grads)
        if self.needs("sgd"):
            runner.load(model, wf)
            state = to_c(runner.sgd_step(model, x, labels, **SGD))
            add("sgd", "parameters", _params(state), _params(ref32["sgd"]), _params(ref64["sgd"]))
            add("sgd", "running stats", _stats(state), _stats(ref32["sgd"]), _stats(ref64["sgd"]))

    def check_copies(self, name, forms, exports, models, out) -> None:
        """Export from X, import into Y, export from Y: bitwise equal to X's export, all six directions."""
        for form in forms:
            for src, dst in itertools.permutations(self.runners, 2):
                weights = exports[src, form]
                self.runners[dst].load(models[dst, form], weights)
                ok, why = _bitwise(self.runners[dst].export(models[dst, form]), weights)
                out.append(
                    CheckResult(
                        model=name,
                        framework=f"{src}->{dst}",
                        form=form,
                        check="copy",
                        quantity="weights",
                        error=0.0 if ok else 1.0,
                        bound=EXACT,
                        passed=ok,
                        detail=why,
                    )
                )


def run_parity(
    models: Sequence[str] | str = DEFAULT_MODELS,
    *,
    forms: Sequence[str] = ("a", "b", "c"),
    frameworks: Sequence[str] = FRAMEWORKS,
    checks: Sequence[str] = CHECKS,
    batch: int = 4,
    image_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    keras_backend: str | None = None,
    configs: dict[str, ArchConfig] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ParityResult:
    """Check every (framework, form) build of each model against torch form (c).

    ``models`` are preset names (or ``"all"``); ``configs`` adds named custom
    configs. ``image_size`` defaults to 32 for CIFAR stems and 64 for ImageNet
    stems. Returns a :class:`ParityResult`; nothing is printed except through
    ``progress``.
    """
    names = list_presets() if models == "all" else list(models)
    for f in forms:
        check_form(f)
    for c in checks:
        if c not in CHECKS:
            raise ValueError(f"unknown check {c!r}; choose from {list(CHECKS)}")
    for fw in frameworks:
        if fw not in FRAMEWORKS:
            raise ValueError(f"unknown framework {fw!r}; choose from {list(FRAMEWORKS)}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    all_configs = {n: get_config(n) for n in names if not (configs and n in configs)}
    all_configs.update(configs or {})
    progress = progress or (lambda msg: None)
    t0 = time.perf_counter()
    harness = Harness(frameworks, forms, checks, batch, image_size, seed, device, keras_backend, progress)
    result = ParityResult()
    model_times = {}
    for name, config in all_configs.items():
        t = time.perf_counter()
        harness.run_model(name, config, result.results)
        model_times[name] = round(time.perf_counter() - t, 2)
    result.meta = {
        "models": list(all_configs),
        "configs": {n: c.to_dict() for n, c in all_configs.items()},
        "forms": list(forms),
        "frameworks": list(frameworks),
        "checks": list(checks),
        "batch": batch,
        "image_size": image_size,
        "seed": seed,
        "device": device,
        "keras_backend": getattr(harness.runners.get("keras"), "backend", None),
        "versions": versions(),
        "argv": sys.argv,
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "model_time_s": model_times,
    }
    return result
