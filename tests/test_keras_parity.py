"""Keras computes the same function as torch, in every form: the harness's rows for Keras.

Eval logits to 1e-5 relative; training-mode logits and running statistics after
one training pass within the harness's noise-floor bound (resnext_spec/tolerances.py); every BN
tensor randomised.
"""

import keras
import numpy as np
import pytest
from helpers import TINY, TINY_1X1, batch
from parity_runs import cases, eval_logits_by_form, failures, rows

import resnext_keras as rk
from resnext_spec import random_weights, to_form
from resnext_spec.tolerances import TOL, rel_error

pytestmark = pytest.mark.keras


CASES = cases()


@pytest.fixture(scope="module", params=CASES)
def result(request):
    return request.param()


@pytest.mark.keras_smoke
def test_every_keras_check_passes(result):
    assert not failures(result, "keras")


def test_eval_logits_match_torch_to_1e5_in_every_form(result):
    forms = eval_logits_by_form(result, "keras")
    assert max(forms.values()) <= TOL, forms


def test_training_logits_and_running_stats_within_the_floor(result):
    got = rows(result, "keras", "train")
    assert {r.quantity for r in got} == {"logits", "running stats"}
    for r in got:
        assert r.error <= r.bound, (r.form, r.quantity, r.tensor, r.error, r.floor)


def test_weights_copy_bitwise_between_keras_and_torch(result):
    if "torch" not in result.meta["frameworks"]:
        pytest.skip("this run has no torch build to copy to or from")
    copies = [r for r in rows(result, check="copy") if "keras" in r.framework]
    assert {r.framework for r in copies} >= {"torch->keras", "keras->torch"}
    assert all(r.passed for r in copies)


@pytest.mark.parametrize("config, size", [(TINY, 16), (TINY_1X1, 32)], ids=["tiny", "tiny_1x1"])
def test_forms_agree_inside_keras_without_torch(config, size):
    # a == b == c checked against each other, no torch in the loop.
    w = random_weights(config, "c", seed=6)
    x, _ = batch(config, size=size)
    nhwc = x.transpose(0, 2, 3, 1)
    logits = {}
    for form in "abc":
        model = rk.create_model(config=config, form=form)
        rk.import_weights(model, to_form(w, config, "c", form))
        logits[form] = np.asarray(keras.ops.convert_to_numpy(model(nhwc, training=False)), np.float64)
    assert rel_error(logits["a"], logits["c"]) <= TOL
    assert rel_error(logits["b"], logits["c"]) <= TOL
