"""`resnext-explain`: one block's forms (a), (b), (c) agree stage by stage, in every framework.

The lesson is only worth showing if it can fail: a path permuted in the (a) weights must
show up as a large error and exit 1.
"""

import json

import numpy as np
import pytest
from helpers import PARAM_COUNTS, TABLE2_PRESETS

import resnext_explain.lesson as lesson_module
from resnext_explain import explain
from resnext_explain.cli import main
from resnext_spec import get_config, to_form
from resnext_spec.config import DESIGN_PRESETS

# The design's bottleneck presets, and a timm variant with SE and a deep stem (the parts around the
# paths leave the path-by-path story as it is).
BOTTLENECKS = [n for n in DESIGN_PRESETS if get_config(n).block == "bottleneck"] + ["seresnext26d_32x4d"]


@pytest.mark.parametrize("name", BOTTLENECKS)
def test_every_bottleneck_preset_agrees_path_by_path_in_torch(name):
    got = explain(name, "layer1.0", image_size=32)
    c = get_config(name).cardinality
    for stage in got.stages:
        assert stage["error"] < 1e-5, stage
        if "per_path" in stage:
            assert len(stage["per_path"]) == c and max(stage["per_path"]) < 1e-5
    assert len(set(got.params.values()) | {got.spec["spec_params"]}) == 1
    assert [row["path"] for row in got.split] == list(range(c))


@pytest.mark.parametrize("framework", ["keras", "flax"])
def test_keras_and_flax_agree_stage_by_stage(framework):
    got = explain("resnext26_8x16d", "layer2.0", framework=framework)
    assert got.worst < 1e-5, got.stages
    assert got.params["a"] == got.params["b"] == got.params["c"] == got.spec["spec_params"]


def test_a_later_block_is_built_as_its_twin_with_the_same_shapes():
    got = explain("resnext101_32x4d", "layer3.17", image_size=64)
    assert got.built_as == "layer3.1" and got.notes
    # layer3.17: 1024 channels in and out, C=32 paths of width 16, no projection, at 4x4 (64 px / 16).
    assert got.spec | {"spec_params": 0} == {
        "in_channels": 1024,
        "out_channels": 1024,
        "cardinality": 32,
        "path_width": 16,
        "width": 512,
        "stride": 1,
        "projection": False,
        "shortcut": "identity",
        "preact": False,
        "conv3_bias": False,
        "spec_params": 0,
        "parts": [],
    }
    assert got.input_shape == (1, 4, 4, 1024)
    assert got.worst < 1e-5


def test_block_parameter_count_by_hand():
    # resnext50_32x4d layer1.0: 64 -> 128 (1x1) -> grouped 3x3 (32 groups) -> 256, projection 64 -> 256.
    convs = 64 * 128 + 9 * 128 * 128 // 32 + 128 * 256 + 64 * 256
    bns = 2 * (128 + 128 + 256 + 256)
    assert explain("resnext50_32x4d", "layer1.0", image_size=32).spec["spec_params"] == convs + bns


def test_a_permuted_path_is_caught_and_exits_1(monkeypatch, capsys):
    def permuted(weights, config, src, dst, **kw):
        out = to_form(weights, config, src, dst, **kw)
        if dst == "a":  # paths 0 and 1 of the first block swap their conv3 columns
            k0, k1 = "layer1.0.paths.0.conv3.weight", "layer1.0.paths.1.conv3.weight"
            out[k0], out[k1] = out[k1], out[k0]
        return out

    monkeypatch.setattr(lesson_module, "to_form", permuted)
    assert main(["resnext26_8x16d", "--block", "layer1.0"]) == 1
    assert "NOT the same function" in capsys.readouterr().out


def test_cli_prints_the_split_and_the_stages_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # a 100-column terminal, which every line fits
    path = tmp_path / "lesson.json"
    assert main(["resnext26_4x32d", "--block", "layer2.0", "--path", "2", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "split into 4 paths" in out and "group 2 = [128:192]" in out and "the same function" in out
    data = json.loads(path.read_text())
    assert data["block"] == "layer2.0" and len(data["split"]) == 4 and data["worst_error"] < 1e-5
    # Stage 2 of a 4x32d net: planes 128, path width 128 * 32 / 64 = 64, so path 3 owns 192:256.
    assert data["split"][3]["conv3_in_a"]["columns"] == [192, 256]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["resnet18", "--block", "layer1.0"], "basic block"),
        (["resnext50_32x4d", "--block", "layer9.0"], "no block 'layer9.0'"),
        (["resnext50_32x4d", "--path", "32"], "paths 0..31"),
        (["resnet51"], "unknown preset"),
        (["resnext50_32x4d", "--batch-size", "0"], "batch >= 1"),
        (["resnext50_32x4d", "--framework", "mxnet"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_table2_presets_and_published_presets_are_all_explained():
    published = {n for n in PARAM_COUNTS if get_config(n).block == "bottleneck"}
    assert set(BOTTLENECKS) == published | set(TABLE2_PRESETS) | {"seresnext26d_32x4d"}
    assert np.isfinite(explain("resnext50_8x14d", "layer4.0", image_size=64).worst)


def test_the_parts_around_the_paths_are_shown_with_their_counts():
    # SE on layer2.0 of seresnext26d_32x4d: 512 channels, reduced to 512 / 16 = 32, two biased
    # 1x1 convs: 2 * 512 * 32 + 32 + 512 parameters.
    parts = explain("seresnext26d_32x4d", "layer2.0", image_size=32).spec["parts"]
    assert any(
        "squeeze-and-excitation 512 -> 32 -> 512" in p and f"{2 * 512 * 32 + 32 + 512:,}" in p for p in parts
    )
    assert any("average-pools 2x2" in p for p in parts)
    blur = explain("resnetblur50", "layer3.0", image_size=32).spec["parts"]
    assert blur == ["the 3x3 runs at stride 1 and a 3x3 blur pool of stride 2 follows its ReLU"]
    assert explain("resnext50_32x4d", "layer2.0", image_size=32).spec["parts"] == []


@pytest.mark.parametrize(
    "framework, shown", [("torch", "(1, 64, 8, 8) NCHW"), ("flax", "(1, 8, 8, 64) NHWC")]
)
def test_the_input_is_shown_in_the_layout_its_framework_takes(framework, shown, capsys):
    assert main(["resnet50", "--block", "layer1.0", "--framework", framework, "--image-size", "32"]) == 0
    assert f"One input {shown}" in capsys.readouterr().out


@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_a_pre_activation_block_is_taken_apart_in_its_order(framework):
    """keras.applications' ResNet50V2, layer1.2: the stage's last block, which strides (56 -> 28 px
    at 224) and whose shortcut takes every second pixel; bn0 first, no bn3, conv3's bias once in (a).
    The layer-by-layer walk in that order matches each form's own block."""
    got = explain("resnet50v2", "layer1.2", framework=framework)
    assert got.worst < 1e-5, got.stages
    assert got.spec["stride"] == 2 and got.spec["shortcut"] == "pool" and got.spec["preact"]
    assert got.input_shape == (1, 56, 56, 256)
    assert any("bn0 + ReLU" in p for p in got.spec["parts"])
    assert not any("BN after the sum" in s["step"] for s in got.stages)
    first = explain("resnetv2_50", "layer2.0", image_size=32, framework=framework)  # timm: stride first
    assert first.worst < 1e-5 and first.spec["stride"] == 2 and first.spec["shortcut"] == "conv_alone"
