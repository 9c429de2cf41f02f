"""resnext_torch builds every preset with torchvision's names, the spec's shapes and the published counts."""

import pytest
import torch
from helpers import PARAM_COUNTS, TABLE2_PRESETS, TINY, TINY_BASIC, resnext50_params_by_hand
from torch.utils.flop_counter import FlopCounterMode

import resnext_torch as rt
from resnext_spec import canonical_shapes, count_flops, get_config
from resnext_spec.errors import ResNeXtError

CASES = [(n, f) for n in PARAM_COUNTS for f in "abc" if get_config(n).block == "bottleneck" or f == "c"]


def build_on_meta(name: str, form: str) -> rt.ResNet:
    # The meta device gives shapes without memory or init time: every preset in seconds.
    with torch.device("meta"):
        return rt.create_model(name, form=form)


@pytest.mark.parametrize("name, form", CASES)
def test_state_dict_is_the_canonical_layout(name, form):
    model = build_on_meta(name, form)
    state = {
        k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    expected = canonical_shapes(get_config(name), form)
    assert list(state) == list(expected)  # names and torchvision's order
    assert state == expected


@pytest.mark.parametrize("name, form", CASES)
def test_count_params_equals_published_count(name, form):
    assert rt.count_params(build_on_meta(name, form)) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", TABLE2_PRESETS)
@pytest.mark.parametrize("form", "abc")
def test_table2_presets_build_in_every_form_with_the_canonical_layout(name, form):
    model = build_on_meta(name, form)
    config = get_config(name)
    state = {
        k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    assert state == canonical_shapes(config, form)
    assert rt.count_params(model) == resnext50_params_by_hand(config.cardinality, config.base_width)


# Keys and shapes as they stand in torchvision's published resnet50 / resnext50_32x4d weights.
TORCHVISION_FACTS = {
    "resnet50": {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer4.2.bn3.running_var": (2048,),
        "fc.weight": (1000, 2048),
    },
    "resnext50_32x4d": {
        "layer1.0.conv1.weight": (128, 64, 1, 1),
        "layer1.0.conv2.weight": (128, 4, 3, 3),
        "layer3.5.conv2.weight": (512, 16, 3, 3),
        "layer4.0.downsample.1.weight": (2048,),
    },
}


@pytest.mark.parametrize("name", list(TORCHVISION_FACTS))
def test_names_match_torchvision_checkpoints(name):
    state = build_on_meta(name, "c").state_dict()
    for key, shape in TORCHVISION_FACTS[name].items():
        assert tuple(state[key].shape) == shape
    assert "layer1.0.bn1.num_batches_tracked" in state  # so torchvision files load strictly


@pytest.mark.parametrize("name, size", [("resnet50", 224), ("resnext50_32x4d", 224), ("resnext29_8x64d", 32)])
def test_spec_flops_equal_torch_flop_counter(name, size):
    # torch's FlopCounterMode counts 2 FLOPs per multiply-add of conv and linear layers.
    model = build_on_meta(name, "c")
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, size, size, device="meta"))
    assert counter.get_total_flops() == 2 * count_flops(get_config(name), size)


def test_basic_block_model_rejects_paths():
    for form in ("a", "b"):
        with pytest.raises(ResNeXtError, match="only form 'c'"):
            rt.create_model(config=TINY_BASIC, form=form)


def test_bad_preset_and_form_are_named():
    with pytest.raises(ResNeXtError, match="did you mean"):
        rt.create_model("resnet5O")
    with pytest.raises(ResNeXtError, match="form must be one of"):
        rt.create_model("resnet50", form="grouped")


@pytest.mark.parametrize("form", ["a", "b", "c"])
def test_norm_layer_builds_every_normalisation_layer(form):
    """torchvision's `norm_layer`: every BN of every form (stem, paths, shared, shortcut) comes from it."""
    made = []

    def norm_layer(channels):
        made.append(channels)
        return torch.nn.BatchNorm2d(channels, eps=1e-3)

    model = rt.create_model(config=TINY, form=form, norm_layer=norm_layer)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    expected = [n for n, s in canonical_shapes(TINY, form).items() if n.endswith(".running_var")]
    assert len(made) == len(bns) == len(expected) and all(m.eps == 1e-3 for m in bns)
