"""The parts a network is assembled from, each described once: layers, stems, shortcuts, attention.

A part is a small frozen spec: what it is (``kind``), the canonical name it lives under, and its
weight-bearing layers (:class:`LayerSpec`), from which every canonical tensor name, shape and
parameter count follows. Each framework turns a spec into a module with one small factory per
kind; nothing else in a framework, a form or a tool needs to know the part exists.

New parts are added by registering a spec builder here (``ATTENTION``) and a factory in each
framework package: docs/development.md, "Adding an architecture part", walks through one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The tensors each layer kind owns, as torch names them. A conv with ``bias=True`` adds "bias".
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
BN_STATS = ("running_mean", "running_var")
KIND_TENSORS: dict[str, tuple[str, ...]] = {
    "conv": ("weight",),
    "conv1d": ("weight",),  # (out, in, k): ECA's conv along the channels
    "bn": BN_TENSORS,
    "gn": ("weight", "bias"),  # GroupNorm: no running statistics
    "linear": ("weight", "bias"),
    "bias": ("bias",),  # a bias alone: form (a)'s pre-activation conv3 bias, added once to the paths' sum
}
# Kinds whose weight is laid out differently in channels-last frameworks (``layout.TO_CHANNELS_LAST``);
# every other tensor (BN's, biases, a part's per-channel vectors) is the same in every framework.
LAID_OUT_KINDS = ("conv", "conv1d", "linear")


@dataclass(frozen=True)
class LayerSpec:
    """A weight-bearing layer: ``shape`` is OIHW for conv, (out, in) for linear, (C,) for BN.

    ``path`` is set on the layers of forms (a)/(b) that belong to one path; such a layer holds
    the slice ``path * n .. (path + 1) * n`` along ``cut_axis`` of the form-(c) layer of the same
    name without ``paths.P`` (``layout.form_c_name``). That is all ``forms.to_form`` needs.
    """

    name: str
    kind: str  # "conv", "bn", "linear", or a registered part's own kind
    shape: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    groups: int = 1  # a conv's groups; a GroupNorm's number of groups
    bias: bool = False  # a conv that carries a bias (SE's convs, pre-activation's)
    std: bool = False  # a conv whose kernel is standardised on each call (ArchConfig.std_conv)
    path: int | None = None
    cut_axis: int = 0

    @property
    def tensors(self) -> tuple[str, ...]:
        """The torch suffixes of this layer's tensors (``weight``, ``running_var``, ...)."""
        own = KIND_TENSORS.get(self.kind, ("weight",))
        return (*own, "bias") if self.bias and "bias" not in own else own

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}.{t}" for t in self.tensors)

    def tensor_shape(self, tensor: str) -> tuple[int, ...]:
        """A weight has the layer's shape; a bias of a conv or linear layer one value per output."""
        if tensor == "bias" and self.kind in LAID_OUT_KINDS:
            return (self.shape[0],)
        return self.shape

    def layout(self, tensor: str) -> str:
        """The key of ``layout.TO_CHANNELS_LAST`` that moves ``tensor`` to channels-last."""
        return self.kind if tensor == "weight" and self.kind in LAID_OUT_KINDS else "same"


