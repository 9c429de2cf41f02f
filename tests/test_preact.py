"""Pre-activation ResNets (ResNet v2): timm's resnetv2, keras.applications' V2 and keras-hub's v2.

The block order is proved in every build (three frameworks, three forms) on tiny configs, and in
float64; the libraries' own models, built by each library with random weights and BN statistics,
port with no flags and give that library's logits; each library's published parameter counts are
equal to ours. keras.applications' V2 strides in each stage's last block and pads its stem's
max-pool with zeros: a test sees each (the other choice gives other logits).
"""

import dataclasses

import keras
import numpy as np
import pytest
import torch
from helpers import TINY, TINY_BASIC, batch, import_timm, randomise_keras_bn
from test_variants import BUILDS, LIBS, assert_the_same_function_as_torch_c, build, float64_forms, logits

from resnext_formats.timm_resnetv2 import to_timm
from resnext_port.port import PortError, port, read
from resnext_port.port import logits as port_logits
from resnext_spec import (
    ArchConfig,
    ConfigError,
    canonical_shapes,
    count_params,
    get_config,
    random_weights,
    save_checkpoint,
)
from resnext_spec.config import PREACT_PRESETS
from resnext_spec.layout import plan
from resnext_spec.tolerances import TOL, rel_error
from resnext_torch import randomise_batchnorm

IMAGENET_TINY = dataclasses.replace(TINY, stem="imagenet")
# Every pre-activation field on a tiny config: timm's v2 (stride in the first block, deep stem with
# avg_down, whose projection has no norm), keras.applications' V2 (stride in the last block, its
# shortcut every second pixel, conv biases, zero-padded stem pool), and basic blocks.
PARTS = {
    "v2_deep_avg": dataclasses.replace(
        IMAGENET_TINY, preact=True, stem_type="deep", stem_width=16, avg_down=True
    ),
    "keras_v2": dataclasses.replace(
        IMAGENET_TINY, layers=(2, 2), preact=True, stride_at="last", conv_bias=True, stem_type="fixed"
    ),
    "basic_v2": dataclasses.replace(TINY_BASIC, preact=True, layers=(2, 1)),
}


def keras_count(config: ArchConfig) -> int:
    """Keras's count_params: every variable, BN's moving statistics included (two per channel)."""
    stats = sum(s[0] for n, s in canonical_shapes(config).items() if n.endswith("running_mean"))
    return count_params(config) + 2 * stats


# --- the rules --------------------------------------------------------------------------------------


def test_published_parameter_counts():
    # timm's model cards, and keras.applications' and keras-hub's built models (the issue's figures).
    timm = {"resnetv2_50": 25_549_352, "resnetv2_50d": 25_568_584, "resnetv2_101": 44_541_480}
    assert {n: count_params(get_config(n)) for n in timm} == timm
    keras_apps = {"resnet50v2": 25_613_800, "resnet101v2": 44_675_560, "resnet152v2": 60_380_648}
    assert {n: keras_count(get_config(n)) for n in keras_apps} == keras_apps
    assert keras_count(get_config("resnet50v2", num_classes=0)) == 23_564_800
    assert keras_count(get_config("resnet_v2_50", num_classes=0)) == 23_545_792  # keras-hub, as built


def test_keras_applications_v2_strides_in_each_stages_last_block():
    p = plan(get_config("resnet50v2"))
    strides = [[b.stride for b in stage] for stage in p.stages]
    assert strides == [[1, 1, 2], [1, 1, 1, 2], [1] * 5 + [2], [1, 1, 1]]
    assert [stage[-1].shortcut.kind for stage in p.stages[:3]] == ["pool"] * 3
    assert [stage[0].shortcut.kind for stage in p.stages] == ["conv"] * 4  # every first block projects
    assert all(stage[0].shortcut.stride == 1 for stage in p.stages)
    timm = plan(get_config("resnetv2_50"))  # timm and keras-hub: the first block of stages 2-4
    assert [[b.stride for b in stage][0] for stage in timm.stages] == [1, 2, 2, 2]


