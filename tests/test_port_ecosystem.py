"""Checkpoints of other libraries port with no flags, proved by logits against that library itself.

Hugging Face ``transformers``: a ResNetForImageClassification with random weights and
random BN statistics, saved by ``save_pretrained``, is read with no flags into torch,
Keras and Flax builds (forms a and c); each build's logits equal transformers' own
(1e-5, relative). Our ResNets written as a model directory load with
``from_pretrained`` and give our logits. What transformers cannot hold is refused.
"""

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch
from helpers import randomise_keras_bn

from resnext_port.port import PortError, Weights, logits, port, read
from resnext_spec import ArchConfig, get_config, random_weights, save_checkpoint
from resnext_spec.tolerances import TOL, rel_error
from resnext_torch import randomise_batchnorm

transformers = pytest.importorskip("transformers")

# The smallest transformers ResNet our ArchConfig holds: bottleneck, stem 64, widths 256 and 512.
HF_SMALL = dict(
    depths=[1, 1], hidden_sizes=[256, 512], embedding_size=64, layer_type="bottleneck", num_labels=5
)


def hf_model(downsample_in_bottleneck: bool, seed: int = 0):
    config = transformers.ResNetConfig(**HF_SMALL, downsample_in_bottleneck=downsample_in_bottleneck)
    torch.manual_seed(seed)
    model = transformers.ResNetForImageClassification(config).eval()
    return randomise_batchnorm(model)


def hf_logits(model, seed: int = 0) -> np.ndarray:
    """transformers' logits of the batch ``resnext_port.port.logits`` feeds our builds (2 images, 64 px)."""
    x = np.random.default_rng(seed).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        return model(pixel_values=torch.from_numpy(x)).logits.double().numpy()


@pytest.fixture(scope="module", params=[False, True], ids=["stride-3x3", "stride-1x1"])
def hf_dir(request, tmp_path_factory):
    model = hf_model(request.param)
    folder = tmp_path_factory.mktemp("hf") / "resnet"
    model.save_pretrained(folder)
    return folder, hf_logits(model), request.param


@pytest.mark.parametrize(
    ("suffix", "framework"), [(".pth", "torch"), (".weights.h5", "keras"), (".msgpack", "flax")]
)
@pytest.mark.parametrize("form", ["c", "a"])
def test_a_transformers_resnet_ports_with_no_flags_and_gives_its_logits(
    hf_dir, tmp_path, suffix, framework, form
):
    folder, expected, v1 = hf_dir
    result = port(folder, tmp_path / f"out{suffix}", to_form=form)
    assert result.config.stride_on == ("1x1" if v1 else "3x3")  # read from downsample_in_bottleneck
    assert any("Hugging Face" in n for n in result.notes)
    # a .pth has no metadata: its stride placement is said, as a user of a v1 file would
    got = logits(framework, read(tmp_path / f"out{suffix}", stride_on=result.config.stride_on))
    assert rel_error(got, expected) <= TOL


def test_our_resnet_written_as_a_model_directory_loads_with_from_pretrained(tmp_path):
    config = ArchConfig(layers=(1, 1), num_classes=5, stride_on="1x1")
    weights = random_weights(config, "c", 3)
    save_checkpoint(tmp_path / "ours.safetensors", weights, config)
    port(tmp_path / "ours.safetensors", tmp_path / "hf-out")
    model = transformers.ResNetForImageClassification.from_pretrained(tmp_path / "hf-out").eval()
    assert model.config.downsample_in_bottleneck is True
    assert rel_error(hf_logits(model), logits("torch", Weights(weights, config, "c"))) <= TOL
    assert rel_error(read(tmp_path / "hf-out").weights["fc.weight"], weights["fc.weight"]) == 0
    with pytest.raises(PortError, match="has the stride on the 1x1, not 3x3"):
        read(tmp_path / "hf-out", stride_on="3x3")  # the config says where; a contrary flag is an error
    port(tmp_path / "ours.safetensors", tmp_path / "plain.pth")
    assert any("pass --stride-on 1x1" in n for n in read(tmp_path / "plain.pth").notes)  # shapes cannot say


