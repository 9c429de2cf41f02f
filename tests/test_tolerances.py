"""The noise-floor rule, on hand-made numbers: where the bound comes from, and when it gives up."""

import numpy as np

from resnext_spec.tolerances import CHAOTIC_FLOOR, K_FLOOR, TOL, compare

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
