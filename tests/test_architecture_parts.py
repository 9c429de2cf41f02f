"""The architecture's parts are open: a part is a spec entry plus one factory per framework.

A toy attention part, defined in this file only (a learned per-channel scale on the block's
output), is registered in the spec and in each framework's table, and then works everywhere
with no other edit: canonical names, counts, all nine builds computing the same function, and
export/import. The average-pooled shortcut (timm's ``avg_down``) is checked the same way, and
against timm's own ResNet-D where timm is installed. Last, every framework starts from
torchvision's initialisation.
"""

import dataclasses

import keras
import numpy as np
import pytest
import torch
from flax import nnx
from helpers import TINY, TINY_1X1, TINY_BASIC, batch, import_timm

import resnext_flax as rf
import resnext_flax.model as flax_model
import resnext_keras as rk
import resnext_keras.model as keras_model
import resnext_torch as rt
import resnext_torch.model as torch_model
from resnext_spec import (
    ArchConfig,
    ConfigError,
    canonical_shapes,
    count_params,
    plan,
    random_weights,
    to_form,
)
from resnext_spec import parts as spec_parts
from resnext_spec.parts import AttentionSpec, LayerSpec
from resnext_spec.tolerances import rel_error

TOL = 1e-5  # the harness's eval tolerance; fp32 logits here differ by reordered sums, ~1e-7
LIBS = {"torch": rt, "keras": rk, "flax": rf}


# --- the toy part: everything it takes, and nothing else -------------------------------------------


def scale_spec(block: str, channels: int, rd_ratio: float) -> AttentionSpec:
    """The spec entry: one layer of kind "scale" holding ``channels`` factors, under ``block.scale``."""
    name = f"{block}.scale"
    return AttentionSpec("scale", name, channels, (LayerSpec(name, "scale", (channels,)),))


class TorchScale(torch.nn.Module):
    def __init__(self, a: AttentionSpec) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(a.channels))

    def forward(self, x):
        return x * self.weight[None, :, None, None]


