"""ResNet / ResNeXt in Flax NNX, in the paper's three block forms.

Modules mirror torchvision's names (``layer2[0].paths[3].conv1``), so a
canonical name is also the path to its module. NHWC input, logits out;
``model.train()`` / ``model.eval()`` switch BN between batch and running
statistics. Numerics follow torch: explicit symmetric padding, BN eps 1e-5,
momentum 0.9, two-pass variance, and the running variance updated with the
unbiased batch variance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from resnext_spec import ArchConfig, check_form_for, feature_info, resolve_config
from resnext_spec.errors import ConfigError
from resnext_spec.grouped import check_conv_impl
from resnext_spec.layout import AttentionSpec, BlockSpec, LayerSpec, ShortcutSpec, plan
from resnext_spec.parts import BLUR_FILTER, GN_EPS, GN_GROUPS

from .grouped_conv import GroupedConv


class BatchNorm(nnx.BatchNorm):
    """nnx.BatchNorm whose training mode follows torch.

    Flax updates ``var`` with the biased batch variance; torch with the unbiased
    ``var * n / (n - 1)``. Normalisation uses the biased one in both. Batch
    statistics are computed in float32 at least, whatever the compute dtype (a
    bfloat16 mean of values near 100 is off by ~1e-1), and one value per channel
    is an error, as in torch: its variance is 0 and its unbiased variance 0/0.
    """

    def __init__(self, *args, param_dtype=jnp.float32, **kwargs) -> None:
        # Affine parameters and running statistics in float32 at least, as in torch autocast, and
        # in float64 for float64 models (nnx.BatchNorm makes its statistics float32 always).
        stats_dtype = jnp.promote_types(param_dtype, jnp.float32)
        super().__init__(*args, param_dtype=stats_dtype, **kwargs)
        self.mean = nnx.BatchStat(self.mean[...].astype(stats_dtype))
        self.var = nnx.BatchStat(self.var[...].astype(stats_dtype))

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        use_running = self.use_running_average if use_running_average is None else use_running_average
        if use_running or mask is not None:
            return super().__call__(x, use_running_average, mask=mask)
        n = x.size // x.shape[-1]
        if n < 2:
            raise ConfigError(
                f"BatchNorm in training mode needs more than 1 value per channel, got input shape "
                f"{tuple(x.shape)} (batch x height x width = {n})"
            )
        stats_dtype = jnp.promote_types(x.dtype, jnp.float32)
        x32 = x.astype(stats_dtype)
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x32, axis=axes)
        # The mean inside the variance needs no gradient: d var / d mean = -2 mean(x - mean) = 0.
        var = jnp.mean(jnp.square(x32 - jax.lax.stop_gradient(mean)), axis=axes)
        m = self.momentum
        stop = jax.lax.stop_gradient
        # set_value, not ``self.mean[...] =``: Flax's indexed write reads ``.sharding`` of the new
        # value, which on a tracer walks the whole jaxpr so far (JAX's error-message path), making
        # tracing quadratic in depth (resnext26_8x16d form (a), train mode: 13.5 s to trace, 9.2 s
        # of it there; 4.0 s with set_value).
        self.mean.set_value(m * self.mean[...] + (1 - m) * stop(mean).astype(self.mean.dtype))
        self.var.set_value(m * self.var[...] + (1 - m) * stop(var * (n / (n - 1))).astype(self.var.dtype))
        scale = jax.lax.rsqrt(var + self.epsilon) * self.scale[...].astype(stats_dtype)
        out = (x32 - mean) * scale + self.bias[...].astype(stats_dtype)
        return out.astype(self.dtype or x.dtype)


# BN settings appear once: torch's eps, momentum 0.9 in Flax terms, exact variance.
Norm = partial(BatchNorm, epsilon=1e-5, momentum=0.9, use_fast_variance=False, use_running_average=False)
# GroupNorm as timm's *_gn and BiT use it: 32 groups, eps 1e-5, the two-pass variance.
GroupNorm = partial(nnx.GroupNorm, num_groups=GN_GROUPS, epsilon=GN_EPS, use_fast_variance=False)
# ArchConfig.norm_type -> the default norm
NORMS = {"batch": Norm, "group": GroupNorm}


def path_norm(b: BlockSpec, norm):
    """The norm of one path of forms (a)/(b): BN is per channel, so the block's; GroupNorm's groups
    are shared among the paths (``BlockSpec.path_groups``)."""
    return partial(GroupNorm, num_groups=b.path_groups()) if b.norm == "gn" else norm


def he_normal_fan_out(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """torchvision's conv init (``kaiming_normal_(mode="fan_out", nonlinearity="relu")``), drawn in
    numpy from the seed ``key`` holds.

    The same draw through ``jax.random`` compiles one small XLA program per kernel shape when run
    eagerly, which is most of the seconds a deep preset took to create on CPU; numpy costs only
    the draw. ``shape`` is HWIO: fan-out is kernel area times output channels, groups or not.
    """
    kh, kw, _, c_out = shape
    raw = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    rng = np.random.default_rng(np.asarray(raw, np.uint32).ravel())
    std = math.sqrt(2.0 / (kh * kw * c_out))
    return jnp.asarray((rng.standard_normal(shape) * std).astype(jnp.dtype(dtype)))


def _uniform(bound: float):
    """U(+-bound): torch's draw for a linear layer and any bias, ``bound`` = 1/sqrt(fan_in)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def Conv(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int,
    rngs: nnx.Rngs,
    groups: int = 1,
    bias: bool = False,
    conv_impl: str = "auto",
    std: bool = False,
    **dtypes,
) -> GroupedConv:
    """A conv with torch's symmetric padding (never 'SAME', which pads asymmetrically); bias-free
    unless asked. With ``groups`` > 1 it is computed by ``conv_impl`` (``resnext_spec.grouped``).

    ``dtypes`` (here and below): the ``dtype`` / ``param_dtype`` every layer of a model shares.
    """
    pad = kernel // 2
    # In float64 it may be computed as patches (a matmul): XLA:CPU has no float64 conv kernel.
    return GroupedConv(
        c_in,
        c_out,
        (kernel, kernel),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        use_bias=bias,
        kernel_init=he_normal_fan_out,
        bias_init=_uniform(1.0 / math.sqrt(kernel * kernel * c_in // groups)),
        conv_impl=conv_impl,
        std=std,
        rngs=rngs,
        **dtypes,
    )


def conv_from(layer: LayerSpec, rngs: nnx.Rngs, **dtypes) -> GroupedConv:
    """The conv a spec's ``LayerSpec`` describes."""
    c_out, c_in_per_group, k, _ = layer.shape
    return Conv(
        c_in_per_group * layer.groups,
        c_out,
        k,
        layer.stride,
        rngs,
        layer.groups,
        layer.bias,
        std=layer.std,
        **dtypes,
    )


def relu(x):
    return jax.nn.relu(x)


class AvgDown(nnx.Module):
    """timm's ``avg_down`` pool: 2x2, stride ``stride``, ceil mode, padding not counted."""

    def __init__(self, stride: int) -> None:
        self.stride = stride

    def __call__(self, x):
        # Ceil mode: an odd side gets one more window, padded at its end and averaged over what it holds.
        pad = tuple((0, -(-n // self.stride) * self.stride - n) for n in x.shape[1:3])
        s = (self.stride, self.stride)
        return nnx.avg_pool(x, (2, 2), strides=s, padding=pad, count_include_pad=False)


class AvgPool(nnx.Module):
    """timm's resnetaa* pool: 2x2 average pooling of stride ``stride`` (timm's ``nn.AvgPool2d(2)``)."""

    def __init__(self, stride: int = 2) -> None:
        self.stride = stride

    def __call__(self, x):
        s = (self.stride, self.stride)
        return nnx.avg_pool(x, s, strides=s)


class BlurPool(nnx.Module):
    """timm's BlurPool2d: the fixed 3x3 binomial filter ([1, 2, 1] x [1, 2, 1] / 16) on each channel,
    reflect-padded by 1, at ``stride``. It has no state."""

    def __init__(self, stride: int = 2) -> None:
        self.stride = stride

    def __call__(self, x):
        kernel = np.repeat(BLUR_FILTER[:, :, None, None], x.shape[-1], axis=3)  # HWIO, I=1
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        return jax.lax.conv_general_dilated(
            x,
            jnp.asarray(kernel, x.dtype),
            (self.stride, self.stride),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=x.shape[-1],
        )


class MaxPool(nnx.Module):
    """torch's ``MaxPool2d(3, stride, 1)``: -inf padding."""

    def __init__(self, stride: int = 2) -> None:
        self.stride = stride

    def __call__(self, x):
        return nnx.max_pool(x, (3, 3), strides=(self.stride, self.stride), padding=((1, 1), (1, 1)))


class FixedMaxPool(nnx.Module):
    """BiT's and keras.applications' V2 stem pool: zero padding of 1, then a 3x3/2 max-pool."""

    def __call__(self, x):
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return nnx.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class EveryOther(nnx.Module):
    """keras.applications' V2 shortcut of a block that strides and keeps its channels (a 1x1 max-pool)."""

    def __init__(self, stride: int) -> None:
        self.stride = stride

    def __call__(self, x):
        return x[:, :: self.stride, :: self.stride, :]


class Bias(nnx.Module):
    """A per-channel bias alone: form (a)'s conv3 bias in a pre-activation block with conv biases
    (conv3 is split over the paths; its bias is added once, to their sum)."""

    def __init__(self, channels: int, param_dtype=jnp.float32, **_) -> None:
        self.bias = nnx.Param(jnp.zeros((channels,), param_dtype))

    def __call__(self, x):
        return x + self.bias[...].astype(x.dtype)


class Skip(nnx.Module):
    """The empty slot a stride-1 ``avg_down`` shortcut keeps at ``downsample.0``, as timm does."""

    def __call__(self, x):
        return x


# The parts around a block's body, one factory per kind (``resnext_spec.parts``). A new part kind is a
# new entry here, in torch's and Keras's tables, and in the spec's: docs/development.md.
def _conv_norm(s: ShortcutSpec, rngs: nnx.Rngs, norm, **dtypes) -> list[nnx.Module]:
    """A projection's conv and its norm (none in a pre-activation block)."""
    conv = conv_from(s.conv, rngs, **dtypes)
    return [conv] if s.norm is None else [conv, norm(s.norm.shape[0], rngs=rngs, **dtypes)]


def _projection(s: ShortcutSpec, rngs: nnx.Rngs, norm, **dtypes) -> nnx.List:
    """torchvision's ``downsample``: 1x1 conv carrying the stride, then the norm."""
    return nnx.List(_conv_norm(s, rngs, norm, **dtypes))


def _avg_projection(s: ShortcutSpec, rngs: nnx.Rngs, norm, **dtypes) -> nnx.List:
    """timm's ``avg_down``: 2x2 average pool (ceil mode, padding not counted), 1x1 conv, norm."""
    pool = AvgDown(s.stride) if s.pools else Skip()
    return nnx.List([pool, *_conv_norm(s, rngs, norm, **dtypes)])


SHORTCUTS = {
    "identity": lambda s, rngs, norm, **dtypes: None,
    "pool": lambda s, rngs, norm, **dtypes: nnx.List([EveryOther(s.stride)]),
    "conv": _projection,
    "avg_conv": _avg_projection,
}


class SqueezeExcite(nnx.Module):
    """Squeeze-and-excitation: ``x`` scaled per channel by ``sigmoid(fc2(relu(fc1(mean))))``."""

    def __init__(self, a: AttentionSpec, rngs: nnx.Rngs, **dtypes) -> None:
        fc1, fc2 = a.layers
        self.fc1 = conv_from(fc1, rngs, **dtypes)
        self.fc2 = conv_from(fc2, rngs, **dtypes)

    def __call__(self, x):
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        return x * jax.nn.sigmoid(self.fc2(relu(self.fc1(s))))


class EfficientChannelAttention(nnx.Module):
    """ECA: ``x`` scaled per channel by the sigmoid of a 1-D conv along its pooled channels."""

    def __init__(self, a: AttentionSpec, rngs: nnx.Rngs, **dtypes) -> None:
        (layer,) = a.layers
        k, p = layer.shape[-1], layer.padding
        init = _uniform(1.0 / math.sqrt(k))  # nn.Conv1d's draw
        self.conv = nnx.Conv(
            1, 1, (k,), padding=((p, p),), use_bias=False, kernel_init=init, rngs=rngs, **dtypes
        )

    def __call__(self, x):
        s = self.conv(jnp.mean(x, axis=(1, 2))[..., None])  # (N, C, 1): the channels are the 1-D axis
        return x * jax.nn.sigmoid(s)[:, None, None, :, 0]


ATTENTION = {"": lambda a, rngs, **dtypes: None, "se": SqueezeExcite, "eca": EfficientChannelAttention}
# timm's aa_layer, after the ReLU of a downsampling block's strided conv (which then runs at stride
# 1), and the stem's pool by StemSpec.pool. None of them has state.
AA = {"": lambda stride: Skip(), "avg": AvgPool, "blur": BlurPool}
STEM_POOLS = {
    "max": lambda: MaxPool(2),
    "max_fixed": FixedMaxPool,
    "avg": lambda: AvgPool(2),
    "max_blur": lambda: nnx.List([MaxPool(1), BlurPool(2)]),
}


def set_at(root: nnx.Module, name: str, module: nnx.Module) -> None:
    """``module`` at the dotted ``name`` under ``root``, making the containers on the way: a
    numbered slot is an ``nnx.List`` entry, the slots before it held by :class:`Skip` (timm's deep
    stem keeps its convs at ``conv1.0``, ``conv1.3``, ``conv1.6``, its ReLUs between)."""
    *parents, leaf = name.split(".")
    steps = [*parents, leaf]
    node = root
    for part, nxt in zip(steps, steps[1:], strict=False):
        child = getattr(node, part, None)
        if child is None:
            child = nnx.List([]) if nxt.isdigit() else nnx.Module()
            setattr(node, part, child)
        node = child
    if leaf.isdigit():
        while len(node) <= int(leaf):
            node.append(Skip())
        node[int(leaf)] = module
    else:
        setattr(node, leaf, module)


def submodule(root: nnx.Module, name: str) -> nnx.Module:
    """The module at a canonical path (``layer2.0.paths.3.conv1``, ``conv1.3``): module paths are
    canonical names."""
    node = root
    for part in name.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def last_norm(b: BlockSpec, channels: int, rngs: nnx.Rngs, norm, **dtypes) -> nnx.Module:
    """The norm that ends a post-activation body; a pre-activation body ends on its conv."""
    return Skip() if b.preact else norm(channels, rngs=rngs, **dtypes)


class ResidualBlock(nnx.Module):
    """``relu(attention(body(x)) + shortcut(x))``, written once for every block; pre-activation
    (ResNet v2) is ``body(relu(bn0(x))) + shortcut(...)``, the projection taking the pre-activated
    input, with no ReLU after the sum.

    A form's block makes its body's layers in ``__init__``, then calls ``add_parts`` for the
    attention, pre-norm and shortcut the spec gives it, and defines ``body``: that is all a form
    writes.
    """

    def add_parts(self, b: BlockSpec, rngs: nnx.Rngs, norm, **dtypes) -> None:
        attention = ATTENTION[b.attention.kind](b.attention, rngs, **dtypes)
        self.attention_name = None if attention is None else b.attention.name.rsplit(".", 1)[-1]
        if attention is not None:
            setattr(self, self.attention_name, attention)
        self.bn0 = nnx.data(norm(b.in_channels, rngs=rngs, **dtypes) if b.preact else None)
        self.downsample = SHORTCUTS[b.shortcut.kind](b.shortcut, rngs, norm, **dtypes)
        self.projects = b.projection

    def body(self, x):
        raise NotImplementedError

    def __call__(self, x):
        pre = x if self.bn0 is None else relu(self.bn0(x))
        identity = pre if self.projects else x
        if self.downsample is not None:
            for layer in self.downsample:
                identity = layer(identity)
        out = self.body(pre)
        if self.attention_name is not None:
            out = getattr(self, self.attention_name)(out)
        return out + identity if self.bn0 is not None else relu(out + identity)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (ResNet-18/34); form (c) only."""

    def __init__(self, b: BlockSpec, rngs: nnx.Rngs, norm=Norm, **dtypes) -> None:
        self.conv1 = Conv(b.in_channels, b.width, 3, b.conv1_stride, rngs, std=b.std_conv, **dtypes)
        self.bn1 = norm(b.width, rngs=rngs, **dtypes)
        self.aa = AA[b.aa](b.stride)
        self.conv2 = Conv(
            b.width, b.width, 3, b.conv2_stride, rngs, bias=b.conv_bias, std=b.std_conv, **dtypes
        )
        self.bn2 = last_norm(b, b.width, rngs, norm, **dtypes)
        self.add_parts(b, rngs, norm, **dtypes)

    def body(self, x):
        out = self.aa(relu(self.bn1(self.conv1(x))))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """Form (c), grouped convolution: 1x1 -> 3x3 with C groups -> 1x1."""

    def __init__(self, b: BlockSpec, rngs: nnx.Rngs, conv_impl: str = "auto", norm=Norm, **dtypes) -> None:
        self.conv1 = Conv(b.in_channels, b.width, 1, b.conv1_stride, rngs, std=b.std_conv, **dtypes)
        self.bn1 = norm(b.width, rngs=rngs, **dtypes)
        self.conv2 = Conv(
            b.width,
            b.width,
            3,
            b.conv2_stride,
            rngs,
            b.cardinality,
            conv_impl=conv_impl,
            std=b.std_conv,
            **dtypes,
        )
        self.bn2 = norm(b.width, rngs=rngs, **dtypes)
        self.aa = AA[b.aa](b.stride)
        self.conv3 = Conv(b.width, b.out_channels, 1, 1, rngs, bias=b.conv_bias, std=b.std_conv, **dtypes)
        self.bn3 = last_norm(b, b.out_channels, rngs, norm, **dtypes)
        self.add_parts(b, rngs, norm, **dtypes)

    def body(self, x):
        out = relu(self.bn1(self.conv1(x)))
        out = self.aa(relu(self.bn2(self.conv2(out))))
        return self.bn3(self.conv3(out))


class Path(nnx.Module):
    """One of the C paths of forms (a)/(b): 1x1 -> 3x3 (-> 1x1 in form (a), no BN after it)."""

    def __init__(self, b: BlockSpec, with_conv3: bool, rngs: nnx.Rngs, norm=Norm, **dtypes) -> None:
        w = b.path_width
        self.conv1 = Conv(b.in_channels, w, 1, b.conv1_stride, rngs, std=b.std_conv, **dtypes)
        self.bn1 = norm(w, rngs=rngs, **dtypes)
        self.conv2 = Conv(w, w, 3, b.conv2_stride, rngs, std=b.std_conv, **dtypes)
        self.bn2 = norm(w, rngs=rngs, **dtypes)
        self.aa = AA[b.aa](b.stride)  # a per-channel pool: on each path as on the grouped conv's output
        # form (a)'s conv3 has no bias: in a pre-activation block with biases the block adds it once
        self.conv3 = Conv(w, b.out_channels, 1, 1, rngs, std=b.std_conv, **dtypes) if with_conv3 else None

    def __call__(self, x):
        out = relu(self.bn1(self.conv1(x)))
        out = self.aa(relu(self.bn2(self.conv2(out))))
        return out if self.conv3 is None else self.conv3(out)


class EarlyConcatBottleneck(ResidualBlock):
    """Form (b), figure 3(b): C paths of 1x1 -> 3x3, concatenated, then one shared 1x1."""

    def __init__(self, b: BlockSpec, rngs: nnx.Rngs, norm=Norm, **dtypes) -> None:
        self.paths = nnx.List(
            [Path(b, False, rngs, path_norm(b, norm), **dtypes) for _ in range(b.cardinality)]
        )
        self.conv3 = Conv(b.width, b.out_channels, 1, 1, rngs, bias=b.conv_bias, std=b.std_conv, **dtypes)
        self.bn3 = last_norm(b, b.out_channels, rngs, norm, **dtypes)
        self.add_parts(b, rngs, norm, **dtypes)

    def body(self, x):
        out = jnp.concatenate([path(x) for path in self.paths], axis=-1)
        return self.bn3(self.conv3(out))


class AggregatedBottleneck(ResidualBlock):
    """Form (a), figure 3(a): C paths of 1x1 -> 3x3 -> 1x1, summed, then one BN."""

    def __init__(self, b: BlockSpec, rngs: nnx.Rngs, norm=Norm, **dtypes) -> None:
        self.paths = nnx.List(
            [Path(b, True, rngs, path_norm(b, norm), **dtypes) for _ in range(b.cardinality)]
        )
        # conv3 is split over the paths; with conv biases its bias is added once, to their sum.
        self.conv3 = Bias(b.out_channels, **dtypes) if b.conv_bias else Skip()
        self.bn3 = last_norm(b, b.out_channels, rngs, norm, **dtypes)
        self.add_parts(b, rngs, norm, **dtypes)

    def body(self, x):
        return self.bn3(self.conv3(sum(path(x) for path in self.paths)))


BLOCKS = {"a": AggregatedBottleneck, "b": EarlyConcatBottleneck, "c": Bottleneck}


class ResNet(nnx.Module):
    """Stem, stages ``layer1..layerN``, global average pool, linear head; NHWC in, logits out.

    ``conv_impl`` says how form (c)'s grouped convs are computed ("auto", "native",
    "patches", "split"; see ``resnext_spec.grouped``): the same function and the same
    parameters whichever is chosen. ``dtype`` is the compute dtype (None: the
    input's, as in Flax) and ``param_dtype`` the parameters'; ``jnp.bfloat16`` /
    ``jnp.float32`` is mixed precision, with BN statistics kept in float32.
    Float64 needs JAX's x64 mode (``jax.enable_x64``).

    As a backbone it has the same calls as the torch build (timm's): ``num_classes=0`` ends at
    the pooled features (``fc`` is None); ``forward_features``, ``forward_head``,
    ``reset_classifier``, ``features_only`` (every stage's output, ``feature_info``) and
    ``forward_stages`` (every comparison point).
    """

    def __init__(
        self,
        config: ArchConfig,
        form: str = "c",
        *,
        conv_impl: str = "auto",
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
        norm: Callable[..., nnx.Module] | None = None,
        features_only: bool = False,
    ) -> None:
        check_form_for(config, form)
        if features_only and not config.headless:
            raise ConfigError("features_only=True returns stage outputs: it takes num_classes=0 (headless)")
        norm = norm or NORMS[config.norm_type]
        check_conv_impl(conv_impl)
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        dtypes = dict(dtype=dtype, param_dtype=param_dtype)
        self.config = config
        self.form = form
        self.features_only = features_only
        p = plan(config)
        s = p.stem
        # Each step's conv and norm under their canonical names: torchvision's conv1, bn1; timm's
        # conv1.0, conv1.1, ... for a deep stem, maxpool.0, .1 for ResNet-RS's strided conv.
        self.stem_steps = tuple((step.conv.name, step.norm and step.norm.name) for step in s.steps)
        for step in s.steps:
            set_at(self, step.conv.name, conv_from(step.conv, rngs, **dtypes))
            if step.norm is not None:  # a pre-activation stem ends on its conv
                set_at(self, step.norm.name, norm(step.norm.shape[0], rngs=rngs, **dtypes))
        self.stem_pool = s.pool is not None
        if self.stem_pool:  # timm's name for it, whichever pool it is (ResNet-RS has a conv there)
            self.maxpool = STEM_POOLS[s.pool]()
        self.compute_dtype, self.param_dtype = dtype, param_dtype
        block = BasicBlock if config.block == "basic" else BLOCKS[form]
        if block is Bottleneck:
            block = partial(Bottleneck, conv_impl=conv_impl)
        block = partial(block, norm=norm, **dtypes)
        self.num_stages = len(p.stages)
        for i, stage in enumerate(p.stages):
            setattr(self, f"layer{i + 1}", nnx.List([block(b, rngs) for b in stage]))
        self.feature_info = tuple(feature_info(config))  # a tuple: graph metadata must hash
        self.num_features = p.head.in_features
        self.norm = nnx.data(None if p.head.norm is None else norm(self.num_features, rngs=rngs, **dtypes))
        # nnx.data: a headless model's None stays a data slot, so reset_classifier can put a head there.
        self.fc = nnx.data(self._classifier(config.num_classes, rngs))

    def _classifier(self, num_classes: int, rngs: nnx.Rngs) -> nnx.Linear | None:
        if not num_classes:
            return None
        init = _uniform(1.0 / math.sqrt(self.num_features))  # nn.Linear's draw, weight and bias
        return nnx.Linear(
            self.num_features,
            num_classes,
            kernel_init=init,
            bias_init=init,
            rngs=rngs,
            dtype=self.compute_dtype,
            param_dtype=self.param_dtype,
        )

    def reset_classifier(self, num_classes: int, rngs: nnx.Rngs | None = None) -> None:
        """A new head for ``num_classes`` classes (0: headless), freshly drawn from ``rngs``
        (default ``nnx.Rngs(0)``); the backbone is untouched."""
        if self.features_only and num_classes:
            raise ConfigError("a features_only model has no head to reset")
        self.config = dataclasses.replace(self.config, num_classes=num_classes)
        self.fc = nnx.data(self._classifier(num_classes, rngs if rngs is not None else nnx.Rngs(0)))

    def stem(self, x):
        for conv_name, norm_name in self.stem_steps:
            x = submodule(self, conv_name)(x)
            if norm_name is not None:
                x = relu(submodule(self, norm_name)(x))
        if self.stem_pool:
            for pool in self.maxpool if isinstance(self.maxpool, nnx.List) else [self.maxpool]:
                x = pool(x)
        return x

    def stages(self, x) -> list:
        """The output of every stage, from the stem's output."""
        outs = []
        for i in range(self.num_stages):
            for block in getattr(self, f"layer{i + 1}"):
                x = block(x)
            outs.append(x)
        return outs

    def final_norm(self, x):
        """A pre-activation network's last norm and ReLU (timm's ``norm``) on the last stage's output."""
        return x if self.norm is None else relu(self.norm(x))

    def forward_features(self, x):
        """NHWC images -> the last stage's feature map (after a pre-activation network's norm)."""
        return self.final_norm(self.stages(self.stem(x))[-1])

    def forward_head(self, x, pre_logits: bool = False):
        """Feature map -> logits (or the pooled features with ``pre_logits=True``)."""
        x = jnp.mean(x, axis=(1, 2))
        return x if pre_logits or self.fc is None else self.fc(x)

    def forward_stages(self, x) -> dict:
        """Every comparison point of ``resnext_spec.stage_names``: stem, stages, pooled, logits."""
        out = {"stem": self.stem(x)}
        out.update(zip((f.module for f in self.feature_info), self.stages(out["stem"]), strict=True))
        out["pool"] = self.forward_head(self.final_norm(out[self.feature_info[-1].module]), pre_logits=True)
        if self.fc is not None:
            out["logits"] = self.fc(out["pool"])
        return out

    def __call__(self, x):
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
    conv_impl: str = "auto",
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs | None = None,
    norm: Callable[..., nnx.Module] | None = None,
    features_only: bool = False,
) -> ResNet:
    """A model from a preset name or an ``ArchConfig``, in block form ``form``.

    ``num_classes=0`` makes a headless backbone (pooled features out); ``features_only=True``
    (headless implied) returns every stage's output.

    ``rngs`` seeds the (random) initial weights; the default is ``nnx.Rngs(0)``.
    ``conv_impl``, ``dtype`` and ``param_dtype`` as in :class:`ResNet`. ``norm`` (the Flax
    examples' name) builds every normalisation layer, called as ``norm(features, rngs=...,
    dtype=..., param_dtype=...)``; the default is :data:`Norm`, BatchNorm with torch's settings.
    """
    if features_only:
        num_classes = 0 if num_classes is None else num_classes
    cfg = resolve_config(name, config, num_classes=num_classes, in_channels=in_channels)
    return ResNet(
        cfg,
        form,
        conv_impl=conv_impl,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
        norm=norm,
        features_only=features_only,
    )