def conv_layer(
    name: str, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, **kw: object
) -> LayerSpec:
    """A conv with torch's symmetric padding ``kernel // 2`` (1 for 3x3, 0 for 1x1, 3 for 7x7)."""
    return LayerSpec(name, "conv", (c_out, c_in // groups, kernel, kernel), stride, kernel // 2, groups, **kw)


# GroupNorm as timm and BiT use it: 32 groups, eps 1e-5. Weight standardisation's eps is BiT's 1e-8
# (timm's StdConv2d defaults to 1e-6; its BiT models pass 1e-8).
GN_GROUPS = 32
GN_EPS = 1e-5
STD_EPS = 1e-8


def norm_layer(
    name: str, channels: int, kind: str = "bn", groups: int = GN_GROUPS, **kw: object
) -> LayerSpec:
    """A norm: BatchNorm (kind "bn"), or GroupNorm (kind "gn") of ``groups`` groups."""
    return LayerSpec(name, kind, (channels,), groups=groups if kind == "gn" else 1, **kw)


@dataclass(frozen=True)
class ConvNorm:
    """One conv, its norm, and a ReLU after them (``act``): a stem step, or a block's conv unit.
    A pre-activation stem's last conv has neither (``norm`` None, ``act`` False)."""

    conv: LayerSpec
    norm: LayerSpec | None
    act: bool = True


@dataclass(frozen=True)
class StemSpec:
    """The stem: a sequence of conv + norm + ReLU steps, then an optional pool.

    ``pool`` is "max" (3x3/2, padding 1 of -inf, torch's), "max_fixed" (the same with zero padding:
    BiT's and keras.applications' V2, where no ReLU precedes it), "avg" (2x2/2), "max_blur" (3x3/1
    max, then the 3x3/2 blur: timm's anti-aliased stems) or None. A step's layers may sit in a container, as
    timm's deep stem has them (``conv1.0``, ``conv1.1``, ..., the ReLUs in the slots between).
    ``reduction`` is how much smaller the stem's output is than its input, and ``image_size``
    the input size a model of this stem is made for (224 for ImageNet stems, 32 for CIFAR's):
    every tool reads these two rather than deciding by the stem's name.
    """

    kind: str  # the ArchConfig's ``stem``, for display
    steps: tuple[ConvNorm, ...]
    pool: str | None
    image_size: int

    @property
    def in_channels(self) -> int:
        return self.steps[0].conv.shape[1]

    @property
    def out_channels(self) -> int:
        return self.steps[-1].conv.shape[0]

    @property
    def reduction(self) -> int:
        r = 1
        for step in self.steps:
            r *= step.conv.stride
        return r * (2 if self.pool else 1)

    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        return tuple(layer for step in self.steps for layer in (step.conv, step.norm) if layer is not None)


SHORTCUTS = ("identity", "pool", "conv", "avg_conv")


@dataclass(frozen=True)
class ShortcutSpec:
    """A block's shortcut (torchvision's ``downsample``, under ``name``).

    "identity": the input itself. "pool": every ``stride``-th pixel of it (keras.applications' V2:
    a 1x1 max-pool). "conv": a 1x1 conv carrying the block's stride, then a norm.
    "avg_conv" (timm's ``avg_down``, the "D" of ResNet-D): a 2x2 average pool of stride
    ``stride`` (ceil mode, padding not counted; skipped at stride 1), then a 1x1 conv at stride 1
    and a norm. ``conv`` and ``norm`` are ``downsample.0`` and ``.1``, or ``.1`` and ``.2`` after
    the pool's slot, as in torchvision and timm. In a pre-activation block a projection takes the
    pre-activated input and has no norm (``norm`` None); its conv may carry a bias.
    """

    kind: str
    name: str
    stride: int
    conv: LayerSpec | None = None
    norm: LayerSpec | None = None

    @property
    def pools(self) -> bool:
        return self.kind == "avg_conv" and self.stride > 1

    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        return tuple(layer for layer in (self.conv, self.norm) if layer is not None)


def shortcut_spec(
    block: str,
    c_in: int,
    c_out: int,
    stride: int,
    avg_down: bool,
    project: bool = False,
    preact: bool = False,
    bias: bool = False,
    norm: str = "bn",
    std: bool = False,
) -> ShortcutSpec:
    """Identity where the shape is kept (unless ``project``), every ``stride``-th pixel where only
    the size changes in a pre-activation block (keras.applications' V2); else a projection,
    average-pooled first with ``avg_down``, without a norm after it in a pre-activation block."""
    name = f"{block}.downsample"
    if c_in == c_out and not project:
        if stride == 1:
            return ShortcutSpec("identity", name, stride)
        if preact:
            return ShortcutSpec("pool", name, stride)
    # timm keeps avg_down's pool in slot 0 (an identity at stride 1), so conv and norm are 1 and 2.
    kind, first, conv_stride = ("avg_conv", 1, 1) if avg_down else ("conv", 0, stride)
    conv = conv_layer(f"{name}.{first}", c_in, c_out, 1, conv_stride, bias=bias, std=std)
    after = None if preact else norm_layer(f"{name}.{first + 1}", c_out, norm)
    return ShortcutSpec(kind, name, stride, conv, after)


@dataclass(frozen=True)
class AttentionSpec:
    """A part acting on all of a block's channels after its last norm, before the residual add.

    ``kind`` "" is none. ``name`` is the canonical module name (timm's ``layer1.0.se``, whatever
    the kind) and ``channels`` the block's output channels. In forms (a) and (b) it acts on the
    aggregated output exactly as in (c), so its layers are the same in every form.
    """

    kind: str
    name: str
    channels: int
    layers: tuple[LayerSpec, ...] = ()


def make_divisible(v: float, divisor: int = 8) -> int:
    """``v`` to the nearest multiple of ``divisor``, at least ``divisor``: timm's rule for SE's
    reduced width (its ``make_divisible`` with ``round_limit=0``), so 64 / 16 = 4 becomes 8."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


def se_spec(block: str, channels: int, rd_ratio: float) -> AttentionSpec:
    """Squeeze-and-excitation (timm's ``SEModule``): global average pool, 1x1 conv down to
    ``make_divisible(channels * rd_ratio)``, ReLU, 1x1 conv back, sigmoid, times the input.
    Both convs carry biases."""
    name = f"{block}.se"
    rd = make_divisible(channels * rd_ratio)
    fc1 = conv_layer(f"{name}.fc1", channels, rd, 1, bias=True)
    fc2 = conv_layer(f"{name}.fc2", rd, channels, 1, bias=True)
    return AttentionSpec("se", name, channels, (fc1, fc2))


def eca_kernel(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """ECA's kernel size from the channel count (the paper's ``|log2(C) / gamma + b / gamma|``,
    made odd, at least 3): 3 for 64 and 128 channels, 5 for 256 to 2048."""
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def eca_spec(block: str, channels: int, rd_ratio: float) -> AttentionSpec:
    """Efficient channel attention (timm's ``EcaModule``): global average pool, a bias-free 1-D
    conv of ``eca_kernel(channels)`` taps along the channels (zero padded), sigmoid, times the
    input. ``rd_ratio`` is not used: ECA has no reduction."""
    name = f"{block}.se"
    k = eca_kernel(channels)
    return AttentionSpec(
        "eca", name, channels, (LayerSpec(f"{name}.conv", "conv1d", (1, 1, k), padding=k // 2),)
    )


# timm's BlurPool2d filter (aa_layer "blur"): the binomial [1, 2, 1] x [1, 2, 1] / 16, applied to each
# channel after reflect padding by 1. It is fixed, so no state_dict holds it.
BLUR_FILTER = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16


# ArchConfig.attn_layer (timm's name) -> the spec of that part for one block: (block name,
# channels, ArchConfig.attn_rd_ratio) -> AttentionSpec. Register a new kind here and a factory
# in each framework.
AttentionBuilder = Callable[[str, int, float], AttentionSpec]
ATTENTION: dict[str, AttentionBuilder] = {
    "": lambda block, channels, rd_ratio: AttentionSpec("", f"{block}.attn", channels),
    "se": se_spec,
    "eca": eca_spec,
}
