"""Architecture configuration and the preset registry.

One frozen dataclass describes every network in the zoo; the three framework
packages build from it and nothing else. Presets are a plain name -> config
table. A preset pins its architecture: overriding a pinned field with a
different value is an error, never a silent merge.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .parts import ATTENTION

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
STEM_TYPES = ("", "deep", "deep_tiered", "fixed")
AA_LAYERS = ("", "avg", "blur")
STRIDE_ON = ("3x3", "1x1")
STRIDE_AT = ("first", "last")
NORM_TYPES = ("batch", "group")
FORMS = ("a", "b", "c")

# Fields a caller may change on a preset without changing what the preset is.
FREE_FIELDS = frozenset({"num_classes", "in_channels", "stride_on"})


@dataclass(frozen=True)
class ArchConfig:
    """A ResNet / ResNeXt architecture.

    ``cardinality`` (C) and ``base_width`` (d) follow torchvision's
    ``groups`` and ``width_per_group``: ResNet is C=1, d=64. ``num_classes=0`` is a
    headless backbone (``headless``). The variant fields carry timm's names: ``stem_type``
    "deep" puts three 3x3 convs of ``stem_width``, ``stem_width``, ``2 * stem_width`` in place of
    the stem's one conv ("deep_tiered": ``3 * (stem_width // 4)``, ``stem_width``, ``2 *
    stem_width``; "fixed": the 7x7 conv, and the max-pool pads with zeros, not -inf, as BiT and
    keras.applications' V2 do, which differs after a pre-activation stem's conv);
    ``replace_stem_pool`` makes the ImageNet stem's max-pool a strided 3x3 conv, BN and ReLU
    (ResNet-RS); ``avg_down`` average-pools before each strided projection
    shortcut's 1x1 conv (ResNet-D); ``attn_layer`` names the attention part after each block's
    last norm ("" for none, "se", "eca": ``resnext_spec.parts.ATTENTION``), and
    ``attn_rd_ratio`` is SE's reduction (1/16; ResNet-RS 1/4); ``aa_layer`` anti-aliases each
    downsampling (timm's resnetaa* "avg": 2x2 average pooling; resnetblur* "blur": a fixed 3x3
    binomial blur): the strided conv runs at stride 1 with the pool after its ReLU, and the
    stem's max-pool becomes the pool ("avg") or a stride-1 max-pool and the blur ("blur").
    ``first_shortcut`` gives the first block of the first stage a conv shortcut even where it
    keeps the shape (keras-hub's ``basic_block_vd``, its name for the flag; timm's ``resnet18d``
    has an identity there).

    ``preact`` orders each block as ResNet v2 does (He et al., *Identity Mappings*, 2016): a norm
    and ReLU on the block's input (``bn0``), shared by the body and a projection shortcut, then
    conv, norm, ReLU, ..., ending on a conv; the sum has no ReLU after it, the stem's last conv no
    norm, and the network a final norm and ReLU (``norm``) before pooling. ``stride_at`` "last"
    puts each stage's stride on its last block (keras.applications' V2: its 3x3 strides and its
    shortcut takes every second pixel, a 1x1 max-pool), the last stage keeping stride 1.
    ``conv_bias`` gives a bias to each conv no norm follows (keras.applications' V2: the stem's,
    the shortcuts', each block's last); it takes ``preact``, since elsewhere a norm follows every
    conv and would absorb it.

    ``norm_type`` "group" makes every norm a GroupNorm of 32 groups (eps 1e-5; timm's ``*_gn`` and
    BiT), which has no running statistics. ``std_conv`` standardises every conv's kernel on each
    call, per output filter to zero mean and unit (biased) variance, eps 1e-8 (BiT's; timm's
    ``StdConv2d``). ``width_factor`` multiplies every stage's width and output (BiT's "x3").
    ``channels`` gives each stage's planes (timm's name; empty: torchvision's 64, 128, 256, ...), for
    the narrow networks of tests and tiny models: Hugging Face's ``hidden_sizes`` are these times the
    block's expansion.
    """

    block: str = "bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)
    cardinality: int = 1
    base_width: int = 64
    stem: str = "imagenet"
    stem_width: int = 64
    stride_on: str = "3x3"
    num_classes: int = 1000
    in_channels: int = 3
    stem_type: str = ""
    replace_stem_pool: bool = False
    avg_down: bool = False
    attn_layer: str = ""
    attn_rd_ratio: float = 1 / 16
    aa_layer: str = ""
    first_shortcut: bool = False
    preact: bool = False
    stride_at: str = "first"
    conv_bias: bool = False
    norm_type: str = "batch"
    std_conv: bool = False
    width_factor: int = 1
    channels: tuple[int, ...] = ()

    @property
    def headless(self) -> bool:
        """``num_classes=0`` (timm's spelling; Keras ``include_top=False``): no classifier, the
        network ends at its features, and its canonical weights have no ``fc.*``."""
        return self.num_classes == 0

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store a tuple so the config is hashable.
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if isinstance(self.channels, list):
            object.__setattr__(self, "channels", tuple(self.channels))
        _check_choice("block", self.block, BLOCKS)
        _check_choice("stem", self.stem, STEMS)
        _check_choice("stride_on", self.stride_on, STRIDE_ON)
        _check_choice("stem_type", self.stem_type, STEM_TYPES)
        _check_choice("attn_layer", self.attn_layer, tuple(ATTENTION))
        _check_choice("aa_layer", self.aa_layer, AA_LAYERS)
        _check_choice("stride_at", self.stride_at, STRIDE_AT)
        _check_choice("norm_type", self.norm_type, NORM_TYPES)
        if self.aa_layer and (self.replace_stem_pool or self.stride_on != "3x3"):
            raise ConfigError(
                "aa_layer anti-aliases the strided 3x3 and the stem's max-pool, as timm does: "
                "it takes stride_on='3x3' and no replace_stem_pool"
            )
        for name in ("avg_down", "replace_stem_pool", "first_shortcut", "preact", "conv_bias", "std_conv"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.conv_bias and not self.preact:
            raise ConfigError(
                "conv_bias gives a bias to the convs no norm follows, which only a pre-activation "
                "network has: it takes preact=True"
            )
        post_only = self.attn_layer or self.aa_layer or self.replace_stem_pool or self.first_shortcut
        if self.preact and post_only:
            raise ConfigError(
                "preact takes no attn_layer, aa_layer, replace_stem_pool or first_shortcut: no "
                "library defines where they sit in a pre-activation block"
            )
        if self.stem_type == "fixed" and (self.stem != "imagenet" or self.aa_layer or self.replace_stem_pool):
            raise ConfigError(
                "stem_type='fixed' zero-pads the ImageNet stem's max-pool: it takes stem='imagenet', "
                "no aa_layer and no replace_stem_pool"
            )
        if self.replace_stem_pool and self.stem != "imagenet":
            raise ConfigError(
                "replace_stem_pool replaces the ImageNet stem's max-pool; the CIFAR stem has none"
            )
        ratio = self.attn_rd_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ConfigError(f"attn_rd_ratio must be a number in (0, 1], got {ratio!r}")
        if (
            not isinstance(self.layers, tuple)
            or not self.layers
            or not all(_is_positive_int(n) for n in self.layers)
        ):
            raise ConfigError(
                f"layers must be a non-empty tuple of positive ints (blocks per stage), got {self.layers!r}"
            )
        if self.channels != () and (
            not isinstance(self.channels, tuple)
            or len(self.channels) != len(self.layers)
            or not all(_is_positive_int(c) for c in self.channels)
        ):
            raise ConfigError(
                f"channels must be empty or a tuple of positive ints, one per stage ({len(self.layers)}), "
                f"got {self.channels!r}"
            )
        if self.std_conv and self.attn_layer:
            raise ConfigError("std_conv takes no attn_layer: no library standardises SE's or ECA's convs")
        for name in ("cardinality", "base_width", "stem_width", "in_channels", "width_factor"):
            value = getattr(self, name)
            if not _is_positive_int(value):
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        headless = self.num_classes == 0 and type(self.num_classes) is int
        if not (_is_positive_int(self.num_classes) or headless):
            raise ConfigError(
                f"num_classes must be a positive int, or 0 for a headless model, got {self.num_classes!r}"
            )
        if self.block == "basic" and (self.cardinality != 1 or self.base_width != 64):
            raise ConfigError(
                "block='basic' has no paths: it needs cardinality=1 and base_width=64, "
                f"got cardinality={self.cardinality}, base_width={self.base_width}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["channels"] = list(self.channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"an ArchConfig is a JSON object of its fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ArchConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"not JSON: {e}") from e
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ArchConfig:
        """The config in a JSON file (``--config``), e.g. ``{"layers": [1, 1, 1], "cardinality": 8,
        "base_width": 16, "stem": "cifar", "num_classes": 10}``; fields left out take their defaults."""
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"{os.fspath(path)}: {e.strerror or e}") from e
        try:
            return cls.from_json(text)
        except ConfigError as e:
            raise ConfigError(f"{os.fspath(path)}: {e}") from e


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field} must be one of {list(allowed)}, got {value!r}")


def check_form(form: str) -> str:
    """Validate a block-form name ('a', 'b' or 'c')."""
    if form not in FORMS:
        raise ConfigError(f"form must be one of {list(FORMS)}, got {form!r}")
    return form


def check_form_for(config: ArchConfig, form: str) -> str:
    """Validate that ``config`` has block form ``form``: basic blocks have only (c)."""
    check_form(form)
    if config.block == "basic" and form != "c":
        raise ConfigError(
            f"form {form!r} needs bottleneck blocks: basic-block models (ResNet-18/34) have no "
            "paths, so only form 'c' exists for them"
        )
    if config.norm_type == "group" and form != "c" and 32 % config.cardinality:
        raise ConfigError(
            f"form {form!r} splits each norm among the C={config.cardinality} paths: GroupNorm's 32 groups "
            "do not split so, only form 'c' exists for it"
        )
    if config.std_conv and form == "a" and config.cardinality > 1:
        raise ConfigError(
            "form 'a' splits conv3 along its inputs among the paths, and weight standardisation (std_conv) "
            "normalises each of its filters over all of them at once: only forms 'b' and 'c' exist for it"
        )
    return form


_IMAGENET = dict(stem="imagenet", num_classes=1000)
_CIFAR = dict(stem="cifar", num_classes=10)

PRESETS: dict[str, ArchConfig] = {
    "resnet18": ArchConfig(block="basic", layers=(2, 2, 2, 2), **_IMAGENET),
    "resnet34": ArchConfig(block="basic", layers=(3, 4, 6, 3), **_IMAGENET),
    "resnet50": ArchConfig(layers=(3, 4, 6, 3), **_IMAGENET),
    "resnet101": ArchConfig(layers=(3, 4, 23, 3), **_IMAGENET),
    "resnet152": ArchConfig(layers=(3, 8, 36, 3), **_IMAGENET),
    "wide_resnet50_2": ArchConfig(layers=(3, 4, 6, 3), base_width=128, **_IMAGENET),
    "resnext50_32x4d": ArchConfig(layers=(3, 4, 6, 3), cardinality=32, base_width=4, **_IMAGENET),
    # The paper's Table 2: ResNeXt-50 at the complexity of ResNet-50 (1x64d) as C grows.
    "resnext50_2x40d": ArchConfig(layers=(3, 4, 6, 3), cardinality=2, base_width=40, **_IMAGENET),
    "resnext50_4x24d": ArchConfig(layers=(3, 4, 6, 3), cardinality=4, base_width=24, **_IMAGENET),
    "resnext50_8x14d": ArchConfig(layers=(3, 4, 6, 3), cardinality=8, base_width=14, **_IMAGENET),
    "resnext101_32x4d": ArchConfig(layers=(3, 4, 23, 3), cardinality=32, base_width=4, **_IMAGENET),
    "resnext101_32x8d": ArchConfig(layers=(3, 4, 23, 3), cardinality=32, base_width=8, **_IMAGENET),
    "resnext101_64x4d": ArchConfig(layers=(3, 4, 23, 3), cardinality=64, base_width=4, **_IMAGENET),
    "resnext29_8x64d": ArchConfig(layers=(3, 3, 3), cardinality=8, base_width=64, **_CIFAR),
    "resnext29_16x64d": ArchConfig(layers=(3, 3, 3), cardinality=16, base_width=64, **_CIFAR),
    "resnext26_2x64d": ArchConfig(layers=(2, 2, 2, 2), cardinality=2, base_width=64, **_CIFAR),
    "resnext26_4x32d": ArchConfig(layers=(2, 2, 2, 2), cardinality=4, base_width=32, **_CIFAR),
    "resnext26_8x16d": ArchConfig(layers=(2, 2, 2, 2), cardinality=8, base_width=16, **_CIFAR),
    "resnext26_16x8d": ArchConfig(layers=(2, 2, 2, 2), cardinality=16, base_width=8, **_CIFAR),
    "resnext26_32x4d": ArchConfig(layers=(2, 2, 2, 2), cardinality=32, base_width=4, **_CIFAR),
}

# The presets of the project's own design: torchvision's, the paper's, the CIFAR family.
DESIGN_PRESETS = tuple(PRESETS)

# timm's models/resnet.py: the variants its names stand for, in ArchConfig's fields (timm's own
# names). "c": deep stem; "s": deep stem 64 wide; "d": deep stem and avg_down; "t": the tiered deep
# stem and avg_down; "se"/"eca": attention; "rs": ResNet-RS. Parameter counts equal timm's, model by
# model (tests/test_variants.py); "aa"/"blur": anti-aliased. The GroupNorm, pruned and SENet-154
# models are not here.
_C = dict(stem_width=32, stem_type="deep")
_S = dict(stem_width=64, stem_type="deep")
_D = dict(stem_width=32, stem_type="deep", avg_down=True)
_T = dict(stem_width=32, stem_type="deep_tiered", avg_down=True)
_RS = dict(_D, replace_stem_pool=True, attn_layer="se", attn_rd_ratio=0.25)
_SE = dict(attn_layer="se")
_ECA = dict(attn_layer="eca")
_L18, _L34, _L26, _L50 = (2, 2, 2, 2), (3, 4, 6, 3), (2, 2, 2, 2), (3, 4, 6, 3)
_L101, _L152, _L200, _L269 = (3, 4, 23, 3), (3, 8, 36, 3), (3, 24, 36, 3), (3, 30, 48, 8)
_X32x4 = dict(cardinality=32, base_width=4)


def _timm(layers: tuple[int, ...], block: str = "bottleneck", **fields: Any) -> ArchConfig:
    return ArchConfig(block=block, layers=layers, **fields, **_IMAGENET)


TIMM_PRESETS: dict[str, ArchConfig] = {
    "resnet10t": _timm((1, 1, 1, 1), "basic", **_T),
    "resnet14t": _timm((1, 1, 1, 1), **_T),
    "resnet18d": _timm(_L18, "basic", **_D),
    "resnet34d": _timm(_L34, "basic", **_D),
    "resnet26": _timm(_L26),
    "resnet26t": _timm(_L26, **_T),
    "resnet26d": _timm(_L26, **_D),
    "resnet50c": _timm(_L50, **_C),
    "resnet50d": _timm(_L50, **_D),
    "resnet50s": _timm(_L50, **_S),
    "resnet50t": _timm(_L50, **_T),
    "resnet101c": _timm(_L101, **_C),
    "resnet101d": _timm(_L101, **_D),
    "resnet101s": _timm(_L101, **_S),
    "resnet152c": _timm(_L152, **_C),
    "resnet152d": _timm(_L152, **_D),
    "resnet152s": _timm(_L152, **_S),
    "resnet200": _timm(_L200),
    "resnet200d": _timm(_L200, **_D),
    "wide_resnet101_2": _timm(_L101, base_width=128),
    "resnext50d_32x4d": _timm(_L50, **_X32x4, **_D),
    "resnext101_32x16d": _timm(_L101, cardinality=32, base_width=16),
    "resnext101_32x32d": _timm(_L101, cardinality=32, base_width=32),
    "ecaresnet26t": _timm(_L26, **_T, **_ECA),
    "ecaresnet50d": _timm(_L50, **_D, **_ECA),
    "ecaresnet50t": _timm(_L50, **_T, **_ECA),
    # timm's stem_width sizes deep stems only: its 7x7 stem is 64 wide whatever stem_width says.
    "ecaresnetlight": _timm((1, 1, 11, 3), avg_down=True, **_ECA),
    "ecaresnet101d": _timm(_L101, **_D, **_ECA),
    "ecaresnet200d": _timm(_L200, **_D, **_ECA),
    "ecaresnet269d": _timm(_L269, **_D, **_ECA),
    "ecaresnext26t_32x4d": _timm(_L26, **_X32x4, **_T, **_ECA),
    "ecaresnext50t_32x4d": _timm(_L50, **_X32x4, **_T, **_ECA),
    "seresnet18": _timm(_L18, "basic", **_SE),
    "seresnet34": _timm(_L34, "basic", **_SE),
    "seresnet50": _timm(_L50, **_SE),
    "seresnet50t": _timm(_L50, **_T, **_SE),
    "seresnet101": _timm(_L101, **_SE),
    "seresnet152": _timm(_L152, **_SE),
    "seresnet152d": _timm(_L152, **_D, **_SE),
    "seresnet200d": _timm(_L200, **_D, **_SE),
    "seresnet269d": _timm(_L269, **_D, **_SE),
    "seresnext26d_32x4d": _timm(_L26, **_X32x4, **_D, **_SE),
    "seresnext26t_32x4d": _timm(_L26, **_X32x4, **_T, **_SE),
    "seresnext50_32x4d": _timm(_L50, **_X32x4, **_SE),
    "seresnext101_32x4d": _timm(_L101, **_X32x4, **_SE),
    "seresnext101_32x8d": _timm(_L101, cardinality=32, base_width=8, **_SE),
    "seresnext101d_32x8d": _timm(_L101, cardinality=32, base_width=8, **_D, **_SE),
    "seresnext101_64x4d": _timm(_L101, cardinality=64, base_width=4, **_SE),
    "resnetblur18": _timm(_L18, "basic", aa_layer="blur"),
    "resnetblur50": _timm(_L50, aa_layer="blur"),
    "resnetblur50d": _timm(_L50, **_D, aa_layer="blur"),
    "resnetblur101d": _timm(_L101, **_D, aa_layer="blur"),
    "resnetaa34d": _timm(_L34, "basic", **_D, aa_layer="avg"),
    "resnetaa50": _timm(_L50, aa_layer="avg"),
    "resnetaa50d": _timm(_L50, **_D, aa_layer="avg"),
    "resnetaa101d": _timm(_L101, **_D, aa_layer="avg"),
    "seresnetaa50d": _timm(_L50, **_D, **_SE, aa_layer="avg"),
    "seresnextaa101d_32x8d": _timm(_L101, cardinality=32, base_width=8, **_D, **_SE, aa_layer="avg"),
    "seresnextaa201d_32x8d": _timm(
        (3, 24, 36, 4), cardinality=32, base_width=8, **_S, avg_down=True, **_SE, aa_layer="avg"
    ),
    "resnetrs50": _timm(_L50, **_RS),
    "resnetrs101": _timm(_L101, **_RS),
    "resnetrs152": _timm(_L152, **_RS),
    "resnetrs200": _timm(_L200, **_RS),
    "resnetrs270": _timm((4, 29, 53, 4), **_RS),
    "resnetrs350": _timm((4, 36, 72, 4), **_RS),
    "resnetrs420": _timm((4, 44, 87, 4), **_RS),
    "resnet50_gn": _timm(_L50, norm_type="group"),
}
# keras-hub's vd presets (resnet_vd_*_imagenet) where they are not timm's: basic_block_vd is timm's
# resnet18d/34d with a projection in the first block; its 50, 101 and 152 are timm's resnet50d,
# 101d and 152d exactly, and its 200 is deeper in stage 3 than resnet200d.
KERAS_HUB_PRESETS: dict[str, ArchConfig] = {
    "resnet_vd_18": _timm(_L18, "basic", **_D, first_shortcut=True),
    "resnet_vd_34": _timm(_L34, "basic", **_D, first_shortcut=True),
    "resnet_vd_200": _timm((3, 12, 48, 3), **_D),
}
# Pre-activation (ResNet v2). timm's models/resnetv2.py, its names (not its EvoNorm and FRN models);
# BiT is GroupNorm and weight-standardised convs on a zero-padded stem pool, widened by its "xK".
# keras.applications' ResNet50V2 / 101V2 / 152V2 stride on each stage's last block and carry conv
# biases where no norm follows.
_V2 = dict(preact=True)
_KERAS_V2 = dict(preact=True, stride_at="last", conv_bias=True, stem_type="fixed")
_GN = dict(norm_type="group")


def _bit(layers: tuple[int, ...], k: int) -> ArchConfig:
    """BiT-M/S ResNet-V2 "x``k``": every width and the stem ``k`` times ResNet's."""
    bit = dict(preact=True, stem_type="fixed", std_conv=True, **_GN)
    return _timm(layers, stem_width=64 * k, width_factor=k, **bit)


PREACT_PRESETS: dict[str, ArchConfig] = {
    "resnetv2_18": _timm(_L18, "basic", **_V2),
    "resnetv2_18d": _timm(_L18, "basic", **_D, **_V2),
    "resnetv2_34": _timm(_L34, "basic", **_V2),
    "resnetv2_34d": _timm(_L34, "basic", **_D, **_V2),
    "resnetv2_50": _timm(_L50, **_V2),
    "resnetv2_50d": _timm(_L50, **_D, **_V2),
    "resnetv2_50t": _timm(_L50, **_T, **_V2),
    "resnetv2_101": _timm(_L101, **_V2),
    "resnetv2_101d": _timm(_L101, **_D, **_V2),
    "resnetv2_152": _timm(_L152, **_V2),
    "resnetv2_152d": _timm(_L152, **_D, **_V2),
    "resnetv2_50d_gn": _timm(_L50, **_D, **_V2, **_GN),
    "resnetv2_50x1_bit": _bit(_L50, 1),
    "resnetv2_50x3_bit": _bit(_L50, 3),
    "resnetv2_101x1_bit": _bit(_L101, 1),
    "resnetv2_101x3_bit": _bit(_L101, 3),
    "resnetv2_152x2_bit": _bit(_L152, 2),
    "resnetv2_152x4_bit": _bit(_L152, 4),
    "resnet50v2": _timm(_L50, **_KERAS_V2),
    "resnet101v2": _timm(_L101, **_KERAS_V2),
    "resnet152v2": _timm(_L152, **_KERAS_V2),
}
PRESETS.update(TIMM_PRESETS)
PRESETS.update(KERAS_HUB_PRESETS)
PRESETS.update(PREACT_PRESETS)
# Another library's name for a preset's network: keras-hub's resnet_v2_* are timm's resnetv2_* without
# a head. An alias is a preset name like any other; ``preset_of`` gives the name it stands for.
PRESET_ALIASES = {"resnet_v2_50": "resnetv2_50", "resnet_v2_101": "resnetv2_101"}
PRESETS.update({alias: PRESETS[name] for alias, name in PRESET_ALIASES.items()})


def list_presets() -> list[str]:
    """Names of every preset, in table order."""
    return list(PRESETS)


def preset_of(config: ArchConfig) -> str | None:
    """The preset ``config`` is exactly (``num_classes`` and ``in_channels`` included), or None; the
    name an alias stands for, never the alias."""
    return next((name for name, preset in PRESETS.items() if preset == config), None)


def unknown_preset(name: str) -> str:
    """The one line every tool says for a name that is no preset: the closest names, and where the
    whole list is (it is too long for a line: torchvision's, the paper's, timm's and keras-hub's)."""
    close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ";"
    return (
        f"unknown preset {name!r}{hint} {len(PRESETS)} presets: README's table and docs/porting.md list them"
    )


def get_config(name: str, **overrides: Any) -> ArchConfig:
    """The preset ``name``, optionally with free fields changed.

    ``num_classes``, ``in_channels`` and ``stride_on`` may be overridden (``None``
    means "keep the preset's"); any other field is pinned by the preset and
    raises if given a different value.
    """
    if name not in PRESETS:
        raise ConfigError(unknown_preset(name))
    config = PRESETS[name]
    changes: dict[str, Any] = {}
    for field, value in overrides.items():
        if value is None:
            continue
        if not hasattr(config, field):
            raise ConfigError(f"unknown ArchConfig field {field!r}")
        current = getattr(config, field)
        if field in ("layers", "channels") and isinstance(value, list):
            value = tuple(value)
        if field not in FREE_FIELDS and value != current:
            raise ConfigError(
                f"preset {name!r} pins {field}={current!r}; got {field}={value!r}. "
                "Build a custom ArchConfig for a different architecture."
            )
        changes[field] = value
    return dataclasses.replace(config, **changes) if changes else config


def resolve_config(name: str | None = None, config: ArchConfig | None = None, **overrides: Any) -> ArchConfig:
    """One config from either a preset name or an explicit ``ArchConfig``: the shared
    argument handling of every framework's ``create_model``."""
    if (name is None) == (config is None):
        raise ConfigError("give exactly one of a preset name or config=ArchConfig(...)")
    if config is not None:
        if not isinstance(config, ArchConfig):
            raise ConfigError(f"config must be an ArchConfig, got {type(config).__name__}")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(config, **changes) if changes else config
    return get_config(name, **overrides)
