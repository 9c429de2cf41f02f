"""The canonical weight format is a promise to every file ever written: opening the architecture to
variants must not move one name or shape of the existing presets. ``data/layout_golden.json`` was
written by ``data/make_layout_golden.py`` from the code before that work (its ``commit``)."""

import hashlib
import json
from pathlib import Path

import pytest

from resnext_spec import ArchConfig, canonical_shapes, count_flops, count_params, get_config

GOLDEN = json.loads((Path(__file__).parent / "data" / "layout_golden.json").read_text())


def listing(config, form):
    return [f"{name} {'x'.join(map(str, shape))}" for name, shape in canonical_shapes(config, form).items()]


@pytest.mark.parametrize("name", list(GOLDEN["presets"]))
def test_every_preset_keeps_its_names_shapes_and_counts_in_every_form(name):
    golden = GOLDEN["presets"][name]
    config = get_config(name)
    for form, want in golden["forms"].items():
        got = listing(config, form)
        assert len(got) == want["tensors"], (name, form)
        assert hashlib.sha256("\n".join(got).encode()).hexdigest() == want["sha256"], (name, form)
    assert count_params(config) == golden["params"]
    assert count_flops(config) == golden["flops"]


@pytest.mark.parametrize("label", list(GOLDEN["tiny"]))
def test_the_tiny_test_configs_keep_every_name_in_order(label):
    golden = GOLDEN["tiny"][label]
    config = ArchConfig.from_dict(golden["config"])
    for form, want in golden["forms"].items():
        assert listing(config, form) == want, (label, form)
