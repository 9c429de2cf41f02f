"""Error metrics and every tolerance of the project, each with its reason.

Error of a tensor: ``max|y - y_ref| / max|y_ref|``. A set of tensors (the
gradients of every parameter) is also compared in global L2:
``||y - y_ref||_2 / ||y_ref||_2`` over all of them together.

The noise-floor rule: some quantities are ill-conditioned in fp32
(train-mode gradients move by ~2% when the input moves by 1e-7). For them the
bound is ``max(TOL, K_FLOOR * floor)``, where ``floor`` is how far a correct
fp32 computation lands from the float64 truth, measured in the same run.

One fp32 run is not enough to measure that floor. The error is dominated by
discrete events -- a ReLU input within rounding of zero lands on the other
side -- so it is heavy-tailed. Measured on resnext29_8x64d at 16 px (batch 4,
seed 0): eval-mode gradients of torch (c) fp32 were 1.2e-6 from float64 (worst
tensor), while Keras and Flax, both correct, were 4.1e-4 -- one such flip in
layer3.2.bn1.bias. Moving the input alone by 1e-7 in float64 moved those
gradients by only 1e-7: fp32 rounding inside a deep net is larger than rounding
of the input. Moving every weight and the input by 4 units of roundoff
(2**-22, relative, random) reproduced the event (4.1e-4) and a larger one
(2.4e-3) in 2 of 3 draws; one unit (2**-24) never did. 4 units is well inside
the rounding error of the convolutions themselves (a dot product of K >= 64
fp32 terms carries ~sqrt(K) = 8 or more units).

So the floor is the worst, against float64, of the fp32 reference and of
FLOOR_SAMPLES fp32 reference runs with weights and input perturbed that way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Well-conditioned quantities (eval logits, eval-mode gradients) agree to ~3e-7
# between fp32 and fp64 on resnext50_32x4d (docs/parity.md); 1e-5 leaves 30x
# room for a different but correct summation order, and still catches every
# planted fault (a wrong eps gives ~1e-4, a transposed kernel ~1).
TOL = 1e-5

# Two correct fp32 computations each sit within `floor` of the float64 truth,
# so they differ by up to ~2x floor; 10 leaves room for the floor itself being
# measured on one draw, and is still far below the O(1) error of a real bug.
K_FLOOR = 10.0

# Perturbed fp32 reference runs that join the plain one in measuring the floor.
FLOOR_SAMPLES = 2

# Relative size of those perturbations: 4 units of roundoff of the precision (see above).
PERTURBATION = {"float32": 2.0**-22, "float64": 2.0**-51}

# Float64 runs (--precision float64): well-conditioned quantities agree to ~1e-15;
# TOL64 leaves 1000x room for summation order and stays 1000x under the 1e-9 the
# float64 checks promise. The floor rule applies as in fp32, the floor measured
# with float64-rounding perturbations of a float64 reference.
TOL64 = 1e-12

# Where the reference itself is this far from the truth (worst tensor, relative), the
# precision has no correct digit to compare: the bound would be 10x that, over 100%,
# passing anything, and the error is a draw from the same chaos. Measured: after three
# SGD steps at lr 0.1, resnext50_32x4d at 32 px (layer4 normalises 4 values per channel)
# had a running-variance floor of 5.1 (510%) in fp32, one build's error 52 against a
# bound of 51 and another's 34 (1.8 at lr 0.01). Such quantities are reported as chaotic,
# not judged; in float64 the same ones sit near 1e-11 and are judged.
CHAOTIC_FLOOR = 0.1

# Bitwise: export -> import -> export must reproduce every byte.
EXACT = 0.0


def perturb(a: np.ndarray, rng: np.random.Generator, dtype: str = "float32") -> np.ndarray:
    """``a`` moved by a few units of ``dtype``'s rounding (PERTURBATION, relative, Gaussian), as ``dtype``.

    The floor samples: runs on inputs and weights moved this way are correct
    computations too, and how far they land from the truth is the floor.
    """
    moved = np.asarray(a, np.float64) * (1 + PERTURBATION[dtype] * rng.standard_normal(np.shape(a)))
    return moved.astype(dtype)


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    """``max|y - ref| / max|ref|`` in float64 (0 when both are all zeros)."""
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if y.shape != ref.shape:
        raise ValueError(f"shape mismatch: {y.shape} vs reference {ref.shape}")
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    diff = np.max(np.abs(y - ref)) if ref.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return float(diff / scale)


def worst_error(ys: Mapping[str, np.ndarray], refs: Mapping[str, np.ndarray]) -> tuple[float, str]:
    """The largest per-tensor :func:`rel_error` over ``refs`` and the name of its tensor."""
    worst, name, _, _ = _errors(ys, refs)
    return worst, name


def l2_error(ys: Mapping[str, np.ndarray], refs: Mapping[str, np.ndarray]) -> float:
    """Global relative L2 error over a set of tensors."""
    return _errors(ys, refs)[2]


def _errors(
    ys: Mapping[str, np.ndarray],
    refs: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray] | None = None,
) -> tuple[float, str, float, float | None]:
    """:func:`worst_error` and :func:`l2_error` against ``refs``, and :func:`l2_error` against
    ``truth``, in one pass: each tensor is read and widened to float64 once (the harness judges
    every parameter of nine builds, and reading them three times over was a tenth of a run)."""
    missing = sorted(set(refs) - set(ys))
    if missing:
        raise KeyError(f"no value to compare for {missing[:5]}")
    worst, name = 0.0, ""
    num = den = num_t = den_t = 0.0
    for k, r in refs.items():
        y, r = np.asarray(ys[k], np.float64), np.asarray(r, np.float64)
        e = rel_error(y, r)
        if not name or (not np.isnan(worst) and not e <= worst):  # a NaN is the worst there is
            worst, name = e, k
        num += float(np.sum((y - r) ** 2))
        den += float(np.sum(r**2))
        if truth is not None:
            t = np.asarray(truth[k], np.float64)
            num_t += float(np.sum((y - t) ** 2))
            den_t += float(np.sum(t**2))

    def ratio(n: float, d: float) -> float:
        return float(np.sqrt(n / d)) if d else (0.0 if n == 0 else float("inf"))

    return worst, name, ratio(num, den), ratio(num_t, den_t) if truth is not None else None


def stage_errors(ys: Mapping[str, np.ndarray], refs: Mapping[str, np.ndarray]) -> dict[str, float]:
    """:func:`rel_error` of each stage point (``resnext_spec.stage_names``) in ``refs``' order: the
    network's order, so the first that is over a bound is where two models part."""
    return {k: rel_error(ys[k], r) for k, r in refs.items()}


