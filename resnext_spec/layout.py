"""Every shape rule of the architecture, computed once.

``plan(config)`` turns an :class:`ArchConfig` into its parts (``resnext_spec.parts``): the
stem, every block (channels, strides, widths, its shortcut and attention parts) and the head.
``layers`` lists every weight-bearing layer of a (config, form) under its canonical name, and
``canonical_shapes`` expands that into the flat ``{name: shape}`` of the canonical weight
format (torch names and layout). ``body_layers`` is the only function here that knows the
forms. The three framework packages build their networks from ``plan`` and map their weights
through ``layers``; parameter and FLOP counts (``counting``) are read off the same layers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from . import parts
from .config import ArchConfig, check_form_for
from .errors import ConfigError
from .parts import (
    ATTENTION,
    BN_STATS,
    BN_TENSORS,
    GN_GROUPS,
    KIND_TENSORS,
    AttentionSpec,
    ConvNorm,
    LayerSpec,
    ShortcutSpec,
    StemSpec,
    norm_layer,
    shortcut_spec,
)

# Re-exported: the layer vocabulary is read from here by the framework packages.
__all__ = ["BN_STATS", "BN_TENSORS", "KIND_TENSORS", "AttentionSpec", "LayerSpec", "ShortcutSpec", "StemSpec"]


def stem_spec(config: ArchConfig) -> StemSpec:
    """The stem of ``config``: the one place that decides what each stem kind is.

    "imagenet": a 7x7/2 conv, BN, ReLU, 3x3/2 max-pool (made for 224 px). "cifar": a 3x3/1
    conv, BN, ReLU (made for 32 px). ``stem_type`` "deep"/"deep_tiered" makes the conv three
    3x3 convs, the first carrying the stride, named as in timm's ``nn.Sequential``: ``conv1.0``,
    ``conv1.1``, ``conv1.3``, ``conv1.4``, ``conv1.6`` and ``bn1``. ``replace_stem_pool`` makes
    the max-pool a 3x3/2 conv, BN and ReLU at ``maxpool.0``, ``maxpool.1``; ``aa_layer`` makes it
    a 2x2 average pool ("avg") or a 3x3/1 max-pool and the blur ("blur"); "fixed" pads the max-pool
    with zeros ("max_fixed"). ``preact`` leaves the
    last conv without its norm and ReLU (the first block's ``bn0`` is the norm of its output).
    """
    c_in, w = config.in_channels, config.stem_width
    imagenet = config.stem == "imagenet"
    conv_layer, norm_layer = _conv_norm(config)
    stride = 2 if imagenet else 1
    if config.stem_type in ("deep", "deep_tiered"):
        widths = (3 * (w // 4) if config.stem_type == "deep_tiered" else w, w, 2 * w)
        steps = (
            ConvNorm(conv_layer("conv1.0", c_in, widths[0], 3, stride), norm_layer("conv1.1", widths[0])),
            ConvNorm(conv_layer("conv1.3", widths[0], widths[1], 3), norm_layer("conv1.4", widths[1])),
            ConvNorm(conv_layer("conv1.6", widths[1], widths[2], 3), norm_layer("bn1", widths[2])),
        )
    else:
        steps = (ConvNorm(conv_layer("conv1", c_in, w, 7 if imagenet else 3, stride), norm_layer("bn1", w)),)
    if config.preact:  # the first block's bn0 normalises the stem's output
        last = steps[-1].conv
        conv = replace(last, bias=config.conv_bias)
        steps = (*steps[:-1], ConvNorm(conv, None, act=False))
    out = steps[-1].conv.shape[0]
    if config.replace_stem_pool:
        steps += (ConvNorm(conv_layer("maxpool.0", out, out, 3, 2), norm_layer("maxpool.1", out)),)
    pool = None
    if imagenet and not config.replace_stem_pool:
        pool = {"": "max", "avg": "avg", "blur": "max_blur"}[config.aa_layer]
        pool = "max_fixed" if config.stem_type == "fixed" else pool
    return StemSpec(config.stem, steps, pool, 224 if imagenet else 32)


def _conv_norm(config: ArchConfig):
    """``parts.conv_layer`` and ``parts.norm_layer`` for ``config``'s kind of conv and norm."""
    kind = NORM_KINDS[config.norm_type]
    return partial(parts.conv_layer, std=config.std_conv), partial(parts.norm_layer, kind=kind)


# ArchConfig.norm_type -> the norm layers' kind
NORM_KINDS = {"batch": "bn", "group": "gn"}


def check_image_size(config: ArchConfig) -> int:
    """The image size that checks run at (parity, ``port --verify``): the stem's own, at most 64 px,
    which keeps every stage's map at least 2 px wide at a fraction of 224 px's cost."""
    return min(stem_spec(config).image_size, 64)


@dataclass(frozen=True)
class BlockSpec:
    """One residual block. ``width`` is W = C * path_width for bottlenecks, planes for basic.

    The block computes ``act(attention(body(x)) + shortcut(x))``; ``body_layers`` gives the body's
    layers in a form, ``shortcut`` and ``attention`` the parts around it.
    """

    name: str  # canonical prefix, e.g. "layer2.0"
    block: str  # "basic" or "bottleneck"
    in_channels: int
    width: int
    out_channels: int
    stride: int
    stride_on: str  # which conv of a bottleneck carries the stride: "3x3" or "1x1"
    cardinality: int
    path_width: int
    shortcut: ShortcutSpec
    attention: AttentionSpec
    # timm's aa_layer where this block downsamples ("" elsewhere): the strided conv (the 3x3, a basic
    # block's first) runs at stride 1 and this pool, of stride ``stride``, follows its ReLU.
    aa: str = ""
    # ArchConfig.preact: the block is ``body(relu(bn0(x))) + shortcut(...)``, no ReLU after the sum;
    # the body ends on its last conv, with a bias where ``conv_bias``.
    preact: bool = False
    conv_bias: bool = False
    norm: str = "bn"  # the norms' kind: "bn", or "gn" (GroupNorm)
    std_conv: bool = False  # every conv's kernel standardised on each call

    @property
    def projection(self) -> bool:
        """A conv shortcut (torchvision's "downsample"), plain or average-pooled."""
        return self.shortcut.conv is not None

    @property
    def pre_norm(self) -> LayerSpec | None:
        """A pre-activation block's norm on its input (``bn0``); None in a post-activation block."""
        return norm_layer(f"{self.name}.bn0", self.in_channels, self.norm) if self.preact else None

    def path_groups(self) -> int:
        """A GroupNorm's groups on one path of forms (a)/(b): (c)'s 32 shared among the C paths, so
        that each group holds the same channels in every form (``check_form_for`` sees they divide)."""
        return GN_GROUPS // self.cardinality

    @property
    def conv1_stride(self) -> int:
        """A basic block strides in its first 3x3; a bottleneck in its 3x3 unless stride_on='1x1'."""
        if (self.block == "basic" or self.stride_on == "1x1") and not self.aa:
            return self.stride
        return 1

    @property
    def conv2_stride(self) -> int:
        return self.stride if self.block == "bottleneck" and self.stride_on == "3x3" and not self.aa else 1

    @property
    def aa_after(self) -> str:
        """The conv whose ReLU the anti-aliasing pool follows: a bottleneck's 3x3, a basic block's first."""
        return "conv2" if self.block == "bottleneck" else "conv1"

    def path_slice(self, p: int) -> slice:
        """Channels of the grouped form (c) owned by path p of forms (a)/(b)."""
        return slice(p * self.path_width, (p + 1) * self.path_width)


@dataclass(frozen=True)
class HeadSpec:
    """The pooled features and the classifier; a pre-activation network's final norm and ReLU
    (``norm``, timm's name) come before the pool."""

    in_features: int
    num_classes: int
    norm: LayerSpec | None = None


@dataclass(frozen=True)
class Plan:
    stem: StemSpec
    stages: tuple[tuple[BlockSpec, ...], ...]
    head: HeadSpec

    @property
    def blocks(self) -> tuple[BlockSpec, ...]:
        return tuple(b for stage in self.stages for b in stage)


def plan(config: ArchConfig) -> Plan:
    """Stem, blocks and head of ``config``: torchvision's rules.

    Stage s has planes = 64 * 2**s (or ``config.channels[s]``), times ``width_factor``; a bottleneck's
    width is
    ``int(planes * base_width / 64) * cardinality`` and its output ``4 * planes``.
    Stage 1 has stride 1, every later stage stride 2 in its first block; a
    projection shortcut exists only where the stride or the channel count changes.
    """
    stem = stem_spec(config)
    expansion = 4 if config.block == "bottleneck" else 1
    in_ch = stem.out_channels
    stages = []
    for s, n_blocks in enumerate(config.layers):
        planes = (config.channels[s] if config.channels else 64 * 2**s) * config.width_factor
        if config.block == "bottleneck":
            path_width = int(planes * config.base_width / 64)
            width = path_width * config.cardinality
        else:
            path_width = width = planes
        out_ch = planes * expansion
        blocks = []
        for i in range(n_blocks):
            if config.stride_at == "first":
                stride = 2 if (s > 0 and i == 0) else 1
            else:  # keras.applications' V2: the same total stride, one stage earlier
                stride = 2 if (s < len(config.layers) - 1 and i == n_blocks - 1) else 1
            name = f"layer{s + 1}.{i}"
            blocks.append(
                BlockSpec(
                    name=name,
                    block=config.block,
                    in_channels=in_ch,
                    width=width,
                    out_channels=out_ch,
                    stride=stride,
                    stride_on=config.stride_on,
                    cardinality=config.cardinality,
                    path_width=path_width,
                    shortcut=shortcut_spec(
                        name,
                        in_ch,
                        out_ch,
                        stride,
                        config.avg_down,
                        config.first_shortcut and s == 0 and i == 0,
                        config.preact,
                        config.conv_bias,
                        NORM_KINDS[config.norm_type],
                        config.std_conv,
                    ),
                    attention=ATTENTION[config.attn_layer](name, out_ch, config.attn_rd_ratio),
                    aa=config.aa_layer if stride > 1 else "",
                    preact=config.preact,
                    conv_bias=config.conv_bias,
                    norm=NORM_KINDS[config.norm_type],
                    std_conv=config.std_conv,
                )
            )
            in_ch = out_ch
        stages.append(tuple(blocks))
    norm = norm_layer("norm", in_ch, NORM_KINDS[config.norm_type]) if config.preact else None
    p = Plan(stem, tuple(stages), HeadSpec(in_ch, config.num_classes, norm))
    if config.norm_type == "group":
        _check_groups(p)
    return p


def _check_groups(p: Plan) -> None:
    """Every GroupNorm's channels split into its 32 groups."""
    odd = sorted(
        {layer.shape[0] for layer in _all_layers(p) if layer.kind == "gn" and layer.shape[0] % GN_GROUPS}
    )
    if odd:
        raise ConfigError(f"GroupNorm's {GN_GROUPS} groups need channels divisible by {GN_GROUPS}, got {odd}")


def _all_layers(p: Plan) -> list[LayerSpec]:
    out = list(p.stem.layers)
    for b in p.blocks:
        out += block_layers(b, "c")
    return out + head_layers(p.head)


def body_layers(b: BlockSpec, form: str) -> list[LayerSpec]:
    """The layers of one block's body in canonical order and naming for ``form``: the only code
    of the spec that knows the forms.

    (c): conv1 1x1, bn1, conv2 3x3 with C groups, bn2, conv3 1x1, bn3. (b): per path conv1, bn1,
    conv2, bn2 (rows of (c)'s), then the shared conv3, bn3. (a): per path conv1, bn1, conv2, bn2,
    conv3 (the path's input columns of (c)'s conv3), then the shared bn3. A basic block: conv1,
    bn1, conv2, bn2, all 3x3. A pre-activation body has no last norm (bn3; a basic block's bn2):
    its norms bn1, bn2 follow conv1, conv2 as in a post-activation body, and the norm before conv1
    is the block's own (``BlockSpec.pre_norm``), shared with its shortcut.
    """
    n, post, bias = b.name, not b.preact, b.conv_bias
    conv_layer = partial(parts.conv_layer, std=b.std_conv)
    norm_layer = partial(parts.norm_layer, kind=b.norm)
    path_norm = partial(parts.norm_layer, kind=b.norm, groups=b.path_groups())
    if b.block == "basic":
        return [
            conv_layer(f"{n}.conv1", b.in_channels, b.width, 3, b.conv1_stride),
            norm_layer(f"{n}.bn1", b.width),
            conv_layer(f"{n}.conv2", b.width, b.width, 3, b.conv2_stride, bias=bias),
            *([norm_layer(f"{n}.bn2", b.width)] if post else []),
        ]
    if form == "c":
        return [
            conv_layer(f"{n}.conv1", b.in_channels, b.width, 1, b.conv1_stride),
            norm_layer(f"{n}.bn1", b.width),
            conv_layer(f"{n}.conv2", b.width, b.width, 3, b.conv2_stride, b.cardinality),
            norm_layer(f"{n}.bn2", b.width),
            conv_layer(f"{n}.conv3", b.width, b.out_channels, 1, bias=bias),
            *([norm_layer(f"{n}.bn3", b.out_channels)] if post else []),
        ]
    w = b.path_width
    out = []
    for p in range(b.cardinality):
        q = f"{n}.paths.{p}"
        out += [
            conv_layer(f"{q}.conv1", b.in_channels, w, 1, b.conv1_stride, path=p),
            path_norm(f"{q}.bn1", w, path=p),
            conv_layer(f"{q}.conv2", w, w, 3, b.conv2_stride, path=p),
            path_norm(f"{q}.bn2", w, path=p),
        ]
        if form == "a":
            out.append(conv_layer(f"{q}.conv3", w, b.out_channels, 1, path=p, cut_axis=1))
    if form == "b":
        out.append(conv_layer(f"{n}.conv3", b.width, b.out_channels, 1, bias=bias))
    if post:
        return [*out, norm_layer(f"{n}.bn3", b.out_channels)]
    # Pre-activation: no norm after the sum; form (a)'s conv3 bias is added once, to the sum.
    return [*out, LayerSpec(f"{n}.conv3", "bias", (b.out_channels,))] if form == "a" and bias else out


def block_layers(b: BlockSpec, form: str) -> list[LayerSpec]:
    """The layers of one block in canonical order for ``form``: pre-norm, body, attention, shortcut."""
    pre = [b.pre_norm] if b.preact else []
    return [*pre, *body_layers(b, form), *b.attention.layers, *b.shortcut.layers]


def form_c_name(layer: LayerSpec) -> str:
    """The form-(c) layer that a path layer of form (a)/(b) is a slice of (itself if not a path's)."""
    return layer.name if layer.path is None else layer.name.replace(f".paths.{layer.path}.", ".")


def head_layers(head: HeadSpec) -> list[LayerSpec]:
    """A pre-activation network's final norm, and the classifier (a headless model has none)."""
    norm = [head.norm] if head.norm is not None else []
    if head.num_classes == 0:
        return norm
    return [*norm, LayerSpec("fc", "linear", (head.num_classes, head.in_features))]


HEAD_TENSORS = ("fc.weight", "fc.bias")


@dataclass(frozen=True)
class FeatureInfo:
    """One stage's output as a backbone gives it (timm's ``feature_info`` keys)."""

    module: str  # "layer2"
    num_chs: int
    reduction: int  # input size / feature-map size


def feature_info(config: ArchConfig) -> list[FeatureInfo]:
    """Every stage's output channels and stride: 4, 8, 16, 32 after the ImageNet stem (which
    reduces by 4), 1, 2, 4, 8 after the CIFAR stem."""
    p = plan(config)
    reduction = p.stem.reduction
    info = []
    for s, stage in enumerate(p.stages):
        for b in stage:
            reduction *= b.stride
        info.append(FeatureInfo(f"layer{s + 1}", stage[-1].out_channels, reduction))
    return info


def stage_names(config: ArchConfig) -> tuple[str, ...]:
    """The points where two builds are compared, in the order the network reaches them: the stem's
    output, each stage's, the pooled features, and the logits (absent from a headless model).
    ``forward_stages`` in every framework returns a dict with exactly these keys."""
    names = ("stem", *(f.module for f in feature_info(config)), "pool")
    return names if config.headless else (*names, "logits")


def layers(config: ArchConfig, form: str = "c") -> list[LayerSpec]:
    """Every weight-bearing layer of ``config`` in ``form``, in torchvision's order."""
    check_form_for(config, form)
    p = plan(config)
    out = list(p.stem.layers)
    for b in p.blocks:
        out += block_layers(b, form)
    return out + head_layers(p.head)


def canonical_shapes(config: ArchConfig, form: str = "c") -> dict[str, tuple[int, ...]]:
    """The canonical ``{name: shape}`` of ``config`` in ``form``.

    Form (c) equals torchvision's ``state_dict`` minus ``num_batches_tracked``.
    """
    return {
        f"{layer.name}.{t}": layer.tensor_shape(t) for layer in layers(config, form) for t in layer.tensors
    }


def is_running_stat(name: str) -> bool:
    """BN running statistics are buffers, not parameters: never counted or differentiated."""
    return name.rsplit(".", 1)[-1] in BN_STATS


# Canonical (torch) layout <-> the channels-last layout that Keras and Flax share:
# conv kernels OIHW <-> HWIO, 1-D kernels (out, in, k) <-> (k, in, out), linear (out, in) <->
# (in, out). Transposes only, so both directions are exact. Each framework keeps its own
# variable names.
TO_CHANNELS_LAST = {
    "conv": lambda a: a.transpose(2, 3, 1, 0),
    "conv1d": lambda a: a.transpose(2, 1, 0),
    "linear": lambda a: a.T,
    "same": lambda a: a,
}
FROM_CHANNELS_LAST = {
    "conv": lambda a: a.transpose(3, 2, 0, 1),
    "conv1d": lambda a: a.transpose(2, 1, 0),
    "linear": lambda a: a.T,
    "same": lambda a: a,
}


def tensor_table(config: ArchConfig, form: str = "c") -> list[tuple[str, str, str, str, str]]:
    """(canonical name, layer name, layer kind, tensor, layout transform) for every canonical tensor.

    In canonical order. ``tensor`` is the torch suffix (``weight``, ``running_var``,
    ...), ``transform`` the key of ``TO_CHANNELS_LAST``. Keras and Flax each map
    (kind, tensor) to their own variable name and otherwise share this table.
    """
    return [
        (f"{layer.name}.{t}", layer.name, layer.kind, t, layer.layout(t))
        for layer in layers(config, form)
        for t in layer.tensors
    ]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one spatial axis (torch's formula)."""
    return (size + 2 * padding - kernel) // stride + 1