def test_a_pre_activation_block_has_its_norm_first_and_none_after_its_last_conv():
    shapes = canonical_shapes(get_config("resnetv2_50"))
    assert shapes["layer1.0.bn0.weight"] == (64,) and shapes["layer2.0.bn0.weight"] == (256,)
    assert "layer1.0.bn3.weight" not in shapes and "bn1.weight" not in shapes  # nor the stem's
    assert "layer1.0.downsample.1.weight" not in shapes  # the projection has no norm either
    assert shapes["norm.weight"] == (2048,)
    keras_v2 = canonical_shapes(get_config("resnet50v2"))
    assert keras_v2["conv1.bias"] == (64,) and keras_v2["layer1.0.conv3.bias"] == (256,)
    assert keras_v2["layer1.0.downsample.0.bias"] == (256,) and "layer1.0.conv2.bias" not in keras_v2


def test_pre_activation_fields_are_checked():
    with pytest.raises(ConfigError, match="conv_bias.*preact=True"):
        ArchConfig(conv_bias=True)
    with pytest.raises(ConfigError, match="preact takes no attn_layer"):
        ArchConfig(preact=True, attn_layer="se")
    with pytest.raises(ConfigError, match="stride_at must be one of"):
        ArchConfig(stride_at="middle")
    with pytest.raises(ConfigError, match="fixed"):
        ArchConfig(stem="cifar", stem_type="fixed")


# --- every build -------------------------------------------------------------------------------------


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("lib, form", BUILDS)
def test_each_pre_activation_part_is_the_same_function_in_every_framework_and_form(part, lib, form):
    config = PARTS[part]
    if config.block == "basic" and form != "c":
        pytest.skip("basic blocks exist in form (c) only")
    assert_the_same_function_as_torch_c(config, lib, form, 19)  # odd sides before every stride


@pytest.mark.parametrize(
    "lib", [pytest.param(k, marks=[pytest.mark.keras] if k == "keras" else []) for k in LIBS]
)
def test_pre_activation_forms_agree_in_float64_to_1e9(lib):
    if lib == "keras" and keras.backend.backend() != "tensorflow":
        pytest.skip("Keras computes float64 faithfully on TensorFlow")
    for cfg in (PARTS["keras_v2"],):  # every v2 part but avg_down, which the variants' float64 test holds
        out = float64_forms(lib, cfg, 19)
        assert rel_error(out["a"], out["c"]) < 1e-9 and rel_error(out["b"], out["c"]) < 1e-9


def test_the_zero_padded_stem_pool_and_the_last_block_stride_each_change_the_function():
    """keras.applications' V2 as ours, against the same weights with either choice undone: a port
    that put the stride first, or padded the stem's pool with -inf, would give other logits."""
    config = PARTS["keras_v2"]
    weights = random_weights(config, "c", seed=5)
    weights["conv1.bias"] = weights["conv1.bias"] - 3.0  # negative stem outputs, where padding shows
    x = batch(config, size=19)[0]
    want = logits("torch", build("torch", config, "c", weights), x)
    for undone in (dict(stem_type=""), dict(stride_at="first")):
        other = dataclasses.replace(config, **undone)
        assert rel_error(logits("torch", build("torch", other, "c", weights), x), want) > 1e-3, undone


# --- timm's resnetv2 ---------------------------------------------------------------------------------

# One timm model of each kind, each written to another file kind and form.
TIMM_KINDS = {
    "resnetv2_50": (".weights.h5", "a"),  # 7x7 stem
    "resnetv2_50t": (".msgpack", "b"),  # tiered deep stem, avg_down
    "resnetv2_18d": (".safetensors", "c"),  # basic blocks, deep stem, avg_down
}


def timm_v2(name: str, seed: int = 0):
    timm = import_timm()
    torch.manual_seed(seed)
    return randomise_batchnorm(timm.create_model(name, layers=(1, 1, 1, 1), num_classes=5).eval())


def timm_logits(model) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)  # as port.logits
    with torch.no_grad():
        return model(torch.from_numpy(x)).double().numpy()


