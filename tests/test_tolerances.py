"""The noise-floor rule, on hand-made numbers: where the bound comes from, and when it gives up."""

import numpy as np
import pytest

from resnext_spec.tolerances import (
    CHAOTIC_FLOOR,
    K_FLOOR,
    TOL,
    compare,
    first_over,
    l2_error,
    stage_errors,
    worst_error,
)

TRUTH = {"t": np.array([1.0, -2.0, 4.0])}


def moved(by: float) -> dict[str, np.ndarray]:
    """TRUTH with its largest entry moved by ``by`` of the largest magnitude (error exactly ``by``)."""
    return {"t": TRUTH["t"] + np.array([0.0, 0.0, by * 4.0])}


def test_without_a_floor_the_bound_is_tol():
    c = compare(moved(TOL / 2), TRUTH)
    assert c.bound == TOL and c.passed
    assert not compare(moved(2 * TOL), TRUTH).passed


def test_the_bound_is_k_times_the_worst_floor_sample():
    # reference 1e-4 from the truth, one perturbed sample 3e-4: floor 3e-4, bound 3e-3
    c = compare(moved(2e-3), moved(1e-4), TRUTH, floor_samples=[moved(3e-4)])
    assert abs(c.floor - 3e-4) < 1e-12
    assert abs(c.bound - K_FLOOR * 3e-4) < 1e-15 and c.passed and not c.chaotic
    assert not compare(moved(5e-3), moved(1e-4), TRUTH, floor_samples=[moved(3e-4)]).passed


def test_a_reference_with_no_correct_digit_is_chaotic_shown_not_judged():
    wild = compare(moved(50.0), moved(0.0), TRUTH, floor_samples=[moved(2 * CHAOTIC_FLOOR)])
    assert wild.chaotic and wild.passed and wild.error == 50.0
    edge = compare(moved(50.0), moved(0.0), TRUTH, floor_samples=[moved(CHAOTIC_FLOOR / 2)])
    assert not edge.chaotic and not edge.passed


def test_a_nan_tensor_is_the_worst_and_fails():
    # A swapped running mean/variance puts a negative variance under a square root: NaN, which
    # `e > worst` would skip, naming a tensor that is fine.
    ref = {"a": np.ones(3), "b": np.ones(3), "c": np.ones(3)}
    ys = {"a": np.ones(3) * 1.5, "b": np.array([1.0, np.nan, 1.0]), "c": np.ones(3) * 2}
    error, tensor = worst_error(ys, ref)
    assert np.isnan(error) and tensor == "b"
    assert not compare(ys, ref).passed


def test_the_first_stage_over_the_bound_is_where_two_models_part():
    ref = {"stem": np.ones(4), "layer1": np.ones(4), "layer2": np.ones(4), "pool": np.ones(2)}
    ys = {"stem": np.ones(4), "layer1": np.ones(4) + 1e-3, "layer2": np.ones(4) + 1e-1, "pool": np.ones(2)}
    errors = stage_errors(ys, ref)
    assert list(errors) == list(ref) and abs(errors["layer1"] - 1e-3) < 1e-12
    assert first_over(errors, 1e-5) == "layer1" and first_over(errors, 1e-2) == "layer2"
    assert first_over(errors, 1.0) is None
    assert first_over({"stem": 0.0, "layer1": float("nan")}, 1e-5) == "layer1"


def by_hand(ys, refs):
    """worst_error and the L2 error, written out tensor by tensor from their definitions."""
    errs = {}
    for k, r in refs.items():
        scale, diff = (np.max(np.abs(r)), np.max(np.abs(ys[k] - r))) if r.size else (0.0, 0.0)
        errs[k] = diff / scale if scale else (0.0 if diff == 0 else np.inf)
    name = max(errs, key=errs.get)
    l2 = np.sqrt(
        sum(np.sum((ys[k] - r) ** 2) for k, r in refs.items()) / sum(np.sum(r**2) for r in refs.values())
    )
    return errs[name], name, l2


def test_the_worst_tensor_and_the_l2_error_follow_their_definitions_over_many_tensors():
    # Many tensors of mixed sizes, one empty, one all-zero reference matched exactly: the same
    # worst tensor, error and L2 as the definitions written out by hand.
    rng = np.random.default_rng(0)
    sizes = [3, 70, 0, 12, 1, 40, 25, 9]
    refs = {f"t{i}": rng.standard_normal(n) * (i + 1) for i, n in enumerate(sizes)}
    refs["zero"] = np.zeros(4)
    ys = {k: r + rng.standard_normal(r.shape) * 1e-6 for k, r in refs.items()}
    ys["zero"] = np.zeros(4)
    ys["t5"][7] += 1e-3 * np.max(np.abs(refs["t5"]))  # the worst, by construction
    error, tensor, l2 = by_hand(ys, refs)
    assert tensor == "t5" and worst_error(ys, refs) == (pytest.approx(error, rel=1e-12), "t5")
    assert l2_error(ys, refs) == pytest.approx(l2, rel=1e-12)
    ys["zero"] = np.array([0.0, 1e-9, 0.0, 0.0])  # off an all-zero reference: no scale, infinitely off
    assert worst_error(ys, refs) == (np.inf, "zero")
