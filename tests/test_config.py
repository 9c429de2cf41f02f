"""ArchConfig validates every field, presets pin their architecture, names get suggestions."""

import dataclasses

import pytest
from helpers import PARAM_COUNTS, TABLE2_PRESETS

from resnext_spec import ArchConfig, get_config, list_presets, preset_of, resolve_config
from resnext_spec.config import KERAS_HUB_PRESETS, PREACT_PRESETS, PRESET_ALIASES, TIMM_PRESETS
from resnext_spec.errors import ResNeXtError


def test_every_design_preset_is_registered():
    assert set(list_presets()) == set(PARAM_COUNTS) | set(TABLE2_PRESETS) | set(TIMM_PRESETS) | set(
        KERAS_HUB_PRESETS
    ) | set(PREACT_PRESETS) | set(PRESET_ALIASES)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("block", "resblock", ["block", "basic", "bottleneck"]),
        ("stem", "tiny", ["stem", "imagenet", "cifar"]),
        ("stride_on", "3x1", ["stride_on", "3x3", "1x1"]),
        ("layers", (), ["layers"]),
        ("layers", (3, 0, 2), ["layers"]),
        ("cardinality", 0, ["cardinality"]),
        ("base_width", -4, ["base_width"]),
        ("num_classes", 2.5, ["num_classes"]),
        ("in_channels", True, ["in_channels"]),
    ],
)
def test_bad_field_is_a_value_error_naming_it(field, value, words):
    with pytest.raises(ResNeXtError) as err:
        ArchConfig(**{field: value})
    for word in words:
        assert word in str(err.value)


def test_basic_block_refuses_paths():
    with pytest.raises(ResNeXtError, match="basic.*cardinality"):
        ArchConfig(block="basic", cardinality=32, base_width=4)


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_config_json_round_trip(name):
    config = get_config(name)
    assert ArchConfig.from_json(config.to_json()) == config


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ResNeXtError, match=r"unknown ArchConfig field\(s\) \['groups'\]"):
        ArchConfig.from_dict({"groups": 32})


def test_unknown_preset_suggests_the_close_name():
    with pytest.raises(ResNeXtError, match="did you mean 'resnext50_32x4d'"):
        get_config("resnext50_32x4")


def test_preset_pins_its_architecture():
    with pytest.raises(ResNeXtError, match="pins cardinality=32"):
        get_config("resnext50_32x4d", cardinality=8)
    # The same value is not a conflict, and free fields change.
    assert get_config("resnext50_32x4d", cardinality=32).cardinality == 32
    assert get_config("resnext50_32x4d", num_classes=10).num_classes == 10


def test_resolve_needs_exactly_one_source():
    with pytest.raises(ResNeXtError, match="exactly one"):
        resolve_config()
    with pytest.raises(ResNeXtError, match="exactly one"):
        resolve_config("resnet50", ArchConfig())
    custom = resolve_config(config=ArchConfig(cardinality=2), num_classes=4)
    assert dataclasses.astuple(custom)[2] == 2 and custom.num_classes == 4


def test_preset_of_names_a_preset_only_when_every_field_matches():
    for name in list_presets():
        assert preset_of(ArchConfig.from_dict(get_config(name).to_dict())) == PRESET_ALIASES.get(name, name)
    assert preset_of(get_config("resnext50_32x4d", num_classes=10)) is None
    assert preset_of(dataclasses.replace(get_config("resnet18"), in_channels=1)) is None
