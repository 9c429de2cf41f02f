"""Flax computes the same function as torch, in every form: the harness's rows for Flax.

Eval logits to 1e-5 relative; eval-mode gradients to 1e-5 as one L2 vector
against float64 (per tensor, ReLU flips make tiny gradients noisy, which the
floor measures); training-mode logits, gradients and running statistics within
DESIGN.md's noise-floor bound; every BN tensor randomised.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY, TINY_1X1, batch
from parity_runs import cases, failures, rows

import resnext_flax as rf
from resnext_spec import TOL, random_weights, rel_error, to_form

CASES = cases(["torch", "flax"])


@pytest.fixture(scope="module", params=CASES)
def result(request):
    return request.param()


def test_every_flax_check_passes(result):
    assert not failures(result, "flax")


def test_eval_logits_match_torch_to_1e5_in_every_form(result):
    forms = {r.form: r.error for r in rows(result, "flax", "eval", "logits")}
    assert set(forms) == {"a", "b", "c"}
    assert max(forms.values()) <= TOL, forms


def test_eval_gradients_are_within_1e5_of_the_exact_value(result):
    # Measured on resnext50_32x4d: Flax's eval gradients are 3e-7 (L2) from torch's
    # float64 gradients, while torch's own fp32 gradients are 1.4e-5 from them; so
    # against torch fp32 Flax reads 1.4e-5, the reference's error, not its own. The
    # 1e-5 is therefore held against float64, and torch fp32 is held to its floor.
    for r in rows(result, "flax", "grad_eval"):
        assert r.l2_fp64 <= TOL, (r.form, r.l2_fp64)
        assert r.l2 <= r.l2_bound, (r.form, r.l2, r.l2_bound)


def test_training_logits_gradients_and_running_stats_within_the_floor(result):
    got = rows(result, "flax", "train") + rows(result, "flax", "grad_train")
    assert {r.quantity for r in got} == {"logits", "running stats", "gradients"}
    for r in got:
        assert r.error <= r.bound, (r.form, r.check, r.quantity, r.tensor, r.error, r.floor)


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
