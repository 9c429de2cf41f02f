"""Every shape rule of the architecture, computed once.

``plan(config)`` turns an :class:`ArchConfig` into stem / block / head specs
(channels, strides, widths, whether a projection shortcut exists). ``layers``
lists every weight-bearing layer of a (config, form) under its canonical name,
and ``canonical_shapes`` expands that into the flat ``{name: shape}`` of the
canonical weight format (torch names and layout). The three framework packages
build their networks from ``plan`` and map their weights through ``layers``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ArchConfig, check_form_for

# Suffixes of the tensors each layer kind owns in canonical (torch) naming.
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
BN_STATS = ("running_mean", "running_var")
KIND_TENSORS = {"conv": ("weight",), "bn": BN_TENSORS, "linear": ("weight", "bias")}


@dataclass(frozen=True)
class StemSpec:
    kind: str  # "imagenet": 7x7/2 conv + 3x3/2 max-pool; "cifar": 3x3/1 conv
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    max_pool: bool


@dataclass(frozen=True)
class BlockSpec:
    """One residual block. ``width`` is W = C * path_width for bottlenecks, planes for basic."""

    name: str  # canonical prefix, e.g. "layer2.0"
    block: str  # "basic" or "bottleneck"
    in_channels: int
    width: int
    out_channels: int
    stride: int
    stride_on: str  # which conv of a bottleneck carries the stride: "3x3" or "1x1"
    projection: bool  # 1x1 conv + BN shortcut (torchvision's "downsample")
    cardinality: int
    path_width: int

    @property
    def conv1_stride(self) -> int:
        """A basic block strides in its first 3x3; a bottleneck in its 3x3 unless stride_on='1x1'."""
        if self.block == "basic" or self.stride_on == "1x1":
            return self.stride
        return 1

    @property
    def conv2_stride(self) -> int:
        return self.stride if self.block == "bottleneck" and self.stride_on == "3x3" else 1

    def path_slice(self, p: int) -> slice:
        """Channels of the grouped form (c) owned by path p of forms (a)/(b)."""
        return slice(p * self.path_width, (p + 1) * self.path_width)


@dataclass(frozen=True)
class HeadSpec:
    in_features: int
    num_classes: int


@dataclass(frozen=True)
class Plan:
    stem: StemSpec
    stages: tuple[tuple[BlockSpec, ...], ...]
    head: HeadSpec

    @property
    def blocks(self) -> tuple[BlockSpec, ...]:
        return tuple(b for stage in self.stages for b in stage)


@dataclass(frozen=True)
class LayerSpec:
    """A weight-bearing layer: ``shape`` is OIHW for conv, (out, in) for linear, (C,) for BN."""

    name: str
    kind: str  # "conv", "bn" or "linear"
    shape: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}.{t}" for t in KIND_TENSORS[self.kind])


def plan(config: ArchConfig) -> Plan:
    """Stem, blocks and head of ``config``: torchvision's rules.

    Stage s has planes = 64 * 2**s; a bottleneck's width is
    ``int(planes * base_width / 64) * cardinality`` and its output ``4 * planes``.
    Stage 1 has stride 1, every later stage stride 2 in its first block; a
    projection shortcut exists only where the stride or the channel count changes.
    """
    if config.stem == "imagenet":
        stem = StemSpec("imagenet", config.in_channels, config.stem_width, 7, 2, 3, True)
    else:
        stem = StemSpec("cifar", config.in_channels, config.stem_width, 3, 1, 1, False)
    expansion = 4 if config.block == "bottleneck" else 1
    in_ch = config.stem_width
    stages = []
    for s, n_blocks in enumerate(config.layers):
        planes = 64 * 2**s
        if config.block == "bottleneck":
            path_width = int(planes * config.base_width / 64)
            width = path_width * config.cardinality
        else:
            path_width = width = planes
        out_ch = planes * expansion
        blocks = []
        for i in range(n_blocks):
            stride = 2 if (s > 0 and i == 0) else 1
            blocks.append(
                BlockSpec(
                    name=f"layer{s + 1}.{i}",
                    block=config.block,
                    in_channels=in_ch,
                    width=width,
                    out_channels=out_ch,
                    stride=stride,
                    stride_on=config.stride_on,
                    projection=stride != 1 or in_ch != out_ch,
                    cardinality=config.cardinality,
                    path_width=path_width,
                )
            )
            in_ch = out_ch
        stages.append(tuple(blocks))
    return Plan(stem, tuple(stages), HeadSpec(in_ch, config.num_classes))


def stem_layers(stem: StemSpec) -> list[LayerSpec]:
    k = stem.kernel
    return [
        LayerSpec("conv1", "conv", (stem.out_channels, stem.in_channels, k, k), stem.stride, stem.padding),
        LayerSpec("bn1", "bn", (stem.out_channels,)),
    ]


def block_layers(b: BlockSpec, form: str) -> list[LayerSpec]:
    """The layers of one block in canonical order and naming for ``form``."""
    n = b.name
    if b.block == "basic":
        layers = [
            LayerSpec(f"{n}.conv1", "conv", (b.width, b.in_channels, 3, 3), b.conv1_stride, 1),
            LayerSpec(f"{n}.bn1", "bn", (b.width,)),
            LayerSpec(f"{n}.conv2", "conv", (b.width, b.width, 3, 3), 1, 1),
            LayerSpec(f"{n}.bn2", "bn", (b.width,)),
        ]
    elif form == "c":
        layers = [
            LayerSpec(f"{n}.conv1", "conv", (b.width, b.in_channels, 1, 1), b.conv1_stride),
            LayerSpec(f"{n}.bn1", "bn", (b.width,)),
            LayerSpec(f"{n}.conv2", "conv", (b.width, b.path_width, 3, 3), b.conv2_stride, 1, b.cardinality),
            LayerSpec(f"{n}.bn2", "bn", (b.width,)),
            LayerSpec(f"{n}.conv3", "conv", (b.out_channels, b.width, 1, 1)),
            LayerSpec(f"{n}.bn3", "bn", (b.out_channels,)),
        ]
    else:
        w = b.path_width
        layers = []
        for p in range(b.cardinality):
            q = f"{n}.paths.{p}"
            layers += [
                LayerSpec(f"{q}.conv1", "conv", (w, b.in_channels, 1, 1), b.conv1_stride),
                LayerSpec(f"{q}.bn1", "bn", (w,)),
                LayerSpec(f"{q}.conv2", "conv", (w, w, 3, 3), b.conv2_stride, 1),
                LayerSpec(f"{q}.bn2", "bn", (w,)),
            ]
            if form == "a":
                layers.append(LayerSpec(f"{q}.conv3", "conv", (b.out_channels, w, 1, 1)))
        if form == "b":
            layers.append(LayerSpec(f"{n}.conv3", "conv", (b.out_channels, b.width, 1, 1)))
        layers.append(LayerSpec(f"{n}.bn3", "bn", (b.out_channels,)))
    if b.projection:
        layers += [
            LayerSpec(f"{n}.downsample.0", "conv", (b.out_channels, b.in_channels, 1, 1), b.stride),
            LayerSpec(f"{n}.downsample.1", "bn", (b.out_channels,)),
        ]
    return layers


def head_layers(head: HeadSpec) -> list[LayerSpec]:
    """The classifier; a headless model (``num_classes=0``) has none."""
    if head.num_classes == 0:
        return []
    return [LayerSpec("fc", "linear", (head.num_classes, head.in_features))]


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
    reduction = p.stem.stride * (2 if p.stem.max_pool else 1)
    info = []
    for s, stage in enumerate(p.stages):
        reduction *= stage[0].stride
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
    out = stem_layers(p.stem)
    for b in p.blocks:
        out += block_layers(b, form)
    return out + head_layers(p.head)


def tensor_shape(layer: LayerSpec, suffix: str) -> tuple[int, ...]:
    if layer.kind == "linear" and suffix == "bias":
        return (layer.shape[0],)
    return layer.shape


def canonical_shapes(config: ArchConfig, form: str = "c") -> dict[str, tuple[int, ...]]:
    """The canonical ``{name: shape}`` of ``config`` in ``form``.

    Form (c) equals torchvision's ``state_dict`` minus ``num_batches_tracked``.
    """
    return {
        f"{layer.name}.{t}": tensor_shape(layer, t)
        for layer in layers(config, form)
        for t in KIND_TENSORS[layer.kind]
    }


def is_running_stat(name: str) -> bool:
    """BN running statistics are buffers, not parameters: never counted or differentiated."""
    return name.rsplit(".", 1)[-1] in BN_STATS


# Canonical (torch) layout <-> the channels-last layout that Keras and Flax share:
# conv kernels OIHW <-> HWIO, linear (out, in) <-> (in, out). Transposes only, so
# both directions are exact. Each framework keeps its own variable names.
TO_CHANNELS_LAST = {
    "conv": lambda a: a.transpose(2, 3, 1, 0),
    "linear": lambda a: a.T,
    "same": lambda a: a,
}
FROM_CHANNELS_LAST = {
    "conv": lambda a: a.transpose(3, 2, 0, 1),
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
        (
            f"{layer.name}.{t}",
            layer.name,
            layer.kind,
            t,
            layer.kind if layer.kind != "bn" and t == "weight" else "same",
        )
        for layer in layers(config, form)
        for t in KIND_TENSORS[layer.kind]
    ]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one spatial axis (torch's formula)."""
    return (size + 2 * padding - kernel) // stride + 1
