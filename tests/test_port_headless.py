"""Headless checkpoints port with no flags, proved by features against the library that saved them.

Each peer library builds its backbone without a classifier -- timm ``num_classes=0``,
transformers ``ResNetModel`` and ``ResNetBackbone``, keras.applications
``include_top=False`` (both file layouts), a keras-hub ``ResNetBackbone`` preset -- with
random weights and every BN tensor randomised, and saves it its own way. Each file is read
with no flags as a headless model (``num_classes=0``, no ``fc.*``), written in our formats,
and its features equal the library's own (1e-5, relative): pooled features where the library
pools, the last feature map or the stage maps where it gives those.
"""

import h5py
import numpy as np
import pytest
import torch
from helpers import import_timm, randomise_keras_bn

from resnext_port.port import PortError, Weights, outputs, port, read
from resnext_spec import get_config, random_weights, save_checkpoint
from resnext_spec.tolerances import TOL, rel_error
from resnext_torch import randomise_batchnorm

SMALL = dict(layers=(1, 1, 1, 1), cardinality=4, base_width=4)


def batch_nchw(seed: int = 0) -> np.ndarray:
    """The batch ``resnext_port.port.outputs`` feeds our builds (2 images, 64 px)."""
    return np.random.default_rng(seed).standard_normal((2, 3, 64, 64)).astype(np.float32)


def ours(path, framework: str, stride_on: str | None = None) -> dict[str, np.ndarray]:
    """Every stage output of the file at ``path`` in ``framework`` (maps NCHW)."""
    return outputs(framework, read(path, stride_on=stride_on))


@pytest.fixture(scope="module")
def timm_backbone(tmp_path_factory):
    timm = import_timm()
    torch.manual_seed(0)
    model = randomise_batchnorm(timm.create_model("resnext50_32x4d", num_classes=0, **SMALL).eval())
    folder = tmp_path_factory.mktemp("timm0")
    torch.save(model.state_dict(), folder / "backbone.pth")
    timm.models.save_for_hf(model, folder / "hub", model_args=dict(SMALL, num_classes=0))
    x = torch.from_numpy(batch_nchw())
    with torch.no_grad():
        return folder, model(x).double().numpy(), model.forward_features(x).double().numpy()


@pytest.mark.parametrize(
    ("src", "suffix", "framework"), [("backbone.pth", ".msgpack", "flax"), ("hub", ".pth", "torch")]
)
def test_a_timm_num_classes_0_model_ports_headless_and_gives_its_features(
    timm_backbone, tmp_path, src, suffix, framework
):
    folder, pooled, last_map = timm_backbone
    result = port(folder / src, tmp_path / f"out{suffix}", to_form="a" if framework == "flax" else None)
    assert result.config.num_classes == 0 and result.config.cardinality == 4
    assert "fc.weight" not in read(tmp_path / f"out{suffix}", stride_on="3x3").weights
    got = ours(tmp_path / f"out{suffix}", framework, stride_on="3x3")
    assert rel_error(got["pool"], pooled) <= TOL  # timm's forward with num_classes=0
    assert rel_error(got["layer4"], last_map) <= TOL  # timm's forward_features


def test_a_headless_port_verifies_stage_by_stage(timm_backbone, tmp_path):
    folder, _, _ = timm_backbone
    result = port(folder / "backbone.pth", tmp_path / "out.weights.h5", verify=True)
    assert result.verified and list(result.verify_stages) == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "pool",
    ]
    assert result.verify_error == result.verify_stages["pool"] <= TOL


# ---- transformers ---------------------------------------------------------------------------

HF_SMALL = dict(depths=[1, 1], hidden_sizes=[256, 512], embedding_size=64, layer_type="bottleneck")


@pytest.mark.parametrize("suffix", [".weights.h5", pytest.param(".safetensors", marks=pytest.mark.slow)])
def test_a_transformers_resnet_model_ports_headless_and_gives_its_pooled_output(tmp_path, suffix):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = randomise_batchnorm(transformers.ResNetModel(transformers.ResNetConfig(**HF_SMALL)).eval())
    model.save_pretrained(tmp_path / "hf")
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(batch_nchw()))
    result = port(tmp_path / "hf", tmp_path / f"out{suffix}")
    assert result.config.num_classes == 0 and any("headless" in n for n in result.notes)
    got = ours(tmp_path / f"out{suffix}", "keras" if suffix == ".weights.h5" else "torch")
    assert rel_error(got["pool"], out.pooler_output.flatten(1).double().numpy()) <= TOL
    assert rel_error(got["layer2"], out.last_hidden_state.double().numpy()) <= TOL