@pytest.mark.parametrize("name", TIMM_KINDS)
def test_a_timm_resnetv2_ports_with_no_flags_and_goes_back_to_timm(tmp_path, name):
    suffix, form = TIMM_KINDS[name]
    model = timm_v2(name)
    torch.save(model.state_dict(), tmp_path / "timm.pth")
    config = dataclasses.replace(get_config(name), layers=(1, 1, 1, 1), num_classes=5)
    result = port(tmp_path / "timm.pth", tmp_path / f"ours{suffix}", to_form=form)
    assert result.config == config and not result.warnings
    ours = read(tmp_path / f"ours{suffix}")
    for each in ("torch", "keras", "flax"):  # the file written, in every framework
        assert rel_error(port_logits(each, ours), timm_logits(model)) <= TOL, each
    port(tmp_path / f"ours{suffix}", tmp_path / "c.safetensors", to_form="c")
    port(tmp_path / "c.safetensors", tmp_path / "back.pth")  # form (c) of a v2: timm's names
    again = timm_v2(name, seed=1)
    again.load_state_dict(torch.load(tmp_path / "back.pth"), strict=True)
    assert rel_error(timm_logits(again), timm_logits(model)) <= TOL


def test_a_timm_resnetv2_hub_folder_ports_by_the_name_it_records(tmp_path):
    model = timm_v2("resnetv2_50d")
    import_timm().models.save_for_hf(
        model, tmp_path / "hub", model_args={"layers": (1, 1, 1, 1)}, safe_serialization=True
    )
    w = read(tmp_path / "hub")
    assert w.config == dataclasses.replace(get_config("resnetv2_50d"), layers=(1, 1, 1, 1), num_classes=5)
    assert any("resnetv2_50d" in n for n in w.notes) and w.warnings == []
    assert rel_error(port_logits("torch", w), timm_logits(model)) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PREACT_PRESETS if n.startswith("resnetv2")])
def test_every_timm_v2_preset_has_timms_tensors_and_count(name):
    """Built on torch's meta device: timm's names (by the map), shapes and count, model by model."""
    timm = import_timm()
    theirs = timm.create_model(name, device="meta")
    state = {
        k: tuple(v.shape) for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    config = get_config(name)
    ours = to_timm({k: np.empty(s, np.float32) for k, s in canonical_shapes(config).items()}, config)
    assert {k: v.shape for k, v in ours.items()} == state
    assert count_params(config) == sum(p.numel() for p in theirs.parameters())


def test_the_porting_table_of_timms_v2_says_what_the_presets_hold():
    """docs/porting.md's table of timm's resnetv2 models: "ported" exactly where a preset of that name
    exists, with its parameter count, and every model timm registers in resnetv2.py is listed."""
    import re
    from pathlib import Path

    from resnext_spec import list_presets

    text = Path(__file__).parent.parent.joinpath("docs/porting.md").read_text()
    text = text[text.index("## timm's ResNetV2") :]
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (ported|refused) \| ?([\d,]*) ?\|$", text, re.M)
    for name, status, count in rows:
        assert (status == "ported") == (name in list_presets()), name
        if status == "ported":
            assert int(count.replace(",", "")) == count_params(get_config(name)), name
    assert {name for name, _, _ in rows} == set(import_timm().list_models(module="resnetv2"))


@pytest.mark.parametrize(
    ("name", "words"), [("resnetv2_50d_evos", "EvoNorm"), ("resnetv2_50d_frn", "FilterResponse")]
)
def test_timms_v2_norms_not_held_are_refused_by_name(tmp_path, name, words):
    timm = import_timm()
    torch.save(timm.create_model(name, layers=(1, 1, 1, 1), num_classes=5).state_dict(), tmp_path / "v2.pth")
    with pytest.raises(PortError, match=words):
        read(tmp_path / "v2.pth")


# --- keras.applications' V2 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_resnet50v2(tmp_path_factory):
    """ResNet50V2 as keras.applications builds it, biases and BN statistics randomised, saved both
    ways Keras saves weights: Keras 3's .weights.h5 and the legacy .h5 its downloads are."""
    model = keras.applications.ResNet50V2(
        weights=None, classes=5, classifier_activation=None, input_shape=(64, 64, 3)
    )
    randomise_keras_bn(model.layers, 0)
    for layer in model.layers:  # the stem's conv: its outputs negative, where the zero padding shows
        if layer.name == "conv1_conv":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, bias - 2.0])
    folder = tmp_path_factory.mktemp("kapps_v2")
    model.save_weights(folder / "resnet50v2.weights.h5")
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(folder / "resnet50v2.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)  # as port.logits
    want = np.asarray(keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False)), np.float64)
    return folder, want