# A tiny transformers ResNet as tests and small models build them: any stage widths, any stem width.
NARROW = [
    dict(depths=[1, 1, 1, 1], hidden_sizes=[32, 64, 128, 256], embedding_size=32, layer_type="bottleneck"),
    dict(depths=[1, 2], hidden_sizes=[24, 40], embedding_size=16, layer_type="basic"),
]


@pytest.mark.parametrize("hf", NARROW, ids=["bottleneck", "basic"])
def test_a_narrow_transformers_resnet_ports_into_every_framework_and_back(tmp_path, hf):
    torch.manual_seed(1)
    model = randomise_batchnorm(
        transformers.ResNetForImageClassification(transformers.ResNetConfig(**hf, num_labels=3))
    )
    model.eval().save_pretrained(tmp_path / "hf")
    expected = hf_logits(model)
    planes = [w // (4 if hf["layer_type"] == "bottleneck" else 1) for w in hf["hidden_sizes"]]
    for suffix, framework in ((".pth", "torch"), (".weights.h5", "keras"), (".msgpack", "flax")):
        result = port(tmp_path / "hf", tmp_path / f"out{suffix}")
        assert (result.config.channels, result.config.stem_width) == (tuple(planes), hf["embedding_size"])
        got = logits(framework, read(tmp_path / f"out{suffix}", stride_on="3x3"))
        assert rel_error(got, expected) <= TOL, framework
    # a bare state_dict of it says its widths in its shapes, and back to transformers it goes
    assert read(tmp_path / "out.pth", stride_on="3x3").config.channels == tuple(planes)
    port(tmp_path / "out.pth", tmp_path / "hf-back", stride_on="3x3")
    back = transformers.ResNetForImageClassification.from_pretrained(tmp_path / "hf-back").eval()
    np.testing.assert_array_equal(hf_logits(back), expected)


def test_what_transformers_cannot_hold_is_refused_by_name(tmp_path):
    resnext = ArchConfig(layers=(1, 1), cardinality=4, base_width=4, num_classes=5)
    save_checkpoint(tmp_path / "x.safetensors", random_weights(resnext, "c", 0), resnext)
    with pytest.raises(PortError, match="no grouped convolutions"):
        port(tmp_path / "x.safetensors", tmp_path / "hf-x")
    assert not (tmp_path / "hf-x").exists()
    for fields, words in ((dict(attn_layer="se"), "attn_layer='se'"), (dict(preact=True), "preact=True")):
        variant = ArchConfig(layers=(1, 1), num_classes=5, **fields)  # a ResNet, but not transformers'
        save_checkpoint(tmp_path / "v.safetensors", random_weights(variant, "c", 0), variant)
        with pytest.raises(PortError, match=words):
            port(tmp_path / "v.safetensors", tmp_path / "hf-v", force=True)
        assert not (tmp_path / "hf-v").exists()
    odd = transformers.ResNetConfig(**{**HF_SMALL, "hidden_sizes": [130, 256]})  # 130 planes / 4
    transformers.ResNetForImageClassification(odd).save_pretrained(tmp_path / "odd")
    with pytest.raises(PortError, match=r"hidden_sizes \[130, 256\] \(one per stage, each a multiple"):
        read(tmp_path / "odd")
    transformers.ResNetForImageClassification(transformers.ResNetConfig(**HF_SMALL)).save_pretrained(
        tmp_path / "hf"
    )
    with pytest.raises(PortError, match="port its folder"):  # the file alone cannot say where the stride is
        read(tmp_path / "hf" / "model.safetensors")


# keras.applications: ResNet50 v1 with conv biases and BN eps 1.001e-5, saved by save_weights.
@pytest.fixture(scope="module")
def keras_resnet50(tmp_path_factory):
    keras = pytest.importorskip("keras")
    model = keras.applications.ResNet50(
        weights=None, classes=5, classifier_activation=None, input_shape=(64, 64, 3)
    )
    randomise_keras_bn(model.layers, 0)  # biases and BN statistics away from 0 and 1: the folding counts
    folder = tmp_path_factory.mktemp("kapps")
    model.save_weights(folder / "resnet50.weights.h5")
    # The legacy layout the downloadable keras.applications files have, by Keras's own legacy writer
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(folder / "resnet50.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)  # as port.logits
    return folder, np.asarray(
        keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False)), np.float64
    )


