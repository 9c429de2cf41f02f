"""GroupNorm and weight-standardised convolutions: timm's ``*_gn`` models and BiT.

Weight standardisation is checked against its formula written out here in numpy, in each
framework; GroupNorm networks run in every build (a path holds its share of the 32 groups, so
a ≡ b ≡ c holds where the groups split among the paths, and is refused where they do not);
timm's own GroupNorm and BiT models, built by timm with random weights, port with no flags and
give timm's logits, and go back into timm.
"""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import TINY, import_timm
from test_variants import BUILDS, LIBS, assert_the_same_function_as_torch_c, float64_forms

from resnext_port.port import logits as port_logits
from resnext_port.port import port, read
from resnext_spec import ArchConfig, ConfigError, canonical_shapes, count_params, get_config
from resnext_spec.tolerances import TOL, rel_error

# Widths that split into 32 groups: the post-activation ResNeXt of timm's resnet50_gn kind at C=4
# (8 groups a path), BiT's block order at C=2 with a widened stage, and BiT's basic block.
PARTS = {
    "gn": dataclasses.replace(TINY, base_width=8, stem_width=32, norm_type="group"),
    "bit": ArchConfig(
        layers=(1, 2),
        cardinality=2,
        base_width=16,
        num_classes=5,
        stem_width=32,
        preact=True,
        norm_type="group",
        std_conv=True,
        stem_type="fixed",
    ),  # fmt: skip
    "bit_x2_basic": ArchConfig(
        block="basic",
        layers=(1, 1),
        num_classes=5,
        stem_width=64,
        width_factor=2,
        preact=True,
        norm_type="group",
        std_conv=True,
        stem_type="fixed",
    ),  # fmt: skip
}


def standardised_by_hand(w: np.ndarray) -> np.ndarray:
    """BiT's standardisation of an OIHW kernel: each output filter minus its mean over (in, kh, kw),
    over the square root of its biased variance there plus 1e-8."""
    out = np.empty_like(w, dtype=np.float64)
    for o in range(w.shape[0]):
        f = w[o].astype(np.float64)
        out[o] = (f - f.mean()) / np.sqrt(((f - f.mean()) ** 2).mean() + 1e-8)
    return out


def test_weight_standardisation_follows_its_formula_in_every_framework():
    import jax.numpy as jnp
    import keras

    from resnext_flax.grouped_conv import standardised as flax_standardised
    from resnext_keras.model import standardised as keras_standardised
    from resnext_torch.model import StdConv2d

    rng = np.random.default_rng(0)
    w = rng.normal(0.3, 2.0, (6, 4, 3, 3)).astype(np.float32)  # OIHW, off zero mean and unit variance
    want = standardised_by_hand(w)
    hwio = w.transpose(2, 3, 1, 0)
    got_keras = keras.ops.convert_to_numpy(keras_standardised(keras.ops.convert_to_tensor(hwio)))
    got_flax = np.asarray(flax_standardised(jnp.asarray(hwio)))
    for got in (got_keras, got_flax):
        assert rel_error(got.transpose(3, 2, 0, 1), want) < 1e-6
    conv = StdConv2d(4, 6, 3, padding=1, bias=False)
    conv.weight.data = torch.from_numpy(w)
    x = torch.from_numpy(rng.standard_normal((1, 4, 5, 5)).astype(np.float32))
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(x, torch.from_numpy(want.astype(np.float32)), padding=1)
        assert rel_error(conv(x).numpy(), expected.numpy()) < 1e-6
    assert np.array_equal(conv.state_dict()["weight"].numpy(), w)  # the raw kernel is the parameter


def test_a_group_norm_has_no_running_statistics_and_its_paths_share_the_groups():
    config = PARTS["gn"]
    shapes = canonical_shapes(config, "a")
    assert "layer1.0.paths.0.bn1.weight" in shapes and not any("running" in n for n in shapes)
    assert count_params(config) == count_params(dataclasses.replace(config, norm_type="batch"))
    bit = get_config("resnetv2_50x3_bit")  # x3: every width three times resnetv2_50's
    assert canonical_shapes(bit)["layer4.2.conv3.weight"] == (3 * 2048, 3 * 512, 1, 1)


