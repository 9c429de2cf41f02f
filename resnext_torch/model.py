"""ResNet / ResNeXt in PyTorch, in the paper's three block forms.

Form (c) uses torchvision's module names, so a torchvision ``state_dict`` loads
with ``load_state_dict(strict=True)``. Forms (a) and (b) spell out the C paths
of figure 3 of the paper. Every shape comes from ``resnext_spec.plan``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from resnext_spec import ArchConfig, check_form_for, feature_info, resolve_config
from resnext_spec.errors import ConfigError
from resnext_spec.layout import AttentionSpec, BlockSpec, LayerSpec, ShortcutSpec, StemSpec, plan
from resnext_spec.parts import BLUR_FILTER, GN_EPS, GN_GROUPS, STD_EPS

# BN settings appear once: eps 1e-5 and momentum 0.1 are torch's (and torchvision's) defaults.
# Any ``norm_layer`` (torchvision's name: a callable taking the channel count) can replace it,
# e.g. torchvision's FrozenBatchNorm2d to fine-tune with frozen statistics.
NormLayer = Callable[[int], nn.Module]
batch_norm: NormLayer = partial(nn.BatchNorm2d, eps=1e-5, momentum=0.1)


class StdConv2d(nn.Conv2d):
    """A conv whose kernel is standardised on each call (BiT; timm's ``StdConv2d``): per output
    filter, zero mean and unit biased variance over (in, kh, kw), eps 1e-8. The parameter is the
    raw kernel, so a state_dict holds what timm's does."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        mean = w.mean((1, 2, 3), keepdim=True)
        var = w.var((1, 2, 3), unbiased=False, keepdim=True)
        return self._conv_forward(x, (w - mean) / torch.sqrt(var + STD_EPS), self.bias)


def conv(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    std: bool = False,
) -> nn.Conv2d:
    """A conv with symmetric padding (1 for 3x3, 0 for 1x1, 3 for 7x7), bias-free unless asked,
    weight-standardised with ``std``."""
    kind = StdConv2d if std else nn.Conv2d
    return kind(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)


def conv_from(layer: LayerSpec) -> nn.Conv2d:
    """The conv a spec's ``LayerSpec`` describes."""
    c_out, c_in_per_group, k, _ = layer.shape
    return conv(c_in_per_group * layer.groups, c_out, k, layer.stride, layer.groups, layer.bias, layer.std)


def group_norm(channels: int, groups: int = GN_GROUPS) -> nn.GroupNorm:
    """GroupNorm as timm's ``*_gn`` and BiT use it: 32 groups, eps 1e-5."""
    return nn.GroupNorm(groups, channels, eps=GN_EPS)


# ArchConfig.norm_type -> the default norm_layer
NORM_LAYERS: dict[str, NormLayer] = {"batch": batch_norm, "group": group_norm}


def path_norm(b: BlockSpec, norm_layer: NormLayer) -> NormLayer:
    """The norm of one path of forms (a)/(b): BN is per channel, so the block's; GroupNorm's groups
    are shared among the paths (``BlockSpec.path_groups``)."""
    return partial(group_norm, groups=b.path_groups()) if b.norm == "gn" else norm_layer


# The parts around a block's body, one factory per kind (``resnext_spec.parts``). A new part kind is a
# new entry here, in Keras's and in Flax's tables, and in the spec's: docs/development.md.
def _conv_norm(s: ShortcutSpec, norm_layer: NormLayer) -> list[nn.Module]:
    """A projection's conv and its norm (none in a pre-activation block)."""
    return [conv_from(s.conv)] + ([norm_layer(s.norm.shape[0])] if s.norm is not None else [])


def _projection(s: ShortcutSpec, norm_layer: NormLayer) -> nn.Sequential:
    """torchvision's ``downsample``: 1x1 conv carrying the stride, then the norm."""
    return nn.Sequential(*_conv_norm(s, norm_layer))


def _avg_projection(s: ShortcutSpec, norm_layer: NormLayer) -> nn.Sequential:
    """timm's ``avg_down``: 2x2 average pool (ceil mode, padding not counted), 1x1 conv, norm."""
    pool = nn.AvgPool2d(2, s.stride, ceil_mode=True, count_include_pad=False) if s.pools else nn.Identity()
    return nn.Sequential(pool, *_conv_norm(s, norm_layer))


SHORTCUTS: dict[str, Callable[[ShortcutSpec, NormLayer], nn.Module | None]] = {
    "identity": lambda s, norm_layer: None,
    "pool": lambda s, norm_layer: nn.MaxPool2d(1, s.stride),  # keras.applications' V2: every 2nd pixel
    "conv": _projection,
    "avg_conv": _avg_projection,
}


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: the input scaled per channel by ``sigmoid(fc2(relu(fc1(mean))))``."""

    def __init__(self, a: AttentionSpec) -> None:
        super().__init__()
        fc1, fc2 = a.layers
        self.fc1 = conv_from(fc1)
        self.fc2 = conv_from(fc2)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class EfficientChannelAttention(nn.Module):
    """ECA: the input scaled per channel by the sigmoid of a 1-D conv along its pooled channels."""

    def __init__(self, a: AttentionSpec) -> None:
        super().__init__()
        (layer,) = a.layers
        self.conv = nn.Conv1d(1, 1, layer.shape[-1], padding=layer.padding, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        s = self.conv(x.mean((2, 3)).unsqueeze(1))  # (N, 1, C): the channels are the 1-D axis
        return x * torch.sigmoid(s).view(x.shape[0], -1, 1, 1)


ATTENTION: dict[str, Callable[[AttentionSpec], nn.Module | None]] = {
    "": lambda a: None,
    "se": SqueezeExcite,
    "eca": EfficientChannelAttention,
}


class BlurPool(nn.Module):
    """timm's BlurPool2d: the fixed 3x3 binomial filter ([1, 2, 1] x [1, 2, 1] / 16) on each channel,
    reflect-padded by 1, at ``stride``. It holds no tensor (timm's buffer is not in its state_dict)."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        kernel = torch.tensor(BLUR_FILTER, dtype=x.dtype, device=x.device).expand(x.shape[1], 1, 3, 3)
        x = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        return nn.functional.conv2d(x, kernel, stride=self.stride, groups=x.shape[1])


# timm's aa_layer, after the ReLU of a downsampling block's strided conv (which then runs at stride 1).
AA: dict[str, Callable[[int], nn.Module]] = {
    "": lambda stride: nn.Identity(),
    "avg": lambda stride: nn.AvgPool2d(stride),
    "blur": BlurPool,
}
# The stem's pool, by StemSpec.pool: torchvision's max-pool, or timm's anti-aliased ones.
STEM_POOLS: dict[str, Callable[[], nn.Module]] = {
    "max": lambda: nn.MaxPool2d(3, 2, 1),
    "max_fixed": lambda: nn.Sequential(nn.ConstantPad2d(1, 0.0), nn.MaxPool2d(3, 2)),
    "avg": lambda: nn.AvgPool2d(2),
    "max_blur": lambda: nn.Sequential(nn.MaxPool2d(3, 1, 1), BlurPool(2)),
}


def add_at(root: nn.Module, name: str, module: nn.Module) -> None:
    """``module`` at the dotted ``name`` under ``root``, making the containers on the way
    (timm's deep stem keeps its convs in ``conv1.0``, ``conv1.3``, ...)."""
    *parents, leaf = name.split(".")
    for part in parents:
        if not hasattr(root, part):
            root.add_module(part, nn.Module())
        root = getattr(root, part)
    root.add_module(leaf, module)


class Bias(nn.Module):
    """A per-channel bias alone: form (a)'s conv3 bias in a pre-activation block with conv biases."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias.view(1, -1, 1, 1)


def last_norm(b: BlockSpec, norm_layer: NormLayer, channels: int) -> nn.Module:
    """The norm that ends a post-activation body; a pre-activation body ends on its conv."""
    return nn.Identity() if b.preact else norm_layer(channels)


class ResidualBlock(nn.Module):
    """``relu(attention(body(x)) + shortcut(x))``, written once for every block; pre-activation
    (ResNet v2) is ``body(relu(bn0(x))) + shortcut(...)``, the projection taking the pre-activated
    input, with no ReLU after the sum.

    A form's block makes its body's layers in ``__init__``, then calls ``add_parts`` for the
    attention, ReLU, pre-norm and shortcut the spec gives it, and defines ``body``: that is all a
    form writes.
    """

    attention_name: str | None = None

    def add_parts(self, b: BlockSpec, norm_layer: NormLayer) -> None:
        attention = ATTENTION[b.attention.kind](b.attention)
        if attention is not None:
            self.attention_name = b.attention.name.rsplit(".", 1)[-1]  # timm's ``se``
            self.add_module(self.attention_name, attention)
        self.relu = nn.ReLU(inplace=True)
        self.bn0 = norm_layer(b.in_channels) if b.preact else None
        self.downsample = SHORTCUTS[b.shortcut.kind](b.shortcut, norm_layer)
        self.projects = b.projection

    def body(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        pre = x if self.bn0 is None else self.relu(self.bn0(x))
        identity = x if self.downsample is None else self.downsample(pre if self.projects else x)
        out = self.body(pre)
        if self.attention_name is not None:
            out = getattr(self, self.attention_name)(out)
        return out + identity if self.bn0 is not None else self.relu(out + identity)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (ResNet-18/34). No paths, so it exists in form (c) only."""

    def __init__(self, b: BlockSpec, norm_layer: NormLayer = batch_norm) -> None:
        super().__init__()
        self.conv1 = conv(b.in_channels, b.width, 3, b.conv1_stride, std=b.std_conv)
        self.bn1 = norm_layer(b.width)
        self.aa = AA[b.aa](b.stride)
        self.conv2 = conv(b.width, b.width, 3, b.conv2_stride, bias=b.conv_bias, std=b.std_conv)
        self.bn2 = last_norm(b, norm_layer, b.width)
        self.add_parts(b, norm_layer)

    def body(self, x: Tensor) -> Tensor:
        out = self.aa(self.relu(self.bn1(self.conv1(x))))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """Form (c), grouped convolution: 1x1 -> 3x3 with groups=C -> 1x1 (torchvision's Bottleneck)."""

    def __init__(self, b: BlockSpec, norm_layer: NormLayer = batch_norm) -> None:
        super().__init__()
        self.conv1 = conv(b.in_channels, b.width, 1, b.conv1_stride, std=b.std_conv)
        self.bn1 = norm_layer(b.width)
        self.conv2 = conv(b.width, b.width, 3, b.conv2_stride, groups=b.cardinality, std=b.std_conv)
        self.bn2 = norm_layer(b.width)
        self.aa = AA[b.aa](b.stride)
        self.conv3 = conv(b.width, b.out_channels, 1, bias=b.conv_bias, std=b.std_conv)
        self.bn3 = last_norm(b, norm_layer, b.out_channels)
        self.add_parts(b, norm_layer)

    def body(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.aa(self.relu(self.bn2(self.conv2(out))))
        return self.bn3(self.conv3(out))


class Path(nn.Module):
    """One of the C paths of forms (a)/(b): 1x1 -> 3x3 (-> 1x1 in form (a), no BN after it)."""

    def __init__(self, b: BlockSpec, with_conv3: bool, norm_layer: NormLayer = batch_norm) -> None:
        super().__init__()
        w = b.path_width
        self.conv1 = conv(b.in_channels, w, 1, b.conv1_stride, std=b.std_conv)
        self.bn1 = norm_layer(w)
        self.conv2 = conv(w, w, 3, b.conv2_stride, std=b.std_conv)
        self.bn2 = norm_layer(w)
        self.aa = AA[b.aa](b.stride)  # a per-channel pool: on each path as on the grouped conv's output
        self.conv3 = (
            conv(w, b.out_channels, 1, std=b.std_conv) if with_conv3 else None
        )  # its bias is the block's
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.aa(self.relu(self.bn2(self.conv2(out))))
        return out if self.conv3 is None else self.conv3(out)


class EarlyConcatBottleneck(ResidualBlock):
    """Form (b), figure 3(b): C paths of 1x1 -> 3x3, concatenated, then one shared 1x1."""

    def __init__(self, b: BlockSpec, norm_layer: NormLayer = batch_norm) -> None:
        super().__init__()
        self.paths = nn.ModuleList(Path(b, False, path_norm(b, norm_layer)) for _ in range(b.cardinality))
        self.conv3 = conv(b.width, b.out_channels, 1, bias=b.conv_bias, std=b.std_conv)
        self.bn3 = last_norm(b, norm_layer, b.out_channels)
        self.add_parts(b, norm_layer)

    def body(self, x: Tensor) -> Tensor:
        out = torch.cat([path(x) for path in self.paths], dim=1)
        return self.bn3(self.conv3(out))


class AggregatedBottleneck(ResidualBlock):
    """Form (a), figure 3(a): C paths of 1x1 -> 3x3 -> 1x1, summed, then one BN."""

    def __init__(self, b: BlockSpec, norm_layer: NormLayer = batch_norm) -> None:
        super().__init__()
        self.paths = nn.ModuleList(Path(b, True, path_norm(b, norm_layer)) for _ in range(b.cardinality))
        # conv3 is split over the paths; with conv biases its bias is added once, to their sum.
        self.conv3 = Bias(b.out_channels) if b.conv_bias else nn.Identity()
        self.bn3 = last_norm(b, norm_layer, b.out_channels)
        self.add_parts(b, norm_layer)

    def body(self, x: Tensor) -> Tensor:
        return self.bn3(self.conv3(sum(path(x) for path in self.paths)))


BLOCKS = {"a": AggregatedBottleneck, "b": EarlyConcatBottleneck, "c": Bottleneck}


class ResNet(nn.Module):
    """Stem, stages ``layer1..layerN`` (then a pre-activation network's ``norm``), global average
    pool, linear head (logits).

    As a backbone it speaks timm's language: ``num_classes=0`` ends at the pooled features
    (``fc`` is an identity and the canonical weights have no ``fc.*``); ``forward_features``
    gives the last feature map and ``forward_head`` the rest; ``reset_classifier`` puts on a
    new head; ``features_only=True`` makes ``forward`` return every stage's output, described
    by ``feature_info``. ``forward_stages`` gives every comparison point at once.
    """

    def __init__(
        self,
        config: ArchConfig,
        form: str = "c",
        norm_layer: NormLayer | None = None,
        features_only: bool = False,
    ) -> None:
        super().__init__()
        check_form_for(config, form)
        if features_only and not config.headless:
            raise ConfigError("features_only=True returns stage outputs: it takes num_classes=0 (headless)")
        norm_layer = norm_layer or NORM_LAYERS[config.norm_type]
        self.config = config
        self.form = form
        self.features_only = features_only
        p = plan(config)
        self._make_stem(p.stem, norm_layer)
        block = BasicBlock if config.block == "basic" else BLOCKS[form]
        for s, stage in enumerate(p.stages):
            self.add_module(f"layer{s + 1}", nn.Sequential(*(block(b, norm_layer) for b in stage)))
        self.num_stages = len(p.stages)
        self.feature_info = feature_info(config)
        self.num_features = p.head.in_features
        self.norm = norm_layer(p.head.norm.shape[0]) if p.head.norm is not None else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = self._classifier(config.num_classes)
        self._init_weights()

    def _make_stem(self, stem: StemSpec, norm_layer: NormLayer) -> None:
        # Each step's conv and norm under their canonical names: torchvision's conv1, bn1; timm's
        # conv1.0, conv1.1, ... for a deep stem, maxpool.0, .1 for ResNet-RS's strided conv.
        self.stem_steps = tuple((step.conv.name, step.norm and step.norm.name) for step in stem.steps)
        for step in stem.steps:
            add_at(self, step.conv.name, conv_from(step.conv))
            if step.norm is not None:  # a pre-activation stem ends on its conv
                add_at(self, step.norm.name, norm_layer(step.norm.shape[0]))
        self.relu = nn.ReLU(inplace=True)
        if stem.pool is not None:  # timm's name for it, whichever pool it is
            self.maxpool = STEM_POOLS[stem.pool]()
        self.stem_pool = stem.pool is not None

    def _classifier(self, num_classes: int) -> nn.Module:
        # timm's convention: a headless model keeps an ``fc`` that passes the features through.
        return nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def _init_weights(self) -> None:
        # torchvision's init: He-normal (fan-out) convs, BN as identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # SE's too, as timm does; a bias keeps nn.Conv2d's draw
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """A new head for ``num_classes`` classes (0: headless), freshly initialised as
        ``nn.Linear`` draws it; the backbone is untouched."""
        if self.features_only and num_classes:
            raise ConfigError("a features_only model has no head to reset")
        self.config = dataclasses.replace(self.config, num_classes=num_classes)
        like = next(self.parameters())
        self.fc = self._classifier(num_classes).to(like.device, like.dtype)

    def stem(self, x: Tensor) -> Tensor:
        for conv_name, norm_name in self.stem_steps:
            x = self.get_submodule(conv_name)(x)
            if norm_name is not None:
                x = self.relu(self.get_submodule(norm_name)(x))
        return self.maxpool(x) if self.stem_pool else x

    def final_norm(self, x: Tensor) -> Tensor:
        """A pre-activation network's last norm and ReLU (timm's ``norm``) on the last stage's output."""
        return x if self.norm is None else self.relu(self.norm(x))

    def stages(self, x: Tensor) -> list[Tensor]:
        """The output of every stage, from the stem's output."""
        outs = []
        for s in range(self.num_stages):
            x = getattr(self, f"layer{s + 1}")(x)
            outs.append(x)
        return outs

    def forward_features(self, x: Tensor) -> Tensor:
        """NCHW images -> the last stage's feature map (N, num_features, H/32, W/32 for ImageNet)."""
        return self.final_norm(self.stages(self.stem(x))[-1])

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Feature map -> logits (or the pooled features with ``pre_logits=True``)."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward_stages(self, x: Tensor) -> dict[str, Tensor]:
        """Every comparison point of ``resnext_spec.stage_names``: stem, stages, pooled, logits."""
        out = {"stem": self.stem(x)}
        out.update(zip((f.module for f in self.feature_info), self.stages(out["stem"]), strict=True))
        out["pool"] = self.forward_head(self.final_norm(out[self.feature_info[-1].module]), pre_logits=True)
        if not self.config.headless:
            out["logits"] = self.fc(out["pool"])
        return out

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """NCHW images -> logits (pooled features if headless; stage outputs if ``features_only``)."""
        if self.features_only:
            return self.stages(self.stem(x))
        return self.forward_head(self.forward_features(x))


def create_model(
    name: str | None = None,
    *,
    config: ArchConfig | None = None,
    form: str = "c",
    num_classes: int | None = None,
    in_channels: int | None = None,
    norm_layer: NormLayer | None = None,
    features_only: bool = False,
) -> ResNet:
    """A model from a preset name or an ``ArchConfig``, in block form ``form``.

    ``num_classes=0`` makes a headless backbone (pooled features out). ``features_only=True``
    (headless implied) returns every stage's output, timm's ``features_only``.
    ``norm_layer`` (torchvision's argument) builds every normalisation layer from its channel
    count; the default is BatchNorm2d with torch's eps and momentum. The canonical weight
    table expects BatchNorm's four tensors, so a replacement must hold the same ones.
    """
    if features_only:
        num_classes = 0 if num_classes is None else num_classes
    cfg = resolve_config(name, config, num_classes=num_classes, in_channels=in_channels)
    return ResNet(cfg, form, norm_layer, features_only)
