"""timm's ResNet variants, held by the spec's parts: deep and tiered stems, ResNet-RS's stem, SE, ECA,
anti-aliasing (average and blur pooling), and keras-hub's vd blocks.

Each part is proved against independent truth: timm's and keras-hub's published parameter counts,
timm's own modules (names, shapes, the function they compute, feature maps), the paper's and
timm's rules for SE's reduced width and ECA's kernel, and the other frameworks. Each part runs on
a tiny config in all nine builds (three frameworks x three forms) and in float64; the real presets
run in the zoo (tests/test_parity_harness.py) and against timm's models, all of them, in the full
tier.
"""

import dataclasses

import keras
import numpy as np
import pytest
import torch
from helpers import TINY, TINY_BASIC, batch, import_timm

import resnext_flax as rf
import resnext_keras as rk
import resnext_torch as rt
from resnext_spec import (
    ArchConfig,
    ConfigError,
    canonical_shapes,
    count_params,
    get_config,
    random_weights,
    to_form,
)
from resnext_spec.config import TIMM_PRESETS
from resnext_spec.layout import plan
from resnext_spec.parts import eca_kernel, make_divisible
from resnext_spec.tolerances import rel_error

LIBS = {"torch": rt, "keras": rk, "flax": rf}
TOL = 1e-5

# The parts on tiny configs, combined as timm combines them: every variant field is in one of them.
IMAGENET_TINY = dataclasses.replace(TINY, stem="imagenet")
PARTS = {
    "tiered_avg_se": dataclasses.replace(
        IMAGENET_TINY, stem_type="deep_tiered", stem_width=16, avg_down=True, attn_layer="se"
    ),
    "rs": dataclasses.replace(
        IMAGENET_TINY,
        stem_type="deep",
        stem_width=16,
        replace_stem_pool=True,
        attn_layer="se",
        attn_rd_ratio=0.25,
    ),
    "basic_se": dataclasses.replace(TINY_BASIC, attn_layer="se"),
    "blur_d": dataclasses.replace(
        IMAGENET_TINY, stem_type="deep", stem_width=16, avg_down=True, aa_layer="blur"
    ),
    "avg_aa_eca": dataclasses.replace(IMAGENET_TINY, aa_layer="avg", attn_layer="eca"),
    "basic_blur": dataclasses.replace(TINY_BASIC, stem="imagenet", aa_layer="blur"),
    "cifar_deep_eca": dataclasses.replace(TINY, stem_type="deep", stem_width=16, attn_layer="eca"),
}


# 19 px puts odd sides before every stride (ceil mode, reflect padding); average-pooled
# anti-aliasing floors an odd side where its shortcut ceils, in timm too, so it runs on even ones.
def size_of(config: ArchConfig) -> int:
    return 32 if config.aa_layer == "avg" else 19


def build(lib: str, config: ArchConfig, form: str, weights: dict, dtype: str = "float32"):
    """A build of ``config`` in ``form`` holding ``weights`` (canonical, form (c))."""
    if lib == "flax":
        import jax.numpy as jnp

        model = rf.create_model(
            config=config, form=form, dtype=getattr(jnp, dtype), param_dtype=getattr(jnp, dtype)
        )
    elif lib == "keras":
        model = rk.create_model(config=config, form=form, dtype=dtype)
    else:
        model = rt.create_model(config=config, form=form).to(getattr(torch, dtype))
    LIBS[lib].import_weights(model, to_form(weights, config, "c", form))
    return model


def logits(lib: str, model, x_nchw: np.ndarray) -> np.ndarray:
    if lib == "torch":
        with torch.no_grad():
            return model.eval()(torch.tensor(x_nchw)).double().numpy()
    x = x_nchw.transpose(0, 2, 3, 1)
    if lib == "keras":
        return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), np.float64)
    model.eval()
    return np.asarray(model(x), np.float64)


BUILDS = [
    pytest.param(lib, form, marks=[pytest.mark.keras] if lib == "keras" else [])
    for lib in LIBS
    for form in "abc"
]