@pytest.mark.parametrize(
    ("suffix", "framework", "form"),
    [
        (".pth", "torch", "c"),
        (".weights.h5", "keras", "c"),
        (".msgpack", "flax", "a"),
    ],
)
def test_a_keras_applications_resnet50_ports_with_no_flags_and_gives_its_logits(
    keras_resnet50, tmp_path, suffix, framework, form
):
    folder, expected = keras_resnet50
    result = port(folder / "resnet50.weights.h5", tmp_path / f"out{suffix}", to_form=form)
    assert result.config.stride_on == "1x1" and result.config.layers == (3, 4, 6, 3)
    assert any("folded" in n and "momentum" in n for n in result.notes)  # what is exact and what is not
    got = logits(framework, read(tmp_path / f"out{suffix}", stride_on="1x1"))
    assert rel_error(got, expected) <= TOL


def test_a_legacy_keras_applications_h5_ports_with_no_flags_and_gives_its_logits(keras_resnet50, tmp_path):
    folder, expected = keras_resnet50
    result = port(folder / "resnet50.h5", tmp_path / "out.safetensors")
    assert result.config.stride_on == "1x1" and result.config.layers == (3, 4, 6, 3)
    assert rel_error(logits("torch", read(tmp_path / "out.safetensors")), expected) <= TOL
    with pytest.raises(PortError, match="read, not written"):
        port(tmp_path / "out.safetensors", tmp_path / "back.h5")
    assert not (tmp_path / "back.h5").exists()


def test_ours_goes_back_to_keras_applications_own_resnet50(keras_resnet50, tmp_path):
    """v1 with --layout keras.applications: its conv biases were folded into the BN means, so they come
    back as zeros and the means as they are; keras.applications.ResNet50 loads the file itself."""
    keras = pytest.importorskip("keras")
    folder, expected = keras_resnet50
    port(folder / "resnet50.weights.h5", tmp_path / "ours.safetensors")
    port(tmp_path / "ours.safetensors", tmp_path / "back.weights.h5", layout="keras.applications")
    model = keras.applications.ResNet50(
        weights=None, classes=5, classifier_activation=None, input_shape=(64, 64, 3)
    )
    model.load_weights(tmp_path / "back.weights.h5")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)  # port.logits' batch
    got = np.asarray(keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False)), np.float64)
    assert rel_error(got, expected) <= TOL


# keras-hub: a ResNetImageClassifier preset (save_to_preset), read without keras-hub.
def keras_hub_preset(folder, block_type: str, depths: list[int], preact: bool = False):
    keras = pytest.importorskip("keras")
    keras_hub = pytest.importorskip("keras_hub")
    vd = block_type.endswith("_vd")  # ResNet-D: its 32-32-64 stem of 3x3 convs
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[32, 32, 64] if vd else [64],
        input_conv_kernel_sizes=[3, 3, 3] if vd else [7],
        stackwise_num_filters=[64 * 2**s for s in range(len(depths))],
        stackwise_num_blocks=depths,
        stackwise_num_strides=[1] + [2] * (len(depths) - 1),
        block_type=block_type,
        use_pre_activation=preact,
        image_shape=(None, None, 3),
    )
    task = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=5, activation=None)
    randomise_keras_bn(backbone.layers, 1)
    task.save_to_preset(folder)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)  # as port.logits
    return np.asarray(keras.ops.convert_to_numpy(task(x.transpose(0, 2, 3, 1), training=False)), np.float64)


def keras_hub_logits(folder) -> np.ndarray:
    """The logits keras-hub's own classifier, loaded by from_preset, gives port.logits' batch."""
    keras = pytest.importorskip("keras")
    keras_hub = pytest.importorskip("keras_hub")
    task = keras_hub.models.ResNetImageClassifier.from_preset(str(folder))
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    return np.asarray(keras.ops.convert_to_numpy(task(x.transpose(0, 2, 3, 1), training=False)), np.float64)