@pytest.mark.parametrize(
    ("file", "suffix", "framework", "form"),
    [
        ("resnet50v2.weights.h5", ".pth", "torch", "c"),
        ("resnet50v2.h5", ".msgpack", "flax", "a"),
        ("resnet50v2.weights.h5", ".weights.h5", "keras", "b"),
    ],
)
def test_a_keras_applications_resnet50v2_ports_with_no_flags_and_gives_its_logits(
    keras_resnet50v2, tmp_path, file, suffix, framework, form
):
    folder, want = keras_resnet50v2
    result = port(folder / file, tmp_path / f"out{suffix}", to_form=form)
    assert result.config == get_config("resnet50v2", num_classes=5)
    assert any("pre-activation" in n and "eps 1.001e-5" in n for n in result.notes)
    back = read(tmp_path / f"out{suffix}")  # a .pth of a v2 is timm's layout, its biases say keras's
    assert back.config == result.config
    assert rel_error(port_logits(framework, back), want) <= TOL


# --- keras-hub's v2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block_type", "depths", "form"), [("bottleneck_block", [2, 1], "a"), ("basic_block", [1, 2], "c")]
)
def test_a_keras_hub_v2_preset_ports_with_no_flags_and_gives_its_logits(tmp_path, block_type, depths, form):
    from test_port_ecosystem import keras_hub_logits, keras_hub_preset

    want = keras_hub_preset(tmp_path / "preset", block_type, depths, preact=True)
    w = read(tmp_path / "preset")
    assert w.config == dataclasses.replace(
        get_config("resnetv2_50" if block_type == "bottleneck_block" else "resnetv2_18"),
        layers=tuple(depths),
        num_classes=5,
    )
    port(tmp_path / "preset", tmp_path / "out.safetensors", to_form=form)
    out = read(tmp_path / "out.safetensors")
    for each in ("torch", "keras", "flax"):
        assert rel_error(port_logits(each, out), want) <= TOL, each
    port(tmp_path / "out.safetensors", tmp_path / "hub", layout="keras-hub")  # back, for keras-hub to load
    assert rel_error(keras_hub_logits(tmp_path / "hub"), want) <= TOL


def test_ours_goes_back_to_keras_applications_own_resnet50v2(keras_resnet50v2, tmp_path):
    """Through Flax form (a) and back out with --layout keras.applications: the file loads into
    keras.applications.ResNet50V2 by its own load_weights and gives the first model's logits."""
    folder, want = keras_resnet50v2
    port(folder / "resnet50v2.weights.h5", tmp_path / "ours.msgpack", to_form="a")
    port(tmp_path / "ours.msgpack", tmp_path / "back.weights.h5", layout="keras.applications")
    model = keras.applications.ResNet50V2(
        weights=None, classes=5, classifier_activation=None, input_shape=(64, 64, 3)
    )
    model.load_weights(tmp_path / "back.weights.h5")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)  # port.logits' batch
    got = np.asarray(keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False)), np.float64)
    assert rel_error(got, want) <= TOL
    timm_v2 = PARTS["v2_deep_avg"]  # a network keras.applications does not build: refused, nothing written
    save_checkpoint(tmp_path / "v2.safetensors", random_weights(timm_v2, "c", 0), timm_v2)
    with pytest.raises(PortError, match="keras.applications builds ResNet50/101/152"):
        port(tmp_path / "v2.safetensors", tmp_path / "no.weights.h5", layout="keras.applications")
    assert not (tmp_path / "no.weights.h5").exists()
