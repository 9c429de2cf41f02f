"""The parity harness: nine builds, one function, checked number by number.

For a preset and a seeded batch it makes canonical weights with every BN
tensor randomised, loads them into every (framework, form) build and compares
each against torch form (c) at the same precision, with the noise floor of
every quantity measured in the same run (the noise-floor rule, resnext_spec/tolerances.py).
Bounds come from ``resnext_spec.tolerances`` and nowhere else.

Precisions: "float32" (the default) judges fp32 builds, with a float64 torch run
as the truth the floor is measured against. "float64" runs all nine builds in
float64 and measures the floor with float64-rounding perturbations: bounds near
1e-12 instead of fp32's up-to-1e-1 where fp32 is chaotic, so a fault of 1e-6
that fp32 must let pass is caught. "bfloat16" shows, never fails, what each
framework's reduced precision costs against the fp32 reference.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
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
from resnext_spec.errors import ConfigError
from resnext_spec.frameworks import FRAMEWORKS, check_framework
from resnext_spec.grouped import check_conv_impl
from resnext_spec.layout import check_image_size
from resnext_spec.machine import RssSampler, cpu_class, peak_rss_mb, release_memory
from resnext_spec.tolerances import (
    EXACT,
    FLOOR_SAMPLES,
    TOL,
    TOL64,
    Comparison,
    Floor,
    compare,
    first_over,
    noise_floor,
    perturb,
    stage_errors,
)
from resnext_spec.versions import versions

from . import trajectory
from .runner_base import check_compile, jax_x64
from .runners import SGD, PassResult, Runner, TorchRunner, make_runner

CHECKS = ("counts", "roundtrip", "copy", "eval", "train", "grad_eval", "grad_train", "sgd")
# Asked for by name (--checks trajectory), not run by default: K training steps in every build.
OPTIONAL_CHECKS = ("trajectory",)
# Shown, never failed: torch (c) eval logits with TF32 matmuls/convs, so people see what TF32 costs.
INFO_CHECKS = ("tf32", "bf16")
# Added only when most builds fail alike and agree with each other: the reference is the odd one out.
REFERENCE_CHECK = "reference"
# The default run: a real ResNeXt (C=8 paths) whose nine builds finish in about a minute
# on 2 CPU cores (measured 67-75 s on an AVX-512 machine, 92-94 s in float64; docs/parity.md).
DEFAULT_MODELS = ("resnext26_8x16d",)
PRECISIONS = ("float32", "float64", "bfloat16")
# Informational rows of --precision bfloat16: each build against the fp32 reference.
BF16_QUANTITIES = (("eval", "logits"), ("train", "logits"), ("grad_train", "gradients"))


@dataclass(frozen=True)
class Settings:
    """Everything one run is asked for, checked once, in one place."""

    frameworks: tuple[str, ...] = FRAMEWORKS
    forms: tuple[str, ...] = ("a", "b", "c")
    checks: tuple[str, ...] = CHECKS
    batch: int = 4
    image_size: int | None = None  # None: 32 for CIFAR stems, 64 for ImageNet stems
    seed: int = 0
    device: str = "cpu"
    precision: str = "float32"
    keras_backend: str | None = None
    compile: str = "auto"
    conv_impl: str = "auto"
    tf32: bool = False
    sgd: SGD = SGD()

    def __post_init__(self) -> None:
        check_conv_impl(self.conv_impl)
        check_compile(self.compile)
        for f in self.forms:
            check_form(f)
        for c in self.checks:
            if c not in CHECKS + OPTIONAL_CHECKS:
                raise ConfigError(f"unknown check {c!r}; choose from {list(CHECKS + OPTIONAL_CHECKS)}")
        for fw in self.frameworks:
            check_framework(fw)
        if self.device not in ("cpu", "gpu"):
            raise ConfigError(f"device must be 'cpu' or 'gpu', got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose from {list(PRECISIONS)}")
        if "trajectory" in self.checks and (self.device != "cpu" or self.precision != "float32"):
            raise ConfigError("the trajectory check runs on CPU in float32 only for now")
        if self.batch < 2:
            raise ConfigError(
                f"batch must be >= 2 (train-mode BN needs more than one value), got {self.batch}"
            )

    def needs(self, *checks: str) -> bool:
        return any(c in self.checks for c in checks)


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
    chaotic: bool = False  # the reference has no correct digit here: shown, not judged
    stages: dict[str, float] | None = None  # eval/stages: each stage point's error, in network order


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
        """The judged result of ``check`` nearest (or furthest over) its bound; a chaotic one if all are."""
        rows = [r for r in self.results if r.check == check]
        rows = [r for r in rows if not r.chaotic] or rows
        return max(
            rows,
            key=lambda r: (r.error / r.bound) if r.bound and math.isfinite(r.bound) else r.error,
            default=None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "meta": self.meta, "results": [asdict(r) for r in self.results]}


def make_batch(config: ArchConfig, batch: int, image_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded NCHW float32 input and integer labels every build sees (exact in float64 too)."""
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
        return PassResult(
            v.logits.astype(np.float32), v.loss, _float32(v.grads), _float32(v.state), _float32(v.stages)
        )
    return {k: a.astype(np.float32) for k, a in v.items()}


