"""Flax computes the same function as torch, in every form: the harness's rows for Flax.

Eval logits to 1e-5 relative. Eval-mode gradients, as one L2 vector, as close to
float64 as torch fp32 itself is (2e-5 where fp32 allows it: one ReLU kink crossed). Training-mode
logits, gradients and running statistics within the harness's noise-floor bound (resnext_spec/tolerances.py).
Every BN tensor randomised.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY, TINY_1X1, batch
from parity_runs import cases, eval_logits_by_form, failures, rows

import resnext_flax as rf
from resnext_spec import random_weights, to_form
from resnext_spec.tolerances import TOL, rel_error

CASES = cases()
# How far from float64 one ReLU input within fp32 rounding of zero, rounded across the kink, moved
# the eval gradients of a real preset (measured 1.22e-5; test_eval_gradients_are_as_close_...).
KINK = 2e-5


@pytest.fixture(scope="module", params=CASES)
def result(request):
    return request.param()


def test_every_flax_check_passes(result):
    assert not failures(result, "flax")


def test_eval_logits_match_torch_to_1e5_in_every_form(result):
    forms = eval_logits_by_form(result, "flax")
    assert max(forms.values()) <= TOL, forms


def test_eval_gradients_are_as_close_to_exact_as_torch_fp32_is(result):
    # 2e-5 (KINK) where fp32 allows it; no further from float64 than torch fp32's own runs are.
    # Measured: resnext50_32x4d, Flax 3e-7 from float64 (L2) while torch fp32 is 1.4e-5
    # from it; resnext29_8x64d at 32 px, Flax 2-5e-5 while torch fp32 moved by a rounding
    # step lands 1.0e-4 from it, so there no fp32 build can meet a flat 1e-5.
    # On an AVX2-only AMD EPYC (CI, 2026-11), Flax form (b) of resnext29_8x64d landed 4.926e-5
    # from float64 against a floor of 4.921e-5: level with torch fp32, whose floor is the worst
    # of only three runs. "As close as torch" allows that sampling noise: twice the floor.
    # On an AVX2 CI machine (2026-12), compiled Flax form (a) of resnext29_8x64d at 16 px landed
    # 1.22e-5 from float64 against a floor of 1.29e-6 (eager Flax: 2.9e-7). One pre-ReLU value
    # (layer3.2.bn1, channel 1207, image 3, row 3, column 0) is 7.0e-7 in float64 where its
    # neighbours are about 0.7; XLA's fused fp32 sums put it on the other side of the kink, which
    # moves that element of bn1.bias's gradient by 0.6%. Torch's three perturbed runs did not
    # cross it, so the floor cannot see it; a crossed kink is a correct fp32 result: KINK allows one.
    for r in rows(result, "flax", "grad_eval"):
        assert r.l2_fp64 <= max(KINK, 2 * r.l2_floor), (r.form, r.l2_fp64, r.l2_floor)
        assert r.l2 <= r.l2_bound, (r.form, r.l2, r.l2_bound)


def test_training_logits_gradients_and_running_stats_within_the_floor(result):
    got = rows(result, "flax", "train") + rows(result, "flax", "grad_train")
    assert {r.quantity for r in got} == {"logits", "running stats", "gradients"}
    for r in got:  # chaotic rows (fp32 reference with no correct digit) are shown, not judged
        assert r.chaotic or r.error <= r.bound, (r.form, r.check, r.quantity, r.tensor, r.error, r.floor)


def test_weights_copy_bitwise_between_flax_and_torch(result):
    copies = [r for r in rows(result, check="copy") if "flax" in r.framework]
    assert {r.framework for r in copies} >= {"torch->flax", "flax->torch"}
    assert all(r.passed for r in copies)


@pytest.mark.parametrize("config, size", [(TINY, 16), (TINY_1X1, 32)], ids=["tiny", "tiny_1x1"])
def test_forms_agree_inside_flax_without_torch(config, size):
    w = random_weights(config, "c", seed=6)
    x = jnp.asarray(batch(config, size=size)[0].transpose(0, 2, 3, 1))
    logits = {}
    for form in "abc":
        model = rf.create_model(config=config, form=form)
        rf.import_weights(model, to_form(w, config, "c", form))
        model.eval()
        logits[form] = np.asarray(model(x), np.float64)
    assert rel_error(logits["a"], logits["c"]) <= TOL
    assert rel_error(logits["b"], logits["c"]) <= TOL
