"""Canonical weights in and out of resnext_torch: bitwise, strict, all-or-nothing."""

import numpy as np
import pytest
import torch
from helpers import TINY, TINY_1X1

import resnext_torch as rt
from resnext_spec import WeightsMismatchError, random_weights


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_form_mismatch_gets_a_hint_and_changes_nothing():
    model = rt.create_model(config=TINY, form="a")
    before = snapshot(model)
    with pytest.raises(WeightsMismatchError, match="look like form \\(c\\)"):
        rt.import_weights(model, random_weights(TINY, "c"))
    assert_unchanged(model, before)


def test_ddp_prefix_gets_a_hint():
    w = {f"module.{k}": v for k, v in random_weights(TINY, "c").items()}
    with pytest.raises(WeightsMismatchError, match="strip that prefix"):
        rt.import_weights(rt.create_model(config=TINY), w)


def test_integer_tensors_are_refused():
    w = random_weights(TINY, "c")
    w["fc.bias"] = np.arange(5)
    with pytest.raises(WeightsMismatchError, match="fc.bias: dtype int64"):
        rt.import_weights(rt.create_model(config=TINY), w)


def test_non_strict_import_keeps_missing_tensors():
    model = rt.create_model(config=TINY)
    kept = model.fc.weight.detach().clone()
    w = random_weights(TINY, "c", seed=4)
    del w["fc.weight"]
    rt.import_weights(model, w, strict=False)
    assert torch.equal(model.fc.weight, kept)
    assert np.array_equal(model.fc.bias.detach().numpy(), w["fc.bias"])


def test_torchvision_style_state_dict_loads_strictly():
    # A plain state_dict with num_batches_tracked, as torchvision saves it.
    src = rt.create_model(config=TINY)
    rt.import_weights(src, random_weights(TINY, seed=2))
    dst = rt.create_model(config=TINY)
    dst.load_state_dict(src.state_dict(), strict=True)
    rt.import_weights(dst, {k: v.numpy() for k, v in src.state_dict().items()})  # num_batches_tracked ignored
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(src.eval()(x), dst.eval()(x))


def test_safetensors_save_load_round_trip(tmp_path):
    model = rt.create_model(config=TINY_1X1, form="b")
    rt.import_weights(model, random_weights(TINY_1X1, "b", seed=8))
    rt.save(model, tmp_path / "m.safetensors")
    back = rt.load(tmp_path / "m.safetensors")
    assert back.form == "b" and back.config == TINY_1X1
    got, want = rt.export_weights(back), rt.export_weights(model)
    assert list(got) == list(want) and all(np.array_equal(got[k], want[k]) for k in want)
    as_c = rt.load(tmp_path / "m.safetensors", form="c")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(as_c.eval()(x), model.eval()(x), rtol=1e-5, atol=1e-6)