@pytest.mark.parametrize(
    ("block_type", "depths", "suffix", "framework", "form"),
    [("bottleneck_block", [2, 1], ".msgpack", "flax", "a"), ("basic_block", [1, 2], ".pth", "torch", "c")],
)
def test_a_keras_hub_resnet_preset_ports_with_no_flags_and_gives_its_logits(
    tmp_path, block_type, depths, suffix, framework, form
):
    expected = keras_hub_preset(tmp_path / "preset", block_type, depths)
    result = port(tmp_path / "preset", tmp_path / f"out{suffix}", to_form=form)
    assert result.config.layers == tuple(depths) and any("keras-hub" in n for n in result.notes)
    got = logits(framework, read(tmp_path / f"out{suffix}", stride_on="3x3"))
    assert rel_error(got, expected) <= TOL


@pytest.mark.parametrize(
    ("block_type", "depths", "preset", "builds"),
    [
        ("basic_block_vd", [2, 2, 2, 2], "resnet_vd_18", [("torch", "c"), ("flax", "c")]),
        ("bottleneck_block_vd", [1, 1, 1, 1], "resnet50d", [("keras", "a"), ("flax", "b")]),
    ],
)
def test_a_keras_hub_vd_preset_ports_into_every_framework_and_back_at_its_logits(
    tmp_path, block_type, depths, preset, builds
):
    """keras-hub's resnet_vd_18 (its first block projects, timm's resnet18d does not) and the
    bottleneck_block_vd of its resnet_vd_50 (timm's resnet50d), one block a stage, built by
    keras-hub with 5 classes. (test_variants holds every vd preset to keras-hub's published size.)"""
    expected = keras_hub_preset(tmp_path / "preset", block_type, depths)
    w = read(tmp_path / "preset")
    assert w.config == dataclasses.replace(get_config(preset), layers=tuple(depths), num_classes=5)
    for framework, form in builds:
        suffix = {"torch": ".pth", "keras": ".weights.h5", "flax": ".msgpack"}[framework]
        port(tmp_path / "preset", tmp_path / f"{framework}{suffix}", to_form=form)
        back = read(tmp_path / f"{framework}{suffix}", stride_on="3x3")
        assert rel_error(logits(framework, back), expected) <= TOL
        port(tmp_path / f"{framework}{suffix}", tmp_path / f"{framework}_back.safetensors", to_form="c")
        again = read(tmp_path / f"{framework}_back.safetensors")
        assert all(np.array_equal(again.weights[k], w.weights[k]) for k in w.weights)
    # and back out as a keras-hub preset, which keras-hub itself loads
    port(tmp_path / f"{framework}{suffix}", tmp_path / "hub", layout="keras-hub")
    assert rel_error(keras_hub_logits(tmp_path / "hub"), expected) <= TOL


def test_what_a_keras_hub_preset_holds_that_we_cannot_is_refused_by_name(tmp_path):
    keras_hub_preset(tmp_path / "vd", "bottleneck_block_vd", [1, 1])
    config = json.loads((tmp_path / "vd" / "config.json").read_text())
    config["config"]["use_pre_activation"] = True  # keras-hub itself cannot build this one
    (tmp_path / "vd" / "config.json").write_text(json.dumps(config))
    with pytest.raises(PortError, match="use_pre_activation True"):
        read(tmp_path / "vd")
    config["config"] |= {"use_pre_activation": False, "stackwise_num_strides": [1, 1]}
    (tmp_path / "vd" / "config.json").write_text(json.dumps(config))
    with pytest.raises(PortError, match="stackwise_num_strides"):
        read(tmp_path / "vd")
    resnext = ArchConfig(layers=(1, 1), cardinality=4, base_width=4, num_classes=5)  # none of keras-hub's
    save_checkpoint(tmp_path / "x.safetensors", random_weights(resnext, "c", 0), resnext)
    with pytest.raises(PortError, match="keras-hub's ResNetBackbone has no such network"):
        port(tmp_path / "x.safetensors", tmp_path / "hub-x", layout="keras-hub")
    assert not (tmp_path / "hub-x").exists()