# --- the rules, against their definitions ------------------------------------------------------------


def test_timms_published_parameter_counts():
    # timm's model cards (and the issue asking for these): counts of the 1000-class models.
    published = {
        "resnet50d": 25_576_264,
        "seresnext50_32x4d": 27_559_896,
        "ecaresnet50d": 25_576_350,
        "resnetrs50": 35_691_912,
        "resnet26t": 16_011_872,
    }
    assert {n: count_params(get_config(n)) for n in published} == published


def test_se_reduces_by_16_rounded_to_a_multiple_of_8_so_seresnet18_keeps_8_of_64():
    # timm's make_divisible(C / 16, 8): 64 / 16 = 4 rounds up to 8, 256 / 16 = 16 stays.
    assert [make_divisible(c / 16) for c in (64, 128, 256, 512, 2048)] == [8, 8, 16, 32, 128]
    shapes = canonical_shapes(get_config("seresnet18"))
    assert shapes["layer1.0.se.fc1.weight"] == (8, 64, 1, 1) and shapes["layer1.0.se.fc1.bias"] == (8,)
    assert shapes["layer4.1.se.fc2.weight"] == (512, 32, 1, 1) and shapes["layer4.1.se.fc2.bias"] == (512,)
    rs = canonical_shapes(get_config("resnetrs50"))  # ResNet-RS: a quarter
    assert rs["layer1.0.se.fc1.weight"] == (64, 256, 1, 1)


def test_eca_kernel_follows_the_papers_formula():
    # k = |log2(C) / 2 + 1 / 2| made odd (Wang et al. 2020, eq. 12, gamma=2, b=1), by hand:
    # C=64: 3.5 -> 3; 128: 4 -> 5; 256: 4.5 -> 5; 512: 5 -> 5; 1024: 5.5 -> 5; 2048: 6 -> 7.
    assert [eca_kernel(c) for c in (64, 128, 256, 512, 1024, 2048)] == [3, 5, 5, 5, 5, 7]
    assert canonical_shapes(get_config("ecaresnet50d"))["layer4.2.se.conv.weight"] == (1, 1, 7)


def test_deep_stems_are_named_and_sized_as_timms_sequential():
    d = canonical_shapes(get_config("resnet50d"))
    assert [d[f"conv1.{i}.weight"] for i in (0, 3, 6)] == [(32, 3, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3)]
    assert d["conv1.1.weight"] == (32,) and d["bn1.weight"] == (64,)
    t = canonical_shapes(get_config("resnet50t"))  # tiered: 3/4 of the width first
    assert [t[f"conv1.{i}.weight"][0] for i in (0, 3, 6)] == [24, 32, 64]
    s = canonical_shapes(get_config("resnet50s"))  # 64 wide: a 128-channel stem output
    assert s["layer1.0.conv1.weight"] == (64, 128, 1, 1)
    rs = plan(get_config("resnetrs50")).stem
    assert rs.pool is None and rs.reduction == 4 and rs.steps[-1].conv.name == "maxpool.0"


def test_variant_fields_are_checked():
    with pytest.raises(ConfigError, match="stem_type must be one of"):
        ArchConfig(stem_type="tiered")
    with pytest.raises(ConfigError, match="the CIFAR stem has none"):
        ArchConfig(stem="cifar", replace_stem_pool=True)
    with pytest.raises(ConfigError, match="attn_rd_ratio"):
        ArchConfig(attn_layer="se", attn_rd_ratio=0)
    config = get_config("resnetrs50")
    assert ArchConfig.from_json(config.to_json()) == config


# --- every part in every build --------------------------------------------------------------------------


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("lib, form", BUILDS)
def test_each_part_is_the_same_function_in_every_framework_and_form(part, lib, form):
    config = PARTS[part]
    if config.block == "basic" and form != "c":
        pytest.skip("basic blocks exist in form (c) only")
    assert_the_same_function_as_torch_c(config, lib, form, size_of(config))