def first_over(errors: Mapping[str, float], bound: float) -> str | None:
    """The first name whose error is over ``bound`` (None if none is)."""
    return next((k for k, e in errors.items() if not e <= bound), None)


@dataclass(frozen=True)
class Comparison:
    """One quantity of one build against the fp32 reference, beside that reference's own fp64 floor."""

    error: float  # worst per-tensor rel_error against the fp32 reference
    tensor: str  # the tensor where it is worst
    l2: float  # global L2 error over the set
    floor: float  # worst per-tensor error of the fp32 reference against float64
    floor_l2: float
    bound: float  # pass bound for `error` (and, scaled by its own floor, for `l2`)
    l2_bound: float
    l2_fp64: float | None = None  # global L2 error against float64: how close to the exact value

    @property
    def chaotic(self) -> bool:
        """The reference has no correct digit here (floor > CHAOTIC_FLOOR): shown, not judged."""
        return self.floor > CHAOTIC_FLOOR

    @property
    def passed(self) -> bool:
        return self.chaotic or (self.error <= self.bound and self.l2 <= self.l2_bound)


@dataclass(frozen=True)
class Floor:
    """How far correct fp32 computations land from the float64 truth: per tensor (worst) and in L2."""

    worst: float
    l2: float


def noise_floor(
    ref32: Mapping[str, np.ndarray],
    ref64: Mapping[str, np.ndarray],
    floor_samples: Sequence[Mapping[str, np.ndarray]] = (),
) -> Floor:
    """The largest error against ``ref64`` of ``ref32`` and of every entry of ``floor_samples``.

    It depends on the references only, so a caller judging many builds against
    the same references measures it once and passes it to :func:`compare`.
    """
    worst = l2 = 0.0
    for sample in (ref32, *floor_samples):
        e, _, e_l2, _ = _errors(sample, {k: ref64[k] for k in sample})
        worst, l2 = max(worst, e), max(l2, e_l2)
    return Floor(worst, l2)


def compare(
    ys: Mapping[str, np.ndarray],
    ref32: Mapping[str, np.ndarray],
    ref64: Mapping[str, np.ndarray] | None = None,
    *,
    floor_samples: Sequence[Mapping[str, np.ndarray]] = (),
    floor: Floor | None = None,
    tol: float = TOL,
) -> Comparison:
    """Compare a set of tensors with the fp32 reference under the noise-floor rule.

    Without ``ref64`` the bound is ``tol`` alone. With it, the floor is
    :func:`noise_floor` of ``ref32`` and ``floor_samples`` (the fp32 reference run
    on inputs perturbed at fp32 rounding size), or ``floor`` when the caller has
    measured it already, and each bound is ``max(tol, K_FLOOR * floor)``, per
    tensor and in L2 separately; a floor over CHAOTIC_FLOOR makes the comparison
    informational (``chaotic``).
    """
    error, tensor, l2, l2_fp64 = _errors(ys, ref32, ref64)
    if ref64 is None:
        floor = Floor(0.0, 0.0)
    elif floor is None:
        floor = noise_floor(ref32, ref64, floor_samples)
    return Comparison(
        error,
        tensor,
        l2,
        floor.worst,
        floor.l2,
        max(tol, K_FLOOR * floor.worst),
        max(tol, K_FLOOR * floor.l2),
        l2_fp64,
    )
