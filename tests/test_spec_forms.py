"""Conversions between forms (a), (b), (c) in numpy are exact and lossless."""

import numpy as np
import pytest
from helpers import PARAM_COUNTS, TINY, TINY_1X1, TINY_BASIC

from resnext_spec import WeightsMismatchError, canonical_shapes, get_config, random_weights, to_form
from resnext_spec.errors import ResNeXtError

BOTTLENECK_PRESETS = [n for n in PARAM_COUNTS if get_config(n).block == "bottleneck"]


def assert_bitwise(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype == np.float32, k
        assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("name", BOTTLENECK_PRESETS)
def test_every_preset_round_trips_bitwise_through_every_form(name):
    config = get_config(name)
    w = random_weights(config, "c", seed=3)
    for form in ("a", "b"):
        other = to_form(w, config, "c", form)
        assert {k: v.shape for k, v in other.items()} == canonical_shapes(config, form)
        assert_bitwise(to_form(other, config, form, "c"), w)
    # a -> b directly agrees with c -> b.
    assert_bitwise(to_form(to_form(w, config, "c", "a"), config, "a", "b"), to_form(w, config, "c", "b"))


def test_path_owns_its_slice_of_the_grouped_weights():
    # Hand check of resnext_spec/forms.py on one block: path p gets rows p*w..(p+1)*w-1 of conv1
    # and conv2 (conv2 group p), the same BN channels, and in form (a) those columns of conv3.
    w = random_weights(TINY, "c", seed=0)
    a = to_form(w, TINY, "c", "a")
    pw = 8  # path width of stage 2 in TINY: int(128 * 4 / 64)
    p = 2
    rows = slice(p * pw, (p + 1) * pw)
    assert np.array_equal(a["layer2.1.paths.2.conv1.weight"], w["layer2.1.conv1.weight"][rows])
    assert np.array_equal(a["layer2.1.paths.2.conv2.weight"], w["layer2.1.conv2.weight"][rows])
    assert np.array_equal(a["layer2.1.paths.2.bn2.running_var"], w["layer2.1.bn2.running_var"][rows])
    assert np.array_equal(a["layer2.1.paths.2.conv3.weight"], w["layer2.1.conv3.weight"][:, rows])
    assert np.array_equal(a["layer2.1.bn3.bias"], w["layer2.1.bn3.bias"])


@pytest.mark.parametrize("config", [TINY, TINY_1X1])
def test_partial_dicts_convert_like_full_ones(config):
    # Gradients carry no running statistics; they convert with partial=True.
    w = random_weights(config, "c", seed=1)
    params = {k: v for k, v in w.items() if "running" not in k}
    a = to_form(params, config, "c", "a", partial=True)
    assert all("running" not in k for k in a)
    assert_bitwise(to_form(a, config, "a", "c", partial=True), params)


def test_basic_block_refuses_paths():
    with pytest.raises(ResNeXtError, match="basic-block models .* no paths"):
        to_form(random_weights(TINY_BASIC), TINY_BASIC, "c", "a")


def test_unknown_form_is_named():
    with pytest.raises(ResNeXtError, match="form must be one of"):
        to_form(random_weights(TINY), TINY, "c", "d")


def test_mismatched_input_lists_every_problem():
    w = random_weights(TINY, "c")
    del w["layer1.0.bn1.running_var"]
    w["layer9.0.conv1.weight"] = np.zeros(3, np.float32)
    w["fc.weight"] = np.zeros((9, 512), np.float32)
    with pytest.raises(WeightsMismatchError) as err:
        to_form(w, TINY, "c", "a")
    msg = str(err.value)
    assert "layer1.0.bn1.running_var" in msg and "layer9.0.conv1.weight" in msg
    assert "fc.weight: expected (5, 512), got (9, 512)" in msg
    assert "num_classes=9" in msg


def test_random_weights_randomise_every_bn_tensor():
    w = random_weights(TINY, "c", seed=0)
    for name, value in w.items():
        if name.split(".")[-2].startswith("bn") or "downsample.1" in name:
            assert not np.allclose(value, 0.0) and not np.allclose(value, 1.0), name
    assert all(v.min() > 0 for k, v in w.items() if k.endswith("running_var"))