def assert_the_same_function_as_torch_c(config: ArchConfig, lib: str, form: str, size: int) -> None:
    """The build (``lib``, ``form``) of ``config`` holding seeded weights gives torch form (c)'s logits
    on a seeded batch of ``size`` px, has the spec's parameter count, and exports the canonical names."""
    weights = random_weights(config, "c", seed=3)
    x = batch(config, size=size)[0]
    want = logits("torch", build("torch", config, "c", weights), x)
    model = build(lib, config, form, weights)
    assert rel_error(logits(lib, model, x), want) < TOL
    assert LIBS[lib].count_params(model) == count_params(config)
    exported = LIBS[lib].export_weights(model)
    assert list(exported) == list(canonical_shapes(config, form))


@pytest.mark.parametrize("part", ["tiered_avg_se", "rs", "cifar_deep_eca", "blur_d", "avg_aa_eca"])
def test_the_parts_act(part):
    """Each part changes the function: without it, the same remaining weights give other logits."""
    config = PARTS[part]
    weights = random_weights(config, "c", seed=3)
    x = batch(config, size=size_of(config))[0]
    want = logits("torch", build("torch", config, "c", weights), x)
    plain = dataclasses.replace(config, attn_layer="", aa_layer="")
    kept = {k: v for k, v in weights.items() if ".se." not in k}
    assert rel_error(logits("torch", build("torch", plain, "c", kept), x), want) > 1e-3


@pytest.mark.parametrize(
    "lib", [pytest.param(k, marks=[pytest.mark.keras] if k == "keras" else []) for k in LIBS]
)
def test_forms_agree_in_float64_to_1e9_with_every_part(lib):
    if lib == "keras" and keras.backend.backend() != "tensorflow":
        pytest.skip("Keras computes float64 faithfully on TensorFlow")
    config = dataclasses.replace(PARTS["tiered_avg_se"], attn_layer="eca")
    rs = PARTS["rs"]
    for cfg in (config, rs, PARTS["blur_d"], PARTS["avg_aa_eca"]):
        out = float64_forms(lib, cfg, size_of(cfg))
        assert rel_error(out["a"], out["c"]) < 1e-9 and rel_error(out["b"], out["c"]) < 1e-9


def float64_forms(lib: str, config: ArchConfig, size: int) -> dict[str, np.ndarray]:
    """The logits of forms a, b, c of ``config`` in float64 (Flax in JAX's x64 mode), one seeded
    batch of ``size`` px and the same seeded weights in each."""
    weights = {k: v.astype(np.float64) for k, v in random_weights(config, "c", seed=8).items()}
    x = batch(config, size=size)[0].astype(np.float64)
    if lib == "flax":
        import jax

        with jax.enable_x64(True):
            return {f: logits(lib, build(lib, config, f, weights, "float64"), x) for f in "abc"}
    return {f: logits(lib, build(lib, config, f, weights, "float64"), x) for f in "abc"}


# --- against timm itself -----------------------------------------------------------------------------

# One small timm model of each kind, cut to one block a stage, with our torch build's function.
TIMM_KINDS = {
    "resnet50c": "deep stem",
    "resnet26t": "tiered stem + avg_down",
    "resnet18d": "basic blocks, deep stem + avg_down",
    "seresnext26d_32x4d": "SE + ResNeXt",
    "ecaresnet26t": "ECA",
    "resnetrs50": "ResNet-RS stem, SE at 1/4",
    "resnetblur50d": "BlurPool anti-aliasing",
    "resnetaa34d": "AvgPool anti-aliasing, basic blocks",
}