def _measured(pick: Callable, results: dict) -> bool:
    """Whether the passes ``results`` holds include the quantity ``pick`` takes."""
    try:
        pick(results)
    except KeyError:
        return False
    return True


def _to_c(measured: dict[str, Any], config: ArchConfig, form: str) -> dict[str, Any]:
    """A build's results renamed to form (c), so they line up with the reference tensor by tensor."""

    def conv(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return to_form(d, config, form, "c", partial=True)

    out: dict[str, Any] = {}
    for mode in ("eval", "train"):
        if mode in measured:
            r = measured[mode]
            out[mode] = PassResult(r.logits, r.loss, conv(r.grads), conv(r.state), r.stages)
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
        detail=detail
        or (
            f"chaotic: the reference is {c.floor:.0e} from the truth, no digit to judge "
            "(--precision float64 judges it)"
            if c.chaotic
            else ""
        ),
        chaotic=c.chaotic,
    )


@dataclass
class Build:
    """What one build leaves for the checks that compare it: its weight-check rows, its measured
    passes renamed to form (c), and (for the copies) its export and the model itself."""

    row: dict[str, str]
    rows: list[CheckResult]
    measured: dict[str, Any] | None
    export: dict[str, np.ndarray] | None
    model: Any


# (check, quantity) -> the tensors it compares, picked from a build's or a reference's results.
QUANTITIES: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, np.ndarray]]] = {
    ("eval", "logits"): lambda r: {"logits": r["eval"].logits},
    ("eval", "stages"): lambda r: r["eval"].stages,
    ("grad_eval", "gradients"): lambda r: r["eval"].grads,
    ("train", "logits"): lambda r: {"logits": r["train"].logits},
    ("train", "running stats"): lambda r: _stats(r["train"].state),
    ("grad_train", "gradients"): lambda r: r["train"].grads,
    ("sgd", "parameters"): lambda r: _params(r["sgd"]),
    ("sgd", "running stats"): lambda r: _stats(r["sgd"]),
}