class KerasScale(keras.layers.Layer):
    def __init__(self, channels: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.weight = self.add_weight(shape=(channels,), initializer="ones", name="weight")

    def call(self, x):
        return x * keras.ops.cast(self.weight, x.dtype)


class FlaxScale(nnx.Module):
    def __init__(self, a: AttentionSpec) -> None:
        self.weight = nnx.Param(np.ones(a.channels, np.float32))

    def __call__(self, x):
        return x * self.weight[...]


@pytest.fixture
def scale_part(monkeypatch):
    """Registers the toy part for one test: the spec entry and one factory per framework."""
    monkeypatch.setitem(spec_parts.ATTENTION, "scale", scale_spec)
    monkeypatch.setitem(torch_model.ATTENTION, "scale", TorchScale)
    monkeypatch.setitem(
        keras_model.ATTENTION,
        "scale",
        lambda f, x, a: KerasScale(a.channels, dtype=f.dtype, name=keras_model.layer_name(a.name))(x),
    )
    monkeypatch.setitem(flax_model.ATTENTION, "scale", lambda a, rngs, **dtypes: FlaxScale(a))


def with_scale(config: ArchConfig) -> ArchConfig:
    return dataclasses.replace(config, attn_layer="scale")


def logits(lib: str, config: ArchConfig, form: str, weights: dict, x_nchw: np.ndarray) -> np.ndarray:
    """Eval-mode logits of one build holding ``weights`` (canonical, form (c)) converted to ``form``."""
    model = LIBS[lib].create_model(config=config, form=form)
    LIBS[lib].import_weights(model, to_form(weights, config, "c", form))
    if lib == "torch":
        with torch.no_grad():
            return model.eval()(torch.tensor(x_nchw)).numpy()
    x = x_nchw.transpose(0, 2, 3, 1)
    if lib == "keras":
        return keras.ops.convert_to_numpy(model(x, training=False))
    model.eval()
    return np.asarray(model(x))


BUILDS = [
    pytest.param(lib, form, marks=[pytest.mark.keras] if lib == "keras" else [])
    for lib in LIBS
    for form in "abc"
]


def test_an_unregistered_part_is_refused_by_name():
    with pytest.raises(ConfigError, match="attn_layer must be one of"):
        ArchConfig(attn_layer="scale")


def test_the_toy_part_gets_canonical_names_and_counts_from_its_spec_entry(scale_part):
    config = with_scale(TINY)
    for form in "abc":
        shapes = canonical_shapes(config, form)
        added = {n: s for n, s in shapes.items() if n.endswith(".scale.weight")}
        # One scale per block, of its output channels, in every form; the rest is TINY unchanged.
        assert added == {f"{b.name}.scale.weight": (b.out_channels,) for b in plan(TINY).blocks}
        assert {n: s for n, s in shapes.items() if n not in added} == canonical_shapes(TINY, form)
    assert count_params(config) == count_params(TINY) + sum(b.out_channels for b in plan(TINY).blocks)


@pytest.mark.parametrize("lib, form", BUILDS)
def test_the_toy_part_works_in_every_framework_and_form_with_no_other_edit(scale_part, lib, form):
    config = with_scale(TINY)
    weights = random_weights(config, "c", seed=5)  # the scales drawn in [0.5, 1.5], not left at 1
    x = batch(config)[0]
    want = logits("torch", config, "c", weights, x)
    got = logits(lib, config, form, weights, x)
    assert rel_error(got, want) < TOL
    # The part acts: the same weights without it give other logits.
    plain = {k: v for k, v in weights.items() if ".scale." not in k}
    assert rel_error(logits("torch", TINY, "c", plain, x), want) > 1e-2
    # It is counted, exported and imported like any other layer.
    model = LIBS[lib].create_model(config=config, form=form)
    assert LIBS[lib].count_params(model) == count_params(config)
    exported = LIBS[lib].export_weights(model)
    assert list(exported) == list(canonical_shapes(config, form))
    mine = to_form(weights, config, "c", form)
    LIBS[lib].import_weights(model, mine)
    assert all(np.array_equal(v, mine[k]) for k, v in LIBS[lib].export_weights(model).items())


# --- the average-pooled shortcut (ResNet-D), a part of the spec's own vocabulary ----------------------

AVG_CONFIGS = [dataclasses.replace(c, avg_down=True) for c in (TINY, TINY_1X1, TINY_BASIC)]
AVG_IDS = ["tiny_avg", "tiny_1x1_avg", "tiny_basic_avg"]


def test_avg_down_names_its_conv_and_norm_after_the_pools_slot_as_timm_does():
    shapes = canonical_shapes(AVG_CONFIGS[0])
    # layer1.0 projects at stride 1 (channels change), layer2.0 at stride 2: both keep slot 0 empty.
    for block in ("layer1.0", "layer2.0"):
        assert f"{block}.downsample.1.weight" in shapes and f"{block}.downsample.2.running_var" in shapes
        assert f"{block}.downsample.0.weight" not in shapes
    assert count_params(AVG_CONFIGS[0]) == count_params(TINY)  # a pool has no parameters


@pytest.mark.parametrize("config", AVG_CONFIGS, ids=AVG_IDS)
@pytest.mark.parametrize("lib, form", BUILDS)
def test_avg_down_is_the_same_function_in_every_build_on_odd_sizes(config, lib, form):
    if config.block == "basic" and form != "c":
        pytest.skip("basic blocks exist in form (c) only")
    weights = random_weights(config, "c", seed=2)
    # 19 px: every strided stage sees an odd side, where ceil mode and the uncounted padding matter.
    x = batch(config, size=19)[0]
    want = logits("torch", config, "c", weights, x)
    assert rel_error(logits(lib, config, form, weights, x), want) < TOL
    # and the pool is really there: the plain projection with the same tensors differs.
    plain = dataclasses.replace(config, avg_down=False)
    renamed = {
        k.replace("downsample.1.", "downsample.0.").replace("downsample.2.", "downsample.1."): v
        for k, v in weights.items()
    }
    assert rel_error(logits("torch", plain, "c", renamed, x), want) > 1e-3


def test_avg_down_matches_timms_resnet_d_block():
    """timm's own ResNet with ``avg_down=True`` (ResNet-D's shortcut) computes our function."""
    timm = import_timm()
    from timm.models.resnet import Bottleneck, ResNet

    # timm strides on the 3x3, and its 7x7 stem is 64 wide (its stem_width sizes deep stems only).
    config = ArchConfig(layers=(1, 1, 1, 1), cardinality=2, base_width=8, num_classes=7, avg_down=True)
    theirs = ResNet(
        Bottleneck,
        list(config.layers),
        num_classes=config.num_classes,
        cardinality=config.cardinality,
        base_width=config.base_width,
        avg_down=True,
    ).eval()
    assert timm is not None
    weights = random_weights(config, "c", seed=4)
    state = {k: torch.tensor(v) for k, v in weights.items()}
    theirs.load_state_dict(state, strict=False)
    missing = set(theirs.state_dict()) - set(state)
    assert all(k.endswith("num_batches_tracked") for k in missing)
    x = batch(config, size=21)[0]
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    assert rel_error(logits("torch", config, "c", weights, x), want) < TOL


# --- every framework starts from torchvision's initialisation -----------------------------------------


@pytest.mark.parametrize(
    "lib", [pytest.param(k, marks=[pytest.mark.keras] if k == "keras" else []) for k in LIBS]
)
def test_every_framework_starts_from_torchvisions_initialisation(lib):
    """Convs He-normal on fan-out, BN the identity, the classifier U(+-1/sqrt(in)) as nn.Linear draws it."""
    config = dataclasses.replace(TINY, num_classes=200)
    w = LIBS[lib].export_weights(LIBS[lib].create_model(config=config))
    for name, value in w.items():
        if name.endswith(".weight") and value.ndim == 4 and value.size >= 4096:
            o, _, kh, kw = value.shape
            assert abs(value.std() / np.sqrt(2.0 / (o * kh * kw)) - 1) < 0.1, name
            assert abs(value.mean()) < 0.1 * value.std(), name
    bn = [n.rsplit(".", 1)[0] for n in w if n.endswith("running_var")]
    for n in bn:
        assert np.all(w[f"{n}.weight"] == 1) and np.all(w[f"{n}.bias"] == 0), n
        assert np.all(w[f"{n}.running_mean"] == 0) and np.all(w[f"{n}.running_var"] == 1), n
    bound = 1 / np.sqrt(w["fc.weight"].shape[1])
    for t in ("fc.weight", "fc.bias"):
        assert np.abs(w[t]).max() <= bound
    # uniform on [-b, b] has std b/sqrt(3); a normal or Glorot draw of this size would not fit both.
    assert abs(w["fc.weight"].std() / (bound / np.sqrt(3)) - 1) < 0.1
    assert np.abs(w["fc.bias"]).max() > 0.5 * bound  # drawn, not zeros