def test_a_transformers_resnet_backbone_gives_its_stage_maps(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    config = transformers.ResNetConfig(**HF_SMALL, out_features=["stage1", "stage2"])
    model = randomise_batchnorm(transformers.ResNetBackbone(config).eval())
    model.save_pretrained(tmp_path / "hf")
    with torch.no_grad():
        maps = model(pixel_values=torch.from_numpy(batch_nchw())).feature_maps
    port(tmp_path / "hf", tmp_path / "out.msgpack")
    got = ours(tmp_path / "out.msgpack", "flax")
    assert len(maps) == 2
    assert rel_error(got["layer1"], maps[0].double().numpy()) <= TOL
    assert rel_error(got["layer2"], maps[1].double().numpy()) <= TOL


def test_our_headless_resnet_written_as_a_folder_loads_as_a_transformers_resnet_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = get_config("resnet50", num_classes=0)
    weights = random_weights(config, "c", 3)
    save_checkpoint(tmp_path / "ours.safetensors", weights, config)
    port(tmp_path / "ours.safetensors", tmp_path / "hf-out")
    model = transformers.ResNetModel.from_pretrained(tmp_path / "hf-out").eval()
    with torch.no_grad():
        pooled = model(pixel_values=torch.from_numpy(batch_nchw())).pooler_output.flatten(1).double().numpy()
    assert rel_error(pooled, outputs("torch", Weights(weights, config, "c"))["pool"]) <= TOL
    back = read(tmp_path / "hf-out")
    assert back.config == config and all(np.array_equal(back.weights[k], v) for k, v in weights.items())


def test_a_transformers_folder_whose_config_and_weights_disagree_on_the_head_is_refused(tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.ResNetForImageClassification(
        transformers.ResNetConfig(**HF_SMALL, num_labels=3)
    ).save_pretrained(tmp_path / "hf")
    text = (
        (tmp_path / "hf" / "config.json").read_text().replace("ResNetForImageClassification", "ResNetModel")
    )
    (tmp_path / "hf" / "config.json").write_text(text)
    with pytest.raises(PortError, match="the weights hold a classifier"):
        port(tmp_path / "hf", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


# ---- keras.applications and keras-hub -------------------------------------------------------


@pytest.fixture(scope="module")
def keras_notop(tmp_path_factory):
    keras = pytest.importorskip("keras")
    from keras.src.legacy.saving import legacy_h5_format

    model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    randomise_keras_bn(model.layers, 0)
    folder = tmp_path_factory.mktemp("notop")
    model.save_weights(folder / "notop.weights.h5")
    with h5py.File(folder / "notop.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    nhwc = keras.ops.convert_to_numpy(model(batch_nchw().transpose(0, 2, 3, 1), training=False))
    return folder, np.asarray(nhwc, np.float64).transpose(0, 3, 1, 2)


@pytest.mark.parametrize(
    ("src", "suffix", "framework"),
    [("notop.weights.h5", ".pth", "torch"), ("notop.h5", ".weights.h5", "keras")],
)
def test_a_keras_applications_file_without_its_top_ports_headless_and_gives_its_features(
    keras_notop, tmp_path, src, suffix, framework
):
    folder, last_map = keras_notop
    result = port(folder / src, tmp_path / f"out{suffix}", verify=True)
    assert result.config.num_classes == 0 and result.config.stride_on == "1x1"
    assert any("include_top=False" in n for n in result.notes)
    # read back as v1 (stride on the 1x1): a .pth cannot record it, and a note says so
    assert result.verified, result.verify_stages
    assert any("--stride-on 1x1" in n for n in result.notes) == (suffix == ".pth")
    got = ours(tmp_path / f"out{suffix}", framework, stride_on="1x1")
    assert rel_error(got["layer4"], last_map) <= TOL


def test_a_keras_hub_backbone_preset_ports_headless_and_gives_its_features(tmp_path):
    keras = pytest.importorskip("keras")
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128],
        stackwise_num_blocks=[2, 1],
        stackwise_num_strides=[1, 2],
        block_type="bottleneck_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    randomise_keras_bn(backbone.layers, 1)
    backbone.save_to_preset(tmp_path / "preset")
    nhwc = keras.ops.convert_to_numpy(backbone(batch_nchw().transpose(0, 2, 3, 1), training=False))
    result = port(tmp_path / "preset", tmp_path / "out.msgpack", to_form="b")
    assert result.config.num_classes == 0 and any("ResNetBackbone preset" in n for n in result.notes)
    got = ours(tmp_path / "out.msgpack", "flax", stride_on="3x3")
    assert rel_error(got["layer2"], np.asarray(nhwc, np.float64).transpose(0, 3, 1, 2)) <= TOL


# ---- our own formats ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    [".safetensors", *(pytest.param(s, marks=pytest.mark.slow) for s in (".pth", ".weights.h5", ".msgpack"))],
)
def test_a_headless_model_round_trips_through_every_format(tmp_path, suffix):
    config = get_config("resnext26_8x16d", num_classes=0)
    weights = random_weights(config, "c", 1)
    save_checkpoint(tmp_path / "src.safetensors", weights, config)
    result = port(tmp_path / "src.safetensors", tmp_path / f"out{suffix}", verify=True)
    assert result.verified, result.verify_stages
    back = read(tmp_path / f"out{suffix}", stride_on="3x3")
    assert back.config == config and set(back.weights) == set(weights)
    assert all(np.array_equal(back.weights[k], v) for k, v in weights.items())