class Harness:
    """Runs the checks of one invocation; ``run_parity`` is the function to call."""

    def __init__(self, settings: Settings, progress: Callable[[str], None]) -> None:
        st = self.settings = settings
        self.progress = progress
        # The builds under test compute in the run's precision; bfloat16 rows come from their own runners.
        self.dtype = "float64" if st.precision == "float64" else "float32"
        self.runners: dict[str, Runner] = {
            fw: make_runner(fw, st.device, st.keras_backend, st.conv_impl, self.dtype, st.compile)
            for fw in st.frameworks
        }
        self.bf16: dict[str, Runner] = {}
        if st.precision == "bfloat16":
            self.bf16 = {
                fw: make_runner(fw, st.device, st.keras_backend, st.conv_impl, "bfloat16", st.compile)
                for fw in st.frameworks
            }
        # The reference at the run's precision, and the float64 truth its floor is measured against
        # (in a float64 run the reference is its own truth: the floor comes from perturbed runs).
        self.ref = TorchRunner(st.device, self.dtype)
        self.truth = self.ref if self.dtype == "float64" else TorchRunner(st.device, "float64")
        self.ref_tf32 = TorchRunner(st.device, tf32=True) if st.tf32 and self.dtype == "float32" else None
        self.tol = TOL64 if self.dtype == "float64" else TOL
        self.trajectories: dict[str, dict[str, list[float]]] = {}  # model -> build -> loss per step
        self.floors: dict[tuple[int, Callable], Floor] = {}  # (references, quantity) -> its noise floor
        # "model: framework (form)" -> how it ran: compiled or not, compile and run seconds.
        self.timings: dict[str, dict[str, Any]] = {}
        self.rss: RssSampler | None = None  # the run's memory sampler (run_parity sets it)

    def needs(self, *checks: str) -> bool:
        return self.settings.needs(*checks)

    def measure(self, runner: Runner, model, w: dict, x, labels, checks: Sequence[str] | None = None) -> dict:
        """Every pass some check needs, each from freshly loaded weights.

        The first SGD step's own training-mode pass doubles as the "train"
        measurement, so a build runs one gradient pass plus the SGD steps. The eval
        check alone takes a forward pass only: with no gradients asked for, the
        float64 reference and deep builds cost a fraction of the time (the CI zoo
        runs every preset that way).
        """
        needs = self.needs if checks is None else (lambda *cs: any(c in checks for c in cs))
        out: dict[str, Any] = {}
        if needs("grad_eval"):
            runner.load(model, w)
            out["eval"] = runner.forward_backward(model, x, labels, False)
        elif needs("eval"):
            runner.load(model, w)
            stages = runner.stages(model, x)
            out["eval"] = PassResult(stages.pop("logits"), math.nan, {}, {}, stages)
        if needs("sgd"):
            runner.load(model, w)
            out["train"], out["sgd"] = runner.sgd_steps(model, x, labels, self.settings.sgd)
        elif needs("train", "grad_train"):
            runner.load(model, w)
            out["train"] = runner.forward_backward(model, x, labels, True)
        # An fp32 computation's results kept as float32 (exact): resnext50_32x4d's run peaked at 12 GB before.
        return out if runner.dtype == "float64" else {k: _float32(v) for k, v in out.items()}

    def references(
        self, config: ArchConfig, w: dict, x, labels, checks=None
    ) -> tuple[dict, dict, list[dict]]:
        """torch (c) at the run's precision, its float64 truth, and (empty) the perturbed runs.

        The perturbed runs (weights and input moved by a few units of the precision's rounding) are
        correct computations too; how far they land from the truth is the floor each build is
        judged against (resnext_spec.tolerances). Their floors are measured here, into
        ``self.floors``, and the runs dropped.
        """
        model = self.ref.build(config, "c")  # measure() reloads weights before every pass
        ref = self.measure(self.ref, model, w, x, labels, checks)
        truth = (
            ref
            if self.truth is self.ref
            else self.measure(self.truth, self.truth.build(config, "c"), w, x, labels, checks)
        )
        rng = np.random.default_rng(self.settings.seed + 2)
        picks = [pick for pick in QUANTITIES.values() if _measured(pick, ref)]
        # Each quantity's floor, folded in sample by sample: a perturbed run is dropped as soon as it
        # is measured (two of them held every gradient of the network), and the floor is the same
        # maximum noise_floor takes over all of them at once.
        floors = {pick: noise_floor(pick(ref), pick(truth)) for pick in picks}
        for _ in range(FLOOR_SAMPLES):
            wp = {k: perturb(v, rng, self.dtype) for k, v in w.items()}
            sample = self.measure(self.ref, model, wp, perturb(x, rng, self.dtype), labels, checks)
            for pick in picks:
                f = noise_floor(pick(sample), pick(truth))  # the sample's own distance from the truth
                floors[pick] = Floor(max(floors[pick].worst, f.worst), max(floors[pick].l2, f.l2))
            del sample, wp
        self.floors.update({(id(ref), pick): floor for pick, floor in floors.items()})
        return ref, truth, []

    def run_model(self, name: str, config: ArchConfig, out: list[CheckResult]) -> None:
        st = self.settings
        self.floors.clear()  # keyed by the references' id, which a later model's may reuse
        size = st.image_size or check_image_size(config)
        w = random_weights(config, "c", st.seed)
        x, labels = make_batch(config, st.batch, size, st.seed)
        forms = [f for f in st.forms if config.block == "bottleneck" or f == "c"]
        if st.precision == "bfloat16":
            self.check_bf16(name, config, w, x, labels, forms, out)
            return
        refs = None
        if self.needs("trajectory"):
            if any(c in st.checks for c, _ in QUANTITIES):
                refs = self.reference_phase(name, config, w, x, labels, out)
            self.check_trajectory(name, config, w, size, forms, out)
            if not self.needs(*CHECKS):
                return
        kept: dict[tuple[str, str], dict] = {}  # (framework, form) -> results in form (c), if one failed
        # Form by form, so at most two forms' builds are alive at once (for the copies). A build its
        # runner lets run beside the others (compiled Flax: XLA compiles and runs without the GIL) goes
        # to a worker thread, one form ahead: the first during the references, each next one while
        # this thread runs the form before it.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parity-beside") as beside:
            pending = {f: self.start_form(beside, name, config, w, f, x, labels) for f in forms[:1]}
            if refs is None and any(c in st.checks for c, _ in QUANTITIES):
                refs = self.reference_phase(name, config, w, x, labels, out)
            first = len(out)
            for i, form in enumerate(forms):
                for ahead in forms[i + 1 : i + 2]:
                    pending[ahead] = self.start_form(beside, name, config, w, ahead, x, labels)
                wf, jobs = pending.pop(form)
                builds = {
                    fw: self.build_one(name, fw, config, form, wf, x, labels)
                    for fw in self.runners
                    if fw not in jobs
                }
                builds.update({fw: job.result() for fw, job in jobs.items()})
                for fw in self.runners:  # the rows in framework order, whichever thread ran the build
                    b = builds[fw]
                    out.extend(b.rows)
                    if refs is not None:
                        if not self.check_numbers(b.measured, refs, b.row, out):
                            kept[(fw, form)] = b.measured
                        b.measured = None
                if self.needs("copy"):
                    self.check_copies(
                        name, form, {fw: b.export for fw, b in builds.items()},
                        {fw: b.model for fw, b in builds.items()}, out,
                    )  # fmt: skip
                del builds
                release_memory()
        if kept and refs is not None:
            self.check_reference(name, kept, refs, out[first:], out)

    def reference_phase(self, name: str, config: ArchConfig, w: dict, x, labels, out) -> tuple:
        """torch (c)'s references (and the TF32 row, when asked for)."""
        what = "float64" if self.dtype == "float64" else "fp32, float64"
        self.progress(f"{name}: torch (c) reference: {what}, {FLOOR_SAMPLES} perturbed {self.dtype}")
        refs = self.references(config, w, x, labels)
        release_memory()  # the reference passes' garbage: models, autograd graphs, optimizer state
        if self.ref_tf32 is not None and self.needs("eval"):
            self.check_tf32(name, config, w, x, labels, refs, out)
        return refs

    def start_form(
        self, pool: ThreadPoolExecutor, name, config, w, form, x, labels
    ) -> tuple[dict[str, np.ndarray], dict[str, Future]]:
        """``form``'s weights, and its builds that their runners let run beside the others, started
        on ``pool``."""
        wf = to_form(w, config, "c", form)
        jobs = {
            fw: pool.submit(self.in_thread, runner, self.build_one, name, fw, config, form, wf, x, labels)
            for fw, runner in self.runners.items()
            if runner.runs_beside(config, form)
        }
        return wf, jobs

    def in_thread(self, runner: Runner, fn: Callable, *args):
        """``fn(*args)`` under the settings JAX keeps per thread: x64 mode, and on GPU full fp32."""
        with ExitStack() as stack:
            stack.enter_context(jax_x64(self.dtype == "float64"))
            if self.settings.device == "gpu":
                stack.enter_context(runner.full_fp32())
            return fn(*args)

    def build_one(self, name: str, fw: str, config: ArchConfig, form: str, wf: dict, x, labels) -> Build:
        """One build: made, its weights checked, every pass measured, and exported for the copies."""
        runner = self.runners[fw]
        t0, compile_before = time.perf_counter(), runner.compile_s
        self.progress(f"{name}: {fw} ({form})")
        model = runner.build(config, form)
        compiled = runner.compiled(model)
        runner.load(model, wf)
        row = dict(model=name, framework=fw, form=form)
        rows: list[CheckResult] = []
        self.check_weights_io(runner, model, config, wf, row, rows)
        measured = None
        if any(c in self.settings.checks for c, _ in QUANTITIES):
            measured = _to_c(self.measure(runner, model, wf, x, labels), config, form)
        export = None
        if self.needs("copy"):
            runner.load(model, wf)
            export = runner.export(model)
        release_memory()
        t1 = time.perf_counter()
        took = t1 - t0
        compile_s = runner.compile_s - compile_before
        self.timings[f"{name}: {fw} ({form})"] = {
            "compiled": compiled,
            "compile_s": round(compile_s, 2),
            "wall_s": round(took, 2),
            # the process's peak while this build ran (another may have run beside it)
            "peak_rss_mb": round(self.rss.peak_between(t0, t1)) if self.rss is not None else None,
        }
        how = f"compiled, {compile_s:.1f}s of it compiling" if compiled else "eager"
        self.progress(f"{name}: {fw} ({form}) done in {took:.1f}s ({how})")
        return Build(row, rows, measured, export, model if self.needs("copy") else None)

    def check_trajectory(
        self, name: str, config: ArchConfig, w: dict, size: int, forms: list[str], out
    ) -> None:
        """Every build trains STEPS steps (parity.trajectory); loss per step and final state judged."""
        self.progress(f"{name}: trajectory: torch (c) fp32, float64, {FLOOR_SAMPLES} perturbed fp32")
        data, ref32, ref64, samples = trajectory.references(
            config, w, self.settings.batch, size, self.settings.seed
        )
        curves = {"torch (c) float64": ref64["loss"].tolist()}
        for form in forms:
            wf = to_form(w, config, "c", form)
            for fw in self.runners:
                self.progress(f"{name}: trajectory: {fw} ({form})")
                mine = trajectory.run_build(fw, config, form, wf, data, self.settings.conv_impl)
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

    def check_numbers(self, mine: dict, refs: tuple[dict, dict, list[dict]], row, out) -> bool:
        """Every quantity of one build against torch (c), bounded by the measured floor; True if all pass."""
        ok = True
        for (check, quantity), pick in QUANTITIES.items():
            if self.needs(check):
                c = self.judge(pick, mine, refs)
                out.append(_judged(row, check, quantity, c))
                if quantity == "stages":
                    self.locate(out[-1], pick(mine), pick(refs[0]))
                ok = ok and c.passed
        return ok

    @staticmethod
    def locate(result: CheckResult, mine: dict, ref: dict) -> None:
        """Each stage point's error on ``result``, and on a failure the first point where it went
        over the bound: where the build parts from the reference (a wrong stride, padding or BN
        convention shows up at its own stage, and every later one inherits it)."""
        result.stages = stage_errors(mine, ref)
        first = first_over(result.stages, result.bound)
        if not result.passed and first is not None:
            errors = ", ".join(f"{k} {e:.1e}" for k, e in result.stages.items())
            result.detail = f"parts at {first}: {errors}"

    def judge(self, pick, mine: dict, refs: tuple[dict, dict, list[dict]], against: dict | None = None):
        """One quantity under the noise-floor rule: against the reference, or ``against`` another build."""
        ref, truth, samples = refs
        key = (id(ref), pick)
        if key not in self.floors:  # the same for every build: measured once per model
            if not samples:
                raise RuntimeError("a quantity whose floor the references did not measure")
            self.floors[key] = noise_floor(pick(ref), pick(truth), [pick(s) for s in samples])
        return compare(
            pick(mine),
            pick(against if against is not None else ref),
            pick(truth),
            floor=self.floors[key],
            tol=self.tol,
        )

    def check_reference(self, name: str, kept: dict, refs, rows: list[CheckResult], out) -> None:
        """When most builds fail alike, ask whether the reference is the odd one out.

        If every build but torch's agrees with one of them (keras or flax (c)) under the
        same bounds, while torch (c) does not, the fault is in the reference, and saying
        "eight builds failed" would point at the wrong code. Their rows are then
        re-judged against that build, and one failing row names the reference.
        """
        numeric = {check for check, _ in QUANTITIES}
        if any(not r.passed and r.check not in numeric for r in rows):
            return  # a weights or count fault: the numbers are not the question
        failing = {(r.framework, r.form) for r in rows if not r.passed}
        builds = {(r.framework, r.form) for r in rows if r.check in numeric}
        if len(failing) * 2 <= len(builds) or len({fw for fw, _ in failing}) < 2:
            return  # a minority, or one framework failing alone: that framework's fault
        anchor = min((b for b in failing if b[0] != "torch"), key=lambda b: (b[1] != "c", b[0]))
        agrees = all(
            self.judge(pick, kept[b], refs, against=kept[anchor]).passed
            for b in failing
            for (check, _), pick in QUANTITIES.items()
            if self.needs(check)
        )
        if not agrees:
            return
        for r in rows:
            if not r.passed:
                r.passed = True
                r.detail = f"agrees with {anchor[0]} ({anchor[1]}); the reference is the odd one out"
        agree = ", ".join(f"{fw} ({f})" for fw, f in sorted(failing))
        out.append(
            CheckResult(
                model=name,
                framework="torch",
                form="c",
                check=REFERENCE_CHECK,
                quantity="consensus",
                error=1.0,
                bound=EXACT,
                passed=False,
                detail=f"the reference (torch form (c)) disagrees with {len(failing)} of {len(builds)} "
                f"builds, which agree with each other: {agree}; look for the fault in resnext_torch",
            )
        )

    def check_tf32(self, name, config, w, x, labels, refs, out) -> None:
        """torch (c) eval logits with TF32 allowed, against the full-fp32 reference: shown, not judged."""
        model = self.ref_tf32.build(config, "c")
        self.ref_tf32.load(model, w)
        logits = self.ref_tf32.stages(model, x)["logits"]
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

    def check_bf16(self, name, config, w, x, labels, forms, out) -> None:
        """Each build in its framework's bfloat16 mode against the fp32 reference: shown, never failed.

        torch autocast, Keras ``mixed_bfloat16``, Flax bf16 compute with float32
        parameters; BN statistics stay float32 in all three. The floor column is fp32's own.
        """
        self.progress(f"{name}: torch (c) reference: fp32, float64, {FLOOR_SAMPLES} perturbed fp32")
        refs = self.references(config, w, x, labels, checks=("eval", "grad_train"))
        for form in forms:
            wf = to_form(w, config, "c", form)
            for fw, runner in self.bf16.items():
                self.progress(f"{name}: {fw} ({form}) bfloat16")
                model = runner.build(config, form)
                runner.load(model, wf)
                mine = _to_c(
                    self.measure(runner, model, wf, x, labels, checks=("eval", "grad_train")), config, form
                )
                for check, quantity in BF16_QUANTITIES:
                    c = self.judge(QUANTITIES[(check, quantity)], mine, refs)
                    out.append(
                        CheckResult(
                            model=name,
                            framework=fw,
                            form=form,
                            check="bf16",
                            quantity=f"{check} {quantity}",
                            error=c.error,
                            bound=math.inf,
                            passed=True,
                            tensor=c.tensor,
                            floor=c.floor,
                            l2=c.l2,
                            detail="bfloat16 compute against fp32; informational",
                        )
                    )
                del model, mine

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
    precision: str = "float32",
    keras_backend: str | None = None,
    compile: str = "auto",
    conv_impl: str = "auto",
    tf32: bool | None = None,
    configs: dict[str, ArchConfig] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ParityResult:
    """Check every (framework, form) build of each model against torch form (c).

    ``models`` are preset names (or ``"all"``); ``configs`` adds named custom
    configs. ``image_size`` defaults to 32 for CIFAR stems and 64 for ImageNet
    stems. ``precision`` is "float32", "float64" (all nine builds in float64,
    bounds near 1e-12) or "bfloat16" (informational rows only; see the module
    docstring). ``compile`` ("auto", "always", "never") says which Keras and Flax
    builds run compiled (``runner_base.compiles``: "auto" all but the builds with
    more than 128 explicit paths; torch and Keras on torch run eagerly, as
    their frameworks do by default). ``conv_impl`` says how Keras and Flax compute
    grouped convs ("auto": the fast lowering, "native", "patches", "split"; see
    ``resnext_spec.grouped``). ``tf32`` (default: on GPU) adds the informational
    TF32 row. Returns a :class:`ParityResult`; nothing is printed except through
    ``progress``.
    """
    if isinstance(models, str):
        models = models if models == "all" else [models]
    names = list_presets() if models == "all" else list(models)
    settings = Settings(
        frameworks=tuple(frameworks),
        forms=tuple(forms),
        checks=tuple(checks),
        batch=batch,
        image_size=image_size,
        seed=seed,
        device=device,
        precision=precision,
        keras_backend=keras_backend,
        compile=compile,
        conv_impl=conv_impl,
        tf32=device == "gpu" if tf32 is None else tf32,
    )
    all_configs = {n: get_config(n) for n in names if not (configs and n in configs)}
    all_configs.update(configs or {})
    for n, c in all_configs.items():
        if c.headless:  # the checks read logits, a loss and its gradients: a classifier's
            raise ConfigError(
                f"{n}: a headless model (num_classes=0) has no logits to check; give it a head "
                "(any num_classes): the stage outputs before it are checked too"
            )
    progress = progress or (lambda msg: None)
    t0 = time.perf_counter()
    result = ParityResult()
    model_times, model_peaks = {}, {}
    with jax_x64(precision == "float64"), ExitStack() as pinned, RssSampler() as rss:
        harness = Harness(settings, progress)
        harness.rss = rss
        if device == "gpu":  # full fp32 in JAX too (torch's runner pins its own); TF32 is its own row
            for runner in harness.runners.values():
                pinned.enter_context(runner.full_fp32())
        for name, config in all_configs.items():
            t = time.perf_counter()
            harness.run_model(name, config, result.results)
            model_times[name] = round(time.perf_counter() - t, 2)
            model_peaks[name] = round(rss.peak_between(t, time.perf_counter()))
    result.meta = {
        "models": list(all_configs),
        "configs": {n: c.to_dict() for n, c in all_configs.items()},
        **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
        "keras_backend": getattr(harness.runners.get("keras"), "backend", None),
        "tf32_row": settings.tf32,
        "trajectories": harness.trajectories,
        "builds": harness.timings,
        "versions": versions(),
        "argv": sys.argv,
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "model_time_s": model_times,
        "peak_rss_mb": round(peak_rss_mb()),  # the process's, from its start: imports included
        "model_peak_rss_mb": model_peaks,
        "cpu_class": cpu_class(),
    }
    return result
