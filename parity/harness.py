"""The parity harness: nine builds, one function, checked number by number.

For a preset and a seeded batch it makes canonical weights with every BN
tensor randomised, loads them into every (framework, form) build and compares
each against torch form (c) in fp32, with the same reference in float64 giving
the noise floor of every quantity (DESIGN.md). Bounds come from
``resnext_spec.tolerances`` and nowhere else.
"""

from __future__ import annotations

import gc
import itertools
import math
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
    PassResult,
    check_form,
    count_params,
    get_config,
    is_running_stat,
    list_presets,
    random_weights,
    to_form,
)
from resnext_spec.grouped import check_conv_impl
from resnext_spec.tolerances import EXACT, FLOOR_SAMPLES, Comparison, compare, perturb

from . import trajectory
from .runners import FRAMEWORKS, Runner, TorchRunner, make_runner

CHECKS = ("counts", "roundtrip", "copy", "eval", "train", "grad_eval", "grad_train", "sgd")
# Asked for by name (--checks trajectory), not run by default: K training steps in every build.
OPTIONAL_CHECKS = ("trajectory",)
# Shown, never failed: torch (c) eval logits with TF32 matmuls/convs, so people see what TF32 costs.
INFO_CHECKS = ("tf32",)
# The default run: a real ResNeXt (C=8 paths) whose nine builds finish in under two
# minutes on 2 CPU cores (measured 115 s; resnext29_8x64d takes 220 s).
DEFAULT_MODELS = ("resnext26_8x16d",)
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
    l2_fp64: float | None = None  # L2 error against the float64 reference itself
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
        return max(
            rows,
            key=lambda r: (r.error / r.bound) if r.bound and math.isfinite(r.bound) else r.error,
            default=None,
        )

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


def _float32(v: PassResult | dict[str, np.ndarray]) -> PassResult | dict[str, np.ndarray]:
    """An fp32 computation's float64 results, stored as float32: exact, and half the memory."""
    if isinstance(v, PassResult):
        return PassResult(v.logits.astype(np.float32), v.loss, _float32(v.grads), _float32(v.state))
    return {k: a.astype(np.float32) for k, a in v.items()}


