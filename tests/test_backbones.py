"""Backbones: headless models, features and per-stage outputs are the same function in all nine builds.

The reference is torch form (c) with the same canonical weights (BN randomised); shapes and
strides are checked against the input size, counts against the layer arithmetic, and the
features against the full classifier's own pooled features.
"""

import warnings

import keras
import numpy as np
import pytest
import torch
from helpers import TINY, TINY_1X1, TINY_BASIC, batch

import resnext_flax as rf
import resnext_keras as rk
import resnext_torch as rt
from resnext_spec import (
    ConfigError,
    HeadLeftOutWarning,
    WeightsMismatchError,
    canonical_shapes,
    count_params,
    feature_info,
    get_config,
    random_weights,
    stage_names,
)
from resnext_spec.tolerances import rel_error

TOL = 1e-5  # the harness's eval tolerance; fp32 stage outputs measured at most 1.5e-6 here
CONFIGS = [TINY, TINY_1X1, TINY_BASIC]


def headless(config):
    import dataclasses

    return dataclasses.replace(config, num_classes=0)


def torch_reference(config, form="c", seed=3):
    """torch (c) with seeded weights and BN randomised, eval mode, and its canonical weights."""
    weights = random_weights(config, "c", seed=seed)
    model = rt.create_model(config=config, form="c")
    rt.import_weights(model, weights)
    return model.eval(), weights


def reference_stages(config, form):
    """torch (c)'s output at every stage point for the tests' batch (maps NHWC), the canonical weights
    in ``form``, and the batch (NHWC): what a Keras or Flax build of ``form`` must reproduce."""
    if config.block == "basic" and form != "c":
        pytest.skip("basic blocks exist in form (c) only")
    ref, weights = torch_reference(config)
    x = batch(config)[0]
    with torch.no_grad():
        want = {k: nhwc(v) for k, v in ref.forward_stages(torch.tensor(x)).items()}
    return want, _to_form(weights, config, form), x.transpose(0, 2, 3, 1)


def nhwc(a):
    a = np.asarray(a)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def test_a_headless_model_has_no_classifier_and_counts_its_parameters_without_it():
    for name in ("resnet50", "resnext50_32x4d", "resnext29_8x64d"):
        full, bare = get_config(name), headless(get_config(name))
        shapes = canonical_shapes(bare)
        assert set(canonical_shapes(full)) - set(shapes) == {"fc.weight", "fc.bias"}
        features = 2048 if full.stem == "imagenet" else 1024
        assert count_params(bare) == count_params(full) - (features * full.num_classes + full.num_classes)
    assert count_params(headless(get_config("resnet50"))) == 23_508_032  # torchvision's resnet50, fc removed
    model = rt.create_model("resnet18", num_classes=0)
    assert rt.count_params(model) == 11_689_512 - (512 * 1000 + 1000)


