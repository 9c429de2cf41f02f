"""`resnext-port --verify` says where two models part: a fault planted in one stage of the target
framework's network is located at that stage, and the CLI prints it and exits 1.

The faults are the classic porting bugs, each planted in one stage of one framework only: the
stride on the 1x1 where the file has it on the 3x3 (ResNet v1 against v1.5), TensorFlow's "same"
padding on a stride-2 conv, and Keras's default BN eps (1e-3) where torch has 1e-5.
"""

import dataclasses

import pytest

import resnext_flax.model as flax_model
import resnext_keras.model as keras_model
from resnext_port.cli import main
from resnext_port.port import port
from resnext_spec import ArchConfig, random_weights, save_checkpoint
from resnext_spec.tolerances import TOL

# Four stages, so a fault in layer2 or layer3 has a stage before and after it.
CONFIG = ArchConfig(layers=(1, 1, 1, 1), cardinality=2, base_width=4, stem="cifar", num_classes=3)
STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "pool", "logits"]


@pytest.fixture
def source(tmp_path):
    save_checkpoint(tmp_path / "src.safetensors", random_weights(CONFIG, "c", 0), CONFIG)
    return tmp_path / "src.safetensors"


def test_an_unfaulted_port_verifies_at_every_stage(source, tmp_path):
    result = port(source, tmp_path / "out.msgpack", verify=True)
    assert list(result.verify_stages) == STAGES and result.verified and result.parted_at is None
    assert max(result.verify_stages.values()) <= TOL


def test_a_stride_on_the_wrong_conv_in_one_stage_is_located_there(source, tmp_path, monkeypatch):
    original = flax_model.Bottleneck.__init__

    def v1_in_layer3(self, b, *args, **kwargs):
        if b.name.startswith("layer3."):
            b = dataclasses.replace(b, stride_on="1x1")
        original(self, b, *args, **kwargs)

    monkeypatch.setattr(flax_model.Bottleneck, "__init__", v1_in_layer3)
    result = port(source, tmp_path / "out.msgpack", verify=True)
    assert result.parted_at == "layer3" and not result.verified
    assert result.verify_stages["layer2"] <= TOL < result.verify_stages["layer3"]


def test_same_padding_on_one_stride_2_conv_is_located_at_its_stage(source, tmp_path, monkeypatch, capsys):
    original = keras_model.Layers.conv

    def same_in_layer2(self, x, filters, kernel, stride, name, groups=1, bias=False):
        if name == "layer2.0.conv2":  # TF's "same" pads a stride-2 3x3 by (0, 1), torch by (1, 1)
            layer = keras_model.GroupedConv2D if groups > 1 else keras_model.layers.Conv2D
            extra = dict(conv_impl=self.conv_impl) if groups > 1 else {}
            return layer(
                filters, kernel, strides=stride, padding="same", use_bias=False, groups=groups,
                name=keras_model.layer_name(name), **extra,
            )(x)  # fmt: skip
        return original(self, x, filters, kernel, stride, name, groups, bias)

    monkeypatch.setattr(keras_model.Layers, "conv", same_in_layer2)
    assert main([str(source), str(tmp_path / "out.weights.h5"), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: they part at layer2" in out and "verify, per stage: stem " in out


def test_bn_eps_changed_in_one_stage_is_located_there(source, tmp_path, monkeypatch):
    original = keras_model.Layers.norm

    def eps_in_layer4(self, name, channels):
        if not name.startswith("layer4."):
            return original(self, name, channels)
        return keras_model.BatchNorm(
            epsilon=1e-3, momentum=0.9, dtype=self.dtype, name=keras_model.layer_name(name)
        )

    monkeypatch.setattr(keras_model.Layers, "norm", eps_in_layer4)
    result = port(source, tmp_path / "out.weights.h5", verify=True)
    assert result.parted_at == "layer4"
    assert all(result.verify_stages[s] <= TOL for s in STAGES[:4])