def _to_c(measured: dict[str, Any], config: ArchConfig, form: str) -> dict[str, Any]:
    """A build's results renamed to form (c), so they line up with the reference tensor by tensor."""

    def conv(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return to_form(d, config, form, "c", partial=True)

    out: dict[str, Any] = {}
    for mode in ("eval", "train"):
        if mode in measured:
            r = measured[mode]
            out[mode] = PassResult(r.logits, r.loss, conv(r.grads), conv(r.state))
    if "sgd" in measured:
        out["sgd"] = conv(measured["sgd"])
    return out


def _judged(row: dict[str, str], check: str, quantity: str, c: Comparison, detail: str = "") -> CheckResult:
    """A result row from a noise-floor comparison of one quantity of one build."""
    return CheckResult(
        **row,
        check=check,
        quantity=quantity,
        error=c.error,
        bound=c.bound,
        passed=c.passed,
        tensor=c.tensor,
        floor=c.floor,
        l2=c.l2,
        l2_floor=c.floor_l2,
        l2_bound=c.l2_bound,
        l2_fp64=c.l2_fp64,
        detail=detail,
    )


# (check, quantity) -> the tensors it compares, picked from a build's or a reference's results.
QUANTITIES: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, np.ndarray]]] = {
    ("eval", "logits"): lambda r: {"logits": r["eval"].logits},
    ("grad_eval", "gradients"): lambda r: r["eval"].grads,
    ("train", "logits"): lambda r: {"logits": r["train"].logits},
    ("train", "running stats"): lambda r: _stats(r["train"].state),
    ("grad_train", "gradients"): lambda r: r["train"].grads,
    ("sgd", "parameters"): lambda r: _params(r["sgd"]),
    ("sgd", "running stats"): lambda r: _stats(r["sgd"]),
}


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
        flax_jit: str,
        conv_impl: str,
        tf32: bool,
        progress: Callable[[str], None],
    ) -> None:
        self.forms, self.checks = list(forms), list(checks)
        self.batch, self.image_size, self.seed, self.device = batch, image_size, seed, device
        self.progress = progress
        self.runners: dict[str, Runner] = {
            fw: make_runner(fw, device, keras_backend, flax_jit, conv_impl) for fw in frameworks
        }
        self.ref32 = TorchRunner(device)
        self.ref64 = TorchRunner(device, float64=True)
        self.ref_tf32 = TorchRunner(device, tf32=True) if tf32 else None
        self.conv_impl = conv_impl
        self.trajectories: dict[str, dict[str, list[float]]] = {}  # model -> build -> loss per step

    def needs(self, *checks: str) -> bool:
        return any(c in self.checks for c in checks)

    def measure(self, runner: Runner, model, w: dict, x, labels) -> dict[str, Any]:
        """Every pass some check needs, each from freshly loaded weights.

        The SGD step's own training-mode pass doubles as the "train" measurement,
        so a build runs at most two passes. The eval check alone takes a forward pass
        only: with no gradients asked for, the float64 reference and deep builds cost
        a fraction of the time (the CI zoo runs every preset that way).
        """
        out: dict[str, Any] = {}
        if self.needs("grad_eval"):
            runner.load(model, w)
            out["eval"] = runner.forward_backward(model, x, labels, False)
        elif self.needs("eval"):
            runner.load(model, w)
            out["eval"] = PassResult(runner.logits(model, x), math.nan, {}, {})
        if self.needs("sgd"):
            runner.load(model, w)
            out["train"], out["sgd"] = runner.sgd_step(model, x, labels, **SGD)
        elif self.needs("train", "grad_train"):
            runner.load(model, w)
            out["train"] = runner.forward_backward(model, x, labels, True)
        # Kept as float32 unless computed in float64: resnext50_32x4d's run peaked at 12 GB before.
        return out if runner is self.ref64 else {k: _float32(v) for k, v in out.items()}

    def references(self, config: ArchConfig, w: dict, x, labels) -> tuple[dict, dict, list[dict]]:
        """torch (c) in fp32 and float64, and fp32 runs with weights and input moved by rounding size.

        The perturbed runs are correct fp32 computations too; how far they land from
        float64 is the floor each build is judged against (resnext_spec.tolerances).
        """
        model32 = self.ref32.build(config, "c")  # measure() reloads weights before every pass
        ref32 = self.measure(self.ref32, model32, w, x, labels)
        ref64 = self.measure(self.ref64, self.ref64.build(config, "c"), w, x, labels)
        rng = np.random.default_rng(self.seed + 2)
        samples = []
        for _ in range(FLOOR_SAMPLES):
            wp = {k: perturb(v, rng) for k, v in w.items()}
            samples.append(self.measure(self.ref32, model32, wp, perturb(x, rng), labels))
        return ref32, ref64, samples

    def run_model(self, name: str, config: ArchConfig, out: list[CheckResult]) -> None:
        size = self.image_size or (32 if config.stem == "cifar" else 64)
        w = random_weights(config, "c", self.seed)
        x, labels = make_batch(config, self.batch, size, self.seed)
        forms = [f for f in self.forms if config.block == "bottleneck" or f == "c"]
        refs = None
        if any(c in self.checks for c, _ in QUANTITIES):
            self.progress(f"{name}: torch (c) reference: fp32, float64, {FLOOR_SAMPLES} perturbed fp32")
            refs = self.references(config, w, x, labels)
            if self.ref_tf32 is not None and self.needs("eval"):
                self.check_tf32(name, config, w, x, labels, refs, out)
        if self.needs("trajectory"):
            self.check_trajectory(name, config, w, size, forms, out)
            if not self.needs(*CHECKS):
                return
        # Form by form, so only one form's three builds are alive at once (for the copies).
        for form in forms:
            wf = to_form(w, config, "c", form)
            exports: dict[str, dict[str, np.ndarray]] = {}
            models: dict[str, Any] = {}
            for fw, runner in self.runners.items():
                t0 = time.perf_counter()
                self.progress(f"{name}: {fw} ({form})")
                model = runner.build(config, form)
                runner.load(model, wf)
                row = dict(model=name, framework=fw, form=form)
                self.check_weights_io(runner, model, config, wf, row, out)
                if refs is not None:
                    mine = _to_c(self.measure(runner, model, wf, x, labels), config, form)
                    self.check_numbers(mine, refs, row, out)
                    del mine
                if self.needs("copy"):
                    runner.load(model, wf)
                    exports[fw] = runner.export(model)
                    models[fw] = model
                del model
                self.progress(f"{name}: {fw} ({form}) done in {time.perf_counter() - t0:.1f}s")
            if self.needs("copy"):
                self.check_copies(name, form, exports, models, out)
            del exports, models
            gc.collect()

    def check_trajectory(
        self, name: str, config: ArchConfig, w: dict, size: int, forms: list[str], out
    ) -> None:
        """Every build trains STEPS steps (parity.trajectory); loss per step and final state judged."""
        self.progress(f"{name}: trajectory: torch (c) fp32, float64, {FLOOR_SAMPLES} perturbed fp32")
        data, ref32, ref64, samples = trajectory.references(config, w, self.batch, size, self.seed)
        curves = {"torch (c) float64": ref64["loss"].tolist()}
        for form in forms:
            wf = to_form(w, config, "c", form)
            for fw in self.runners:
                self.progress(f"{name}: trajectory: {fw} ({form})")
                mine = trajectory.run_build(fw, config, form, wf, data, self.conv_impl)
                curves[f"{fw} ({form})"] = mine["loss"].tolist()
                for quantity, c in trajectory.check_build(mine, ref32, ref64, samples).items():
                    out.append(
                        _judged(
                            dict(model=name, framework=fw, form=form),
                            "trajectory",
                            quantity,
                            c,
                            f"{trajectory.STEPS} SGD steps, lr /10 after {trajectory.STEPS // 2}",
                        )
                    )
        self.trajectories[name] = curves

    def check_weights_io(self, runner, model, config, wf, row, out) -> None:
        """Parameter count against the spec formula; export -> import -> export bitwise."""
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

    def check_numbers(self, mine: dict, refs: tuple[dict, dict, list[dict]], row, out) -> None:
        """Every quantity of one build against torch (c) fp32, bounded by the measured floor."""
        ref32, ref64, samples = refs
        for (check, quantity), pick in QUANTITIES.items():
            if not self.needs(check):
                continue
            c = compare(pick(mine), pick(ref32), pick(ref64), floor_samples=[pick(s) for s in samples])
            out.append(_judged(row, check, quantity, c))

    def check_tf32(self, name, config, w, x, labels, refs, out) -> None:
        """torch (c) eval logits with TF32 allowed, against the full-fp32 reference: shown, not judged."""
        model = self.ref_tf32.build(config, "c")
        self.ref_tf32.load(model, w)
        logits = self.ref_tf32.forward_backward(model, x, labels, False).logits
        c = compare(
            {"logits": logits}, {"logits": refs[0]["eval"].logits}, {"logits": refs[1]["eval"].logits}
        )
        out.append(
            CheckResult(
                model=name,
                framework="torch",
                form="c",
                check="tf32",
                quantity="logits",
                error=c.error,
                bound=math.inf,
                passed=True,
                floor=c.floor,
                detail="TF32 allowed; informational, fp32 pinned for every pass/fail",
            )
        )

    def check_copies(self, name, form, exports, models, out) -> None:
        """Export from X, import into Y, export from Y: bitwise equal to X's export, all six directions."""
        for src, dst in itertools.permutations(self.runners, 2):
            weights = exports[src]
            self.runners[dst].load(models[dst], weights)
            ok, why = _bitwise(self.runners[dst].export(models[dst]), weights)
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
    flax_jit: str = "auto",
    conv_impl: str = "auto",
    tf32: bool | None = None,
    configs: dict[str, ArchConfig] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ParityResult:
    """Check every (framework, form) build of each model against torch form (c).

    ``models`` are preset names (or ``"all"``); ``configs`` adds named custom
    configs. ``image_size`` defaults to 32 for CIFAR stems and 64 for ImageNet
    stems. ``flax_jit`` ("auto": form (c) only, "always", "never") says which
    Flax builds run jit-compiled. ``conv_impl`` says how Keras and Flax compute
    grouped convs ("auto": the fast lowering, "native", "patches"; see
    ``resnext_spec.grouped``). ``tf32`` (default: on GPU) adds the
    informational TF32 row. Returns a :class:`ParityResult`; nothing is printed except through
    ``progress``.
    """
    if isinstance(models, str):
        models = models if models == "all" else [models]
    names = list_presets() if models == "all" else list(models)
    check_conv_impl(conv_impl)
    for f in forms:
        check_form(f)
    for c in checks:
        if c not in CHECKS + OPTIONAL_CHECKS:
            raise ValueError(f"unknown check {c!r}; choose from {list(CHECKS + OPTIONAL_CHECKS)}")
    for fw in frameworks:
        if fw not in FRAMEWORKS:
            raise ValueError(f"unknown framework {fw!r}; choose from {list(FRAMEWORKS)}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if "trajectory" in checks and device != "cpu":
        raise ValueError("the trajectory check runs on CPU only for now")
    all_configs = {n: get_config(n) for n in names if not (configs and n in configs)}
    all_configs.update(configs or {})
    progress = progress or (lambda msg: None)
    t0 = time.perf_counter()
    tf32 = device == "gpu" if tf32 is None else tf32
    harness = Harness(
        frameworks,
        forms,
        checks,
        batch,
        image_size,
        seed,
        device,
        keras_backend,
        flax_jit,
        conv_impl,
        tf32,
        progress,
    )
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
        "flax_jit": flax_jit,
        "conv_impl": conv_impl,
        "trajectories": harness.trajectories,
        "tf32_row": tf32,
        "versions": versions(),
        "argv": sys.argv,
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "model_time_s": model_times,
    }
    return result