@pytest.mark.parametrize("config", CONFIGS, ids=["tiny", "tiny_1x1", "tiny_basic"])
def test_feature_info_gives_each_stage_its_channels_and_stride(config):
    model = rt.create_model(config=config, features_only=True).eval()
    size = 32
    outs = model(torch.zeros(1, config.in_channels, size, size))
    info = feature_info(config)
    assert [o.shape[1] for o in outs] == [i.num_chs for i in info]
    assert [size // o.shape[-1] for o in outs] == [i.reduction for i in info]
    stem_reduction = 4 if config.stem == "imagenet" else 1
    assert [i.reduction for i in info] == [stem_reduction * 2**s for s in range(len(config.layers))]


def test_imagenet_stages_have_strides_4_8_16_32():
    assert [i.reduction for i in feature_info(get_config("resnext50_32x4d"))] == [4, 8, 16, 32]
    assert [i.num_chs for i in feature_info(get_config("resnet18"))] == [64, 128, 256, 512]


@pytest.mark.parametrize("form", ["a", "b", "c"])
def test_torch_backbone_calls_are_the_classifier_taken_apart(form):
    ref, weights = torch_reference(TINY)
    x = torch.tensor(batch(TINY)[0])
    model = rt.create_model(config=TINY, form=form)
    rt.import_weights(model, _to_form(weights, TINY, form))
    model.eval()
    with torch.no_grad():
        stages = model.forward_stages(x)
        assert list(stages) == list(stage_names(TINY))
        fmap = model.forward_features(x)
        assert torch.equal(fmap, stages["layer2"])
        assert torch.equal(model.forward_head(fmap), model(x))
        assert torch.equal(model.forward_head(fmap, pre_logits=True), stages["pool"])
        assert rel_error(model(x).numpy(), ref(x).numpy()) <= TOL
        # headless: the full checkpoint goes in with its head left out, and says so
        bare = rt.create_model(config=TINY, form=form, num_classes=0).eval()
        with pytest.warns(HeadLeftOutWarning, match=r"fc\.bias, fc\.weight \(5 classes\)"):
            rt.import_weights(bare, rt.export_weights(model))
        assert torch.equal(bare(x), stages["pool"])
        maps = rt.create_model(config=TINY, form=form, features_only=True).eval()
        with pytest.warns(HeadLeftOutWarning):
            rt.import_weights(maps, rt.export_weights(model))
        assert all(torch.equal(a, stages[f"layer{s + 1}"]) for s, a in enumerate(maps(x)))


def _to_form(weights, config, form):
    from resnext_spec import to_form

    return to_form(weights, config, "c", form)


def test_headless_weights_into_a_full_model_are_refused_with_the_reason():
    bare = rt.create_model(config=TINY, num_classes=0)
    full = rt.create_model(config=TINY)
    before = rt.export_weights(full)
    with pytest.raises(WeightsMismatchError, match="the weights are headless"):
        rt.import_weights(full, rt.export_weights(bare))
    assert all(np.array_equal(v, before[k]) for k, v in rt.export_weights(full).items())


def test_a_full_checkpoint_that_does_not_fit_says_nothing_about_a_left_out_head():
    bare = rt.create_model(config=TINY, num_classes=0)
    wrong = random_weights(TINY_1X1, "c", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning comes only with a successful import
        with pytest.raises(WeightsMismatchError):
            rt.import_weights(bare, wrong)


@pytest.mark.parametrize("lib", [rt, rf], ids=["torch", "flax"])
def test_reset_classifier_gives_a_new_head_and_leaves_the_backbone(lib):
    model = lib.create_model(config=TINY, form="b")
    backbone = {k: v for k, v in lib.export_weights(model).items() if not k.startswith("fc.")}
    model.reset_classifier(3)
    after = lib.export_weights(model)
    assert after["fc.weight"].shape == (3, model.num_features) and model.config.num_classes == 3
    assert all(np.array_equal(after[k], v) for k, v in backbone.items())
    model.reset_classifier(0)
    assert model.config.num_classes == 0 and set(lib.export_weights(model)) == set(backbone)
    model.reset_classifier(4)  # and a headless model takes a head
    assert lib.export_weights(model)["fc.bias"].shape == (4,)
    with pytest.raises(ConfigError, match="features_only"):
        lib.create_model(config=TINY, features_only=True).reset_classifier(4)


@pytest.mark.parametrize("form", ["a", "b", "c"])
@pytest.mark.parametrize("config", CONFIGS, ids=["tiny", "tiny_1x1", "tiny_basic"])
def test_flax_stage_outputs_equal_torch(config, form):
    want, weights, x = reference_stages(config, form)
    model = rf.create_model(config=config, form=form)
    rf.import_weights(model, weights)
    model.eval()
    got = model.forward_stages(x)
    assert list(got) == list(want)
    assert {k: rel_error(np.asarray(v), want[k]) for k, v in got.items()} == pytest.approx(
        dict.fromkeys(want, 0.0), abs=TOL
    )
    maps = rf.create_model(config=config, form=form, features_only=True)
    with pytest.warns(HeadLeftOutWarning):
        rf.import_weights(maps, weights)
    maps.eval()
    assert [np.asarray(a).shape for a in maps(x)] == [want[i.module].shape for i in maps.feature_info]


@pytest.mark.keras
@pytest.mark.parametrize(
    "config, form",
    [  # the fast tier's Keras-on-JAX and -torch passes take one explicit-path and one grouped build
        pytest.param(
            c,
            f,
            id=f"{n}-{f}",
            marks=[pytest.mark.keras_smoke] if (n, f) in {("tiny", "a"), ("tiny_1x1", "c")} else [],
        )
        for c, n in zip(CONFIGS, ["tiny", "tiny_1x1", "tiny_basic"], strict=True)
        for f in "abc"
    ],
)
def test_keras_stage_outputs_equal_torch(config, form):
    want, weights, x = reference_stages(config, form)
    model = rk.create_model(config=config, form=form)
    rk.import_weights(model, weights)
    got = rk.stages_model(model)(x, training=False)
    assert sorted(got) == sorted(want)  # Keras's torch backend returns a dict's keys sorted
    errors = {k: rel_error(keras.ops.convert_to_numpy(v), want[k]) for k, v in got.items()}
    assert errors == pytest.approx(dict.fromkeys(want, 0.0), abs=TOL)


@pytest.mark.keras
def test_keras_include_top_false_pools_as_keras_applications():
    ref, weights = torch_reference(TINY)
    x = batch(TINY)[0]
    with torch.no_grad():
        last = nhwc(ref.forward_features(torch.tensor(x)))
    xs = x.transpose(0, 2, 3, 1)
    for pooling, want in [(None, last), ("avg", last.mean(axis=(1, 2))), ("max", last.max(axis=(1, 2)))]:
        model = rk.create_model(config=TINY, include_top=False, pooling=pooling)
        assert model.config.num_classes == 0 and not any(layer.name == "fc" for layer in model.layers)
        with pytest.warns(HeadLeftOutWarning):
            rk.import_weights(model, weights)
        got = keras.ops.convert_to_numpy(model(xs, training=False))
        assert got.shape == want.shape and rel_error(got, want) <= TOL, pooling
        again = rk.ResNet.from_config(model.get_config())
        assert again.pooling == pooling and again.output.shape[1:] == model.output.shape[1:]
    maps = rk.create_model(config=TINY, features_only=True)
    extractor = keras.Model(maps.input, maps.pyramid_outputs)
    assert [tuple(t.shape[1:]) for t in maps.outputs] == [tuple(t.shape[1:]) for t in extractor.outputs]


@pytest.mark.keras
@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(pooling="avg"), "pooling='avg' is for a headless model"),
        (dict(features_only=True, num_classes=5), "include_top=False has no classifier"),
        (dict(include_top=False, pooling="sum"), "pooling must be one of"),
        (dict(features_only=True, pooling="avg"), "takes no pooling"),
    ],
)
def test_keras_head_arguments_that_contradict_are_refused(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        rk.create_model(config=TINY, **kwargs)


def test_features_only_needs_a_headless_config():
    with pytest.raises(ConfigError, match="num_classes=0"):
        rt.ResNet(TINY, "c", features_only=True)
    with pytest.raises(ConfigError, match="num_classes=0"):
        rf.ResNet(TINY, "c", features_only=True)
    with pytest.raises(ConfigError, match="or 0 for a headless model"):
        get_config("resnet50", num_classes=-1)