def test_what_the_norms_cannot_split_is_refused():
    from resnext_torch import create_model

    with pytest.raises(ConfigError, match="32 groups do not split"):
        create_model(config=dataclasses.replace(PARTS["gn"], cardinality=3, base_width=32), form="b")
    with pytest.raises(ConfigError, match="only forms 'b' and 'c'"):
        create_model(config=PARTS["bit"], form="a")
    with pytest.raises(ConfigError, match="divisible by 32"):
        create_model(config=dataclasses.replace(TINY, norm_type="group"))  # 16 channels
    with pytest.raises(ConfigError, match="std_conv takes no attn_layer"):
        ArchConfig(std_conv=True, attn_layer="se")


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("lib, form", BUILDS)
def test_each_norm_part_is_the_same_function_in_every_framework_and_form(part, lib, form):
    config = PARTS[part]
    if (config.block == "basic" and form != "c") or (config.std_conv and form == "a"):
        pytest.skip("a form this config does not have (refused above)")
    assert_the_same_function_as_torch_c(config, lib, form, 19)


@pytest.mark.parametrize(
    "lib", [pytest.param(k, marks=[pytest.mark.keras] if k == "keras" else []) for k in LIBS]
)
def test_group_norm_forms_agree_in_float64_to_1e9(lib):
    import keras

    if lib == "keras" and keras.backend.backend() != "tensorflow":
        pytest.skip("Keras computes float64 faithfully on TensorFlow")
    out = float64_forms(lib, PARTS["gn"], 19)
    assert rel_error(out["a"], out["c"]) < 1e-9 and rel_error(out["b"], out["c"]) < 1e-9


# --- timm's models -----------------------------------------------------------------------------------


def timm_model(name: str, seed: int = 0):
    """timm's model, one block a stage, GroupNorm's affine tensors drawn away from 1 and 0."""
    timm = import_timm()
    torch.manual_seed(seed)
    if name.endswith("_bit"):  # timm's BiT builders fix their depths; its own helper takes them
        from timm.models.resnetv2 import _create_resnetv2_bit

        k = int(name.split("x")[1][0])
        model = _create_resnetv2_bit(name, layers=[1, 1, 1, 1], width_factor=k, num_classes=5)
    else:
        model = timm.create_model(name, layers=(1, 1, 1, 1), num_classes=5)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.GroupNorm):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.5, 0.5, generator=g)
    return model.eval()


def timm_logits(model) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)  # as port.logits
    with torch.no_grad():
        return model(torch.from_numpy(x)).double().numpy()


@pytest.mark.parametrize(
    ("name", "framework", "form"),
    [
        ("resnet50_gn", "keras", "a"),
        ("resnetv2_50d_gn", "flax", "a"),
        ("resnetv2_50x1_bit", "flax", "b"),
        ("resnetv2_50x3_bit", "torch", "c"),  # three times as wide: torch's eager run is the cheap one
    ],
)
def test_timms_group_norm_and_bit_models_port_with_no_flags_and_go_back(tmp_path, name, framework, form):
    model = timm_model(name)
    torch.save(model.state_dict(), tmp_path / "timm.pth")
    suffix = {"torch": ".safetensors", "keras": ".weights.h5", "flax": ".msgpack"}[framework]
    result = port(tmp_path / "timm.pth", tmp_path / f"ours{suffix}", to_form=form)
    preset = get_config(name)
    assert result.config == dataclasses.replace(preset, layers=(1, 1, 1, 1), num_classes=5)
    if preset.std_conv:  # not in the tensors: said
        assert any("weight standardisation" in n for n in result.notes)
    assert rel_error(port_logits(framework, read(tmp_path / f"ours{suffix}")), timm_logits(model)) <= TOL
    port(tmp_path / f"ours{suffix}", tmp_path / "back.pth", to_form="c")
    again = timm_model(name, seed=1)
    again.load_state_dict(torch.load(tmp_path / "back.pth"), strict=True)
    assert rel_error(timm_logits(again), timm_logits(model)) <= TOL