@pytest.mark.parametrize("name", TIMM_KINDS)
def test_timms_module_has_our_tensors_and_computes_our_function(name):
    timm = import_timm()
    layers = (1, 1, 1, 1)
    config = dataclasses.replace(get_config(name), layers=layers, num_classes=7)
    theirs = timm.create_model(name, layers=layers, num_classes=7).eval()
    state = {
        k: tuple(v.shape) for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    assert state == canonical_shapes(config)
    weights = random_weights(config, "c", seed=11)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in weights.items()}, strict=False)
    x = batch(config, size=64 if config.aa_layer == "avg" else 37)[0]
    with torch.no_grad():
        want = theirs(torch.tensor(x)).double().numpy()
    assert rel_error(logits("torch", build("torch", config, "c", weights), x), want) < TOL


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TIMM_PRESETS))
def test_every_timm_preset_has_timms_tensors_and_count(name):
    """Built on torch's meta device (no memory, no compute): names, shapes and count, model by model."""
    timm = import_timm()
    theirs = timm.create_model(name, device="meta")
    state = {
        k: tuple(v.shape) for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    assert state == canonical_shapes(get_config(name))
    assert count_params(get_config(name)) == sum(p.numel() for p in theirs.parameters())


def test_the_porting_table_says_what_the_presets_hold():
    """docs/porting.md's table of timm's models: a row says "ported" exactly where a preset of that
    name exists, with its parameter count; and it lists every model timm registers in resnet.py."""
    import re
    from pathlib import Path

    from resnext_spec import list_presets

    text = Path(__file__).parent.parent.joinpath("docs/porting.md").read_text()
    text = text[: text.index("## timm's ResNetV2")]  # its own table: tests/test_preact.py
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (ported|refused) \| ?([\d,]*) ?\|$", text, re.M)
    assert len(rows) == 81
    for name, status, count in rows:
        assert (status == "ported") == (name in list_presets()), name
        if status == "ported":
            assert int(count.replace(",", "")) == count_params(get_config(name)), name
    timm = import_timm()
    assert {name for name, _, _ in rows} == set(timm.list_models(module="resnet"))


@pytest.mark.parametrize("name", ["resnet50d", "resnetrs50", "resnet18"])
def test_freezing_the_stem_holds_every_stem_layer_the_spec_names_and_nothing_after(name):
    from resnext_spec.training import Recipe

    config = get_config(name)
    recipe = Recipe(freeze="stem")
    stem = {f"{layer.name}.{t}" for layer in plan(config).stem.layers for t in layer.tensors}
    frozen = {n for n in canonical_shapes(config) if recipe.is_frozen(n, len(config.layers))}
    assert frozen == stem


def test_keras_hubs_vd_presets_have_its_published_sizes():
    # keras-hub's resnet_presets.py "params" count every variable, BN statistics included.
    published = {
        "resnet_vd_18": 11_722_824,
        "resnet_vd_34": 21_838_408,
        "resnet50d": 25_629_512,  # resnet_vd_50: timm's resnet50d exactly
        "resnet101d": 44_673_864,
        "resnet152d": 60_363_592,
        "resnet_vd_200": 74_933_064,
    }
    every = {n: sum(int(np.prod(s)) for s in canonical_shapes(get_config(n)).values()) for n in published}
    assert every == published
    # the one difference from timm: keras-hub's basic_block_vd projects in the first block
    assert "layer1.0.downsample.1.weight" in canonical_shapes(get_config("resnet_vd_18"))
    assert "layer1.0.downsample.1.weight" not in canonical_shapes(get_config("resnet18d"))


@pytest.mark.parametrize("name", ["resnetrs50", "resnetblur50d", "resnet26t"])
def test_a_variant_backbone_gives_timms_feature_maps(name):
    """features_only: every stage's output, with timm's channels and reductions for the same model."""
    from resnext_spec import feature_info

    timm = import_timm()
    layers = (1, 1, 1, 1)
    theirs = timm.create_model(name, layers=layers, features_only=True, out_indices=(1, 2, 3, 4))
    config = dataclasses.replace(get_config(name), layers=layers, num_classes=0)
    info = feature_info(config)
    assert [i.num_chs for i in info] == theirs.feature_info.channels()
    assert [i.reduction for i in info] == theirs.feature_info.reduction()
    outs = rt.create_model(config=config, features_only=True).eval()(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (i.num_chs, 64 // i.reduction, 64 // i.reduction) for i in info
    ]
