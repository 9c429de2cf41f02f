"""ResNet / ResNeXt in Keras 3, in the paper's three block forms.

A functional ``keras.Model`` built from ``resnext_spec.plan``: NHWC input,
logits out. Every weight-bearing layer is named by its canonical name with "_"
for "." (``layer2_0_paths_3_conv1`` for ``layer2.0.paths.3.conv1``; see
``layer_name``), so ``model.summary()`` shows the structure and the weight map is
a plain lookup. Numerics follow torch: explicit zero padding
then ``"valid"`` (never ``"same"`` with stride 2), BN eps 1e-5 and momentum 0.9,
and the moving variance updated with the unbiased batch variance.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from resnext_spec import ArchConfig, check_form_for, feature_info, resolve_config
from resnext_spec.errors import ConfigError
from resnext_spec.grouped import check_conv_impl
from resnext_spec.layout import NORM_KINDS, AttentionSpec, BlockSpec, LayerSpec, ShortcutSpec, StemSpec, plan
from resnext_spec.parts import BLUR_FILTER, GN_EPS, GN_GROUPS, STD_EPS

from .grouped_conv import GroupedConv2D


@keras.saving.register_keras_serializable(package="resnext_keras")
class BatchNorm(layers.BatchNormalization):
    """BatchNormalization whose training-mode update of the moving variance matches torch.

    Keras updates ``moving_variance`` with the biased batch variance; torch with the
    unbiased one, ``var * n / (n - 1)``. Normalisation itself uses the biased variance
    in both. Mean and variance are computed in two passes (mean, then mean squared
    deviation) as torch does, not as E[x^2] - E[x]^2, in float32 at least under any
    dtype policy; one value per channel is an error, as in torch (its unbiased
    variance is 0/0, which Keras would write into the moving variance as NaN).
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        n_static = math.prod(inputs.shape[:-1]) if None not in inputs.shape[:-1] else None
        if n_static is not None and n_static < 2:
            raise ConfigError(
                f"BatchNorm {self.name!r} in training mode needs more than 1 value per channel, got "
                f"input shape {tuple(inputs.shape)} (batch x height x width = {n_static})"
            )
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        axes = self._reduction_axes
        mean = ops.mean(x, axis=axes)
        # The mean inside the variance needs no gradient: d var / d mean = -2 mean(x - mean) = 0.
        centred = x - ops.stop_gradient(ops.reshape(mean, self._broadcast_shape(x)))
        variance = ops.mean(ops.square(centred), axis=axes)
        n = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.shape(mean)[0], x.dtype)
        m = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, x.dtype) * m + mean * (1.0 - m))
        unbiased = variance * n / (n - 1.0)
        self.moving_variance.assign(ops.cast(self.moving_variance, x.dtype) * m + unbiased * (1.0 - m))
        out = ops.batch_normalization(
            x, mean, variance, axis=self.axis, offset=self.beta, scale=self.gamma, epsilon=self.epsilon
        )
        return ops.cast(out, self.compute_dtype)

    def _broadcast_shape(self, x) -> list[int]:
        shape = [1] * len(x.shape)
        shape[self.axis] = x.shape[self.axis]
        return shape


def layer_name(canonical: str) -> str:
    """The Keras layer name of a canonical module name: ``layer1.0.conv2`` -> ``layer1_0_conv2``.

    Keras's torch backend keeps each layer's variables in a torch ``ParameterDict`` keyed
    by the variable's path, and torch refuses "." in those keys. Canonical layer names
    hold no "_", so the map is one-to-one. Keras ``.weights.h5`` files key layers by
    class and order (``layers/conv2d_7``), not by name, so the files did not change with it.
    """
    return canonical.replace(".", "_")


# torchvision's initialisation, so that a model made here starts as the torch build does: convs
# He-normal on fan-out (``kaiming_normal_(mode="fan_out")``; Keras's fan-out of an HWIO kernel is
# kh*kw*out, torch's of OIHW the same), the linear layer and any conv bias as ``nn.Linear`` and
# ``nn.Conv2d`` draw them, U(+-1/sqrt(fan_in)). BN starts as the identity in both.
CONV_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
LINEAR_INIT = keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")  # bound sqrt(1/fan_in)


def fan_in_uniform(fan_in: int) -> keras.initializers.Initializer:
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


# (canonical name, channels, dtype policy) -> the norm layer; None: batch_norm
NormFactory = Callable[[str, int, keras.DTypePolicy], layers.Layer] | None


def batch_norm(name: str, channels: int, dtype: keras.DTypePolicy) -> BatchNorm:
    """The default norm: BN with torch's eps and (in Keras terms) momentum. Keras's ``norm`` hook
    (torchvision's ``norm_layer``, the Flax examples' ``norm``) is any callable of these arguments."""
    return BatchNorm(epsilon=1e-5, momentum=0.9, dtype=dtype, name=layer_name(name))


def group_norm(name: str, channels: int, dtype: keras.DTypePolicy, groups: int = GN_GROUPS):
    """GroupNorm as timm's ``*_gn`` and BiT use it: 32 groups, eps 1e-5."""
    return layers.GroupNormalization(groups, epsilon=GN_EPS, dtype=dtype, name=layer_name(name))


def standardised(kernel):
    """Weight standardisation of an HWIO kernel: each output filter (the last axis) to zero mean and
    unit biased variance over (kh, kw, in), eps 1e-8 (BiT's; timm's ``StdConv2d``)."""
    mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
    var = ops.mean(ops.square(kernel - mean), axis=(0, 1, 2), keepdims=True)
    return (kernel - mean) * ops.rsqrt(var + STD_EPS)


@keras.saving.register_keras_serializable(package="resnext_keras")
class StdConv2D(layers.Conv2D):
    """A conv whose kernel is standardised on each call; its variable is the raw kernel."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, standardised(kernel))


@keras.saving.register_keras_serializable(package="resnext_keras")
class StdGroupedConv2D(GroupedConv2D):
    """A grouped conv whose kernel is standardised on each call, filter by filter as StdConv2D's."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, standardised(kernel))


class Layers:
    """The layer factories of one model, made once: its dtype policy, the norm, the conv lowering.

    Every layer gets the model's ``dtype`` (as keras-hub passes it), so building a model
    never touches Keras's global dtype policy. Names are canonical names (``layer_name``).
    ``kind`` is the norms' ("bn", or "gn": GroupNorm), and ``std`` makes every conv weight-standardised.
    """

    def __init__(
        self,
        dtype: keras.DTypePolicy,
        conv_impl: str = "auto",
        norm: NormFactory = None,
        kind: str = "bn",
        std: bool = False,
    ) -> None:
        self.dtype = dtype
        self.conv_impl = conv_impl
        self.norm_factory = norm or batch_norm
        self.kind = kind
        self.std = std

        self.groups = GN_GROUPS  # a GroupNorm's; a path's factories hold its share (``for_path``)

    def norm(self, name: str, channels: int):
        """The norm: the model's factory, or a GroupNorm."""
        if self.kind == "gn":
            return group_norm(name, channels, self.dtype, self.groups)
        return self.norm_factory(name, channels, self.dtype)

    def for_path(self, b: BlockSpec) -> Layers:
        """These factories for one path of ``b``: a GroupNorm there holds the path's share of the
        block's groups (``BlockSpec.path_groups``); BN is per channel, so the same."""
        if self.kind != "gn":
            return self
        path = copy.copy(self)
        path.groups = b.path_groups()
        return path

    def relu(self, name: str) -> layers.ReLU:
        return layers.ReLU(dtype=self.dtype, name=layer_name(name))

    def add(self, name: str) -> layers.Add:
        return layers.Add(dtype=self.dtype, name=layer_name(name))

    def pad(self, x, padding: int, name: str):
        return layers.ZeroPadding2D(padding, dtype=self.dtype, name=layer_name(name))(x)

    def conv(self, x, filters: int, kernel: int, stride: int, name: str, groups: int = 1, bias: bool = False):
        """A conv with torch's symmetric zero padding, then 'valid'; bias-free unless asked.

        A grouped conv is a :class:`GroupedConv2D`, computed by ``conv_impl``.
        """
        if kernel // 2:
            x = self.pad(x, kernel // 2, f"{name}.pad")
        fan_in = kernel * kernel * x.shape[-1] // groups
        common = dict(
            strides=stride,
            use_bias=bias,
            kernel_initializer=CONV_INIT,
            bias_initializer=fan_in_uniform(fan_in),
            dtype=self.dtype,
            name=layer_name(name),
        )
        if groups > 1:
            grouped = StdGroupedConv2D if self.std else GroupedConv2D
            return grouped(filters, kernel, groups=groups, conv_impl=self.conv_impl, **common)(x)
        return (StdConv2D if self.std else layers.Conv2D)(filters, kernel, **common)(x)

    def conv_from(self, x, layer: LayerSpec):
        """The conv a spec's ``LayerSpec`` describes."""
        return self.conv(
            x, layer.shape[0], layer.shape[-1], layer.stride, layer.name, layer.groups, layer.bias
        )

    def conv_bn(
        self,
        x,
        filters: int,
        kernel: int,
        stride: int,
        name: str,
        bn: str,
        relu: bool,
        groups: int = 1,
    ):
        x = self.norm(bn, filters)(self.conv(x, filters, kernel, stride, name, groups))
        return self.relu(f"{bn}.relu")(x) if relu else x


@keras.saving.register_keras_serializable(package="resnext_keras")
class BlurPool(layers.Layer):
    """timm's BlurPool2d: the fixed 3x3 binomial filter ([1, 2, 1] x [1, 2, 1] / 16) on each channel,
    reflect-padded by 1, at ``stride`` (``resnext_spec.parts.BLUR_FILTER``). It has no weights."""

    def __init__(self, stride: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stride = stride

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stride": self.stride}

    def call(self, x):
        kernel = np.repeat(BLUR_FILTER[:, :, None, None], x.shape[-1], axis=2)  # HWC1, depthwise
        x = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        return ops.depthwise_conv(x, ops.cast(kernel, x.dtype), strides=self.stride, padding="valid")


def _max_pool(f: Layers, x, stride: int, name: str):
    # torch pads its max-pool with -inf; zero padding is the same here only because
    # the ReLU before it makes every value >= 0 (and is what BiT and keras.applications' V2 do
    # after a pre-activation stem's conv: "max_fixed").
    x = f.pad(x, 1, f"{name}.pad")
    return layers.MaxPooling2D(3, strides=stride, dtype=f.dtype, name=layer_name(name))(x)


@keras.saving.register_keras_serializable(package="resnext_keras")
class MaxPool(layers.Layer):
    """torch's ``MaxPool2d(3, 2, 1)``: padded with -inf, which matters where no ReLU comes before
    it (a pre-activation stem ends on its conv)."""

    def call(self, x):
        x = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=float("-inf"))
        return ops.max_pool(x, 3, strides=2, padding="valid")


@keras.saving.register_keras_serializable(package="resnext_keras")
class Bias(layers.Layer):
    """A per-channel bias alone: form (a)'s conv3 bias in a pre-activation block with conv biases
    (conv3 is split over the paths; its bias is added once, to their sum)."""

    def build(self, input_shape) -> None:
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, x):
        return x + ops.cast(self.bias, x.dtype)


def _avg_pool(f: Layers, x, stride: int, name: str):
    return layers.AveragePooling2D(stride, stride, dtype=f.dtype, name=layer_name(name))(x)


def _blur_pool(f: Layers, x, stride: int, name: str):
    return BlurPool(stride, dtype=f.dtype, name=layer_name(name))(x)


# timm's aa_layer, after the ReLU of a downsampling block's strided conv (which then runs at stride
# 1), and the stem's pool by StemSpec.pool: (layers, x, stride, name) -> the pooled x.
AA = {"": lambda f, x, stride, name: x, "avg": _avg_pool, "blur": _blur_pool}
STEM_POOLS = {
    None: lambda f, x: x,
    "max": lambda f, x: _max_pool(f, x, 2, "maxpool"),
    "max_fixed": lambda f, x: _max_pool(f, x, 2, "maxpool"),
    "avg": lambda f, x: _avg_pool(f, x, 2, "maxpool"),
    "max_blur": lambda f, x: _blur_pool(f, _max_pool(f, x, 1, "maxpool.0"), 2, "maxpool.1"),
}


def stem(f: Layers, x, s: StemSpec):
    for step in s.steps:
        x = f.conv_from(x, step.conv)
        if step.norm is not None:  # a pre-activation stem ends on its conv
            x = f.relu(f"{step.norm.name}.relu")(f.norm(step.norm.name, step.norm.shape[0])(x))
    if s.pool == "max" and s.steps[-1].norm is None:
        return MaxPool(dtype=f.dtype, name="maxpool")(x)
    return STEM_POOLS[s.pool](f, x)


# The parts around a block's body, one factory per kind (``resnext_spec.parts``), each taking the
# tensor it acts on. A new part kind is a new entry here, in torch's and Flax's tables, and in the
# spec's: docs/development.md.
def _conv_norm(f: Layers, x, s: ShortcutSpec):
    """A projection's conv and its norm (none in a pre-activation block)."""
    x = f.conv_from(x, s.conv)
    return x if s.norm is None else f.norm(s.norm.name, s.norm.shape[0])(x)


def _projection(f: Layers, x, s: ShortcutSpec):
    """torchvision's ``downsample``: 1x1 conv carrying the stride, then the norm."""
    return _conv_norm(f, x, s)


def _avg_projection(f: Layers, x, s: ShortcutSpec):
    """timm's ``avg_down``: 2x2 average pool (ceil mode, padding not counted), 1x1 conv, norm.

    "same" pads only the end of an odd side and averages over the values inside the image,
    which is torch's ``ceil_mode=True, count_include_pad=False`` for a 2x2 window of stride 2.
    """
    if s.pools:
        x = layers.AveragePooling2D(2, s.stride, "same", dtype=f.dtype, name=layer_name(f"{s.name}.pool"))(x)
    return _conv_norm(f, x, s)


def _every_other(f: Layers, x, s: ShortcutSpec):
    """keras.applications' V2 shortcut of a block that strides and keeps its channels: a 1x1 max-pool."""
    return layers.MaxPooling2D(1, s.stride, dtype=f.dtype, name=layer_name(s.name))(x)


SHORTCUTS = {
    "identity": lambda f, x, s: x,
    "pool": _every_other,
    "conv": _projection,
    "avg_conv": _avg_projection,
}


def _squeeze_excite(f: Layers, x, a: AttentionSpec):
    """Squeeze-and-excitation: ``x`` scaled per channel by ``sigmoid(fc2(relu(fc1(mean))))``."""
    fc1, fc2 = a.layers
    s = layers.GlobalAveragePooling2D(keepdims=True, dtype=f.dtype, name=layer_name(f"{a.name}.pool"))(x)
    s = f.relu(f"{a.name}.relu")(f.conv_from(s, fc1))
    s = layers.Activation("sigmoid", dtype=f.dtype, name=layer_name(f"{a.name}.gate"))(f.conv_from(s, fc2))
    return layers.Multiply(dtype=f.dtype, name=layer_name(f"{a.name}.scale"))([x, s])


def _efficient_channel_attention(f: Layers, x, a: AttentionSpec):
    """ECA: ``x`` scaled per channel by the sigmoid of a 1-D conv along its pooled channels."""
    (layer,) = a.layers
    k, n = layer.shape[-1], f"{a.name}.conv"
    s = layers.GlobalAveragePooling2D(dtype=f.dtype, name=layer_name(f"{a.name}.pool"))(x)
    s = layers.Reshape((a.channels, 1), dtype=f.dtype, name=layer_name(f"{a.name}.along"))(s)
    s = layers.ZeroPadding1D(layer.padding, dtype=f.dtype, name=layer_name(f"{n}.pad"))(s)
    init = fan_in_uniform(k)  # nn.Conv1d's draw
    s = layers.Conv1D(1, k, use_bias=False, kernel_initializer=init, dtype=f.dtype, name=layer_name(n))(s)
    s = layers.Activation("sigmoid", dtype=f.dtype, name=layer_name(f"{a.name}.gate"))(s)
    s = layers.Reshape((1, 1, a.channels), dtype=f.dtype, name=layer_name(f"{a.name}.back"))(s)
    return layers.Multiply(dtype=f.dtype, name=layer_name(f"{a.name}.scale"))([x, s])


ATTENTION = {"": lambda f, x, a: x, "se": _squeeze_excite, "eca": _efficient_channel_attention}


def path(f: Layers, x, b: BlockSpec, p: int, with_conv3: bool):
    """One of the C paths of forms (a)/(b)."""
    q, f = f"{b.name}.paths.{p}", f.for_path(b)
    y = f.conv_bn(x, b.path_width, 1, b.conv1_stride, f"{q}.conv1", f"{q}.bn1", relu=True)
    y = f.conv_bn(y, b.path_width, 3, b.conv2_stride, f"{q}.conv2", f"{q}.bn2", relu=True)
    y = AA[b.aa](f, y, b.stride, f"{q}.aa")  # a per-channel pool: on each path as on (c)'s output
    return f.conv(y, b.out_channels, 1, 1, f"{q}.conv3") if with_conv3 else y


def last_conv(f: Layers, x, b: BlockSpec, filters: int, kernel: int, stride: int, conv: str, bn: str):
    """A body's last conv and its norm; a pre-activation body ends on the conv (its bias where the
    config has conv biases)."""
    if b.preact:
        return f.conv(x, filters, kernel, stride, conv, bias=b.conv_bias)
    return f.conv_bn(x, filters, kernel, stride, conv, bn, relu=False)


def basic_block(f: Layers, x, b: BlockSpec):
    y = f.conv_bn(x, b.width, 3, b.conv1_stride, f"{b.name}.conv1", f"{b.name}.bn1", relu=True)
    y = AA[b.aa](f, y, b.stride, f"{b.name}.aa")
    return last_conv(f, y, b, b.width, 3, b.conv2_stride, f"{b.name}.conv2", f"{b.name}.bn2")


def grouped_block(f: Layers, x, b: BlockSpec):
    """Form (c): 1x1, 3x3 with groups=C, 1x1."""
    n = b.name
    y = f.conv_bn(x, b.width, 1, b.conv1_stride, f"{n}.conv1", f"{n}.bn1", relu=True)
    y = f.conv_bn(y, b.width, 3, b.conv2_stride, f"{n}.conv2", f"{n}.bn2", relu=True, groups=b.cardinality)
    y = AA[b.aa](f, y, b.stride, f"{n}.aa")
    return last_conv(f, y, b, b.out_channels, 1, 1, f"{n}.conv3", f"{n}.bn3")


def early_concat_block(f: Layers, x, b: BlockSpec):
    """Form (b): C paths of 1x1, 3x3; concatenate; one shared 1x1."""
    paths = [path(f, x, b, p, with_conv3=False) for p in range(b.cardinality)]
    y = layers.Concatenate(axis=-1, dtype=f.dtype, name=layer_name(f"{b.name}.concat"))(paths)
    return last_conv(f, y, b, b.out_channels, 1, 1, f"{b.name}.conv3", f"{b.name}.bn3")


def aggregated_block(f: Layers, x, b: BlockSpec):
    """Form (a): C paths of 1x1, 3x3, 1x1; sum; one BN."""
    paths = [path(f, x, b, p, with_conv3=True) for p in range(b.cardinality)]
    y = f.add(f"{b.name}.sum")(paths) if len(paths) > 1 else paths[0]
    if b.preact:  # no norm after the sum; conv3's bias, if any, is added once, to it
        return Bias(dtype=f.dtype, name=layer_name(f"{b.name}.conv3"))(y) if b.conv_bias else y
    return f.norm(f"{b.name}.bn3", b.out_channels)(y)


BLOCKS = {"a": aggregated_block, "b": early_concat_block, "c": grouped_block}


def residual(f: Layers, x, b: BlockSpec, form: str):
    """``relu(attention(body(x)) + shortcut(x))``, written once for every block: forms write only
    their body. Pre-activation (ResNet v2) is ``body(relu(bn0(x))) + shortcut(...)``, the
    projection taking the pre-activated input, with no ReLU after the sum."""
    pre = x
    if b.preact:
        pre = f.relu(f"{b.name}.bn0.relu")(f.norm(f"{b.name}.bn0", b.in_channels)(x))
    y = basic_block(f, pre, b) if b.block == "basic" else BLOCKS[form](f, pre, b)
    y = ATTENTION[b.attention.kind](f, y, b.attention)
    y = f.add(f"{b.name}.add")([y, SHORTCUTS[b.shortcut.kind](f, pre if b.projection else x, b.shortcut)])
    return y if b.preact else f.relu(f"{b.name}.relu")(y)


POOLINGS = (None, "avg", "max")


def features_output(f: Layers, x, pooling: str | None):
    """A headless model's output, as keras.applications' ``pooling``: the feature map, or it pooled."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(dtype=f.dtype, name="avgpool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(dtype=f.dtype, name="global_maxpool")(x)
    return x


@keras.saving.register_keras_serializable(package="resnext_keras")
class ResNet(keras.Model):
    """Stem, stages, global average pool, linear head; NHWC images in, logits out.

    ``conv_impl`` says how form (c)'s grouped convs are computed ("auto", "native",
    "patches", "split"; see ``resnext_spec.grouped``): the same function and the same weights
    whichever is chosen. ``dtype`` is a Keras dtype policy for every layer
    ("float64", "mixed_bfloat16", ...; None: the global policy); BN statistics
    stay float32 at least under any of them. Float64 on JAX needs its x64 mode.

    A headless config (``num_classes=0``; ``create_model(include_top=False)``) ends as
    keras.applications does: the last feature map, or with ``pooling="avg"``/``"max"`` its
    global pool. ``features_only=True`` outputs every stage's feature map. ``norm`` builds every
    normalisation layer as ``norm(canonical name, channels, dtype policy)`` (default
    :func:`batch_norm`); a replacement is not part of ``get_config``.
    ``pyramid_outputs`` (keras-hub's name) maps each stage to its symbolic output and
    ``stage_outputs`` every comparison point, so ``keras.Model(model.input,
    model.pyramid_outputs)`` is a feature extractor; ``stages_model`` builds the latter.
    """

    def __init__(
        self,
        config: ArchConfig,
        form: str = "c",
        conv_impl: str = "auto",
        dtype: str | keras.DTypePolicy | None = None,
        pooling: str | None = None,
        features_only: bool = False,
        norm: NormFactory = None,
        **kwargs: Any,
    ) -> None:
        check_form_for(config, form)
        check_conv_impl(conv_impl)
        _check_head(config, pooling, features_only)
        p = plan(config)
        policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
        f = Layers(policy, conv_impl, norm, NORM_KINDS[config.norm_type], config.std_conv)
        inputs = keras.Input((None, None, config.in_channels), name="images", dtype=policy.compute_dtype)
        stages = {"stem": stem(f, inputs, p.stem)}
        x = stages["stem"]
        for info, stage in zip(feature_info(config), p.stages, strict=True):
            for b in stage:
                x = residual(f, x, b, form)
            stages[info.module] = x
        if p.head.norm is not None:  # a pre-activation network's last norm and ReLU (timm's ``norm``)
            x = f.relu("norm.relu")(f.norm("norm", p.head.norm.shape[0])(x))
        features = x
        if config.headless:
            outputs = list(stages.values())[1:] if features_only else features_output(f, x, pooling)
        else:
            stages["pool"] = layers.GlobalAveragePooling2D(dtype=policy, name="avgpool")(x)
            outputs = layers.Dense(
                p.head.num_classes,
                kernel_initializer=LINEAR_INIT,
                bias_initializer=fan_in_uniform(p.head.in_features),
                dtype=policy,
                name="fc",
            )(stages["pool"])
            stages["logits"] = outputs
        if pooling == "avg":
            stages["pool"] = outputs
        kwargs.setdefault("name", f"resnet_{form}")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.config = config
        self.form = form
        self.conv_impl = conv_impl
        self.pooling = pooling
        self.features_only = features_only
        self.layer_dtype_policy = policy  # the Functional model keeps float32 as its own policy
        self.feature_info = feature_info(config)
        self.num_features = p.head.in_features
        self.pyramid_outputs = {i.module: stages[i.module] for i in self.feature_info}
        self.stage_outputs = stages
        self.features = features  # the last feature map, after a pre-activation network's norm

    def get_config(self) -> dict[str, Any]:
        # Keras's own keys (name, trainable, dtype) from the base Layer, then the constructor's.
        # Not super(): Functional's get_config serialises every layer of the graph (thousands in
        # form (a)), which from_config never reads: the constructor's arguments rebuild it all.
        base = keras.layers.Layer.get_config(self)
        return base | {
            "dtype": keras.dtype_policies.serialize(self.layer_dtype_policy),
            "config": self.config.to_dict(),
            "form": self.form,
            "conv_impl": self.conv_impl,
            "pooling": self.pooling,
            "features_only": self.features_only,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ResNet:
        config = dict(config)
        arch = ArchConfig.from_dict(config.pop("config"))
        return cls(arch, config.pop("form"), config.pop("conv_impl", "auto"), **config)


def _check_head(config: ArchConfig, pooling: str | None, features_only: bool) -> None:
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    if not config.headless and (pooling is not None or features_only):
        what = f"pooling={pooling!r}" if pooling is not None else "features_only=True"
        raise ConfigError(f"{what} is for a headless model: give include_top=False (or num_classes=0)")
    if features_only and pooling is not None:
        raise ConfigError("features_only=True outputs feature maps: it takes no pooling")


def stages_model(model: ResNet) -> keras.Model:
    """A functional model of ``model``'s layers whose output is the dict of every comparison point
    (``resnext_spec.stage_names``): stem, each stage, average-pooled features, logits. It shares
    ``model``'s variables, so it computes with whatever weights ``model`` holds."""
    outputs = dict(model.stage_outputs)
    if "pool" not in outputs:
        pool = layers.GlobalAveragePooling2D(dtype=model.layer_dtype_policy, name="stages_avgpool")
        outputs["pool"] = pool(model.features)
    return keras.Model(model.input, outputs, name=f"{model.name}_stages")


def create_model(
    name: str | None = None,
    *,
    config: ArchConfig | None = None,
    form: str = "c",
    num_classes: int | None = None,
    in_channels: int | None = None,
    conv_impl: str = "auto",
    dtype: str | keras.DTypePolicy | None = None,
    include_top: bool = True,
    pooling: str | None = None,
    features_only: bool = False,
    norm: NormFactory = None,
) -> ResNet:
    """A model from a preset name or an ``ArchConfig``, in block form ``form``.

    ``include_top=False`` (keras.applications' argument; the same as ``num_classes=0``) makes
    a headless backbone. ``conv_impl``, ``dtype``, ``pooling``, ``features_only`` and ``norm`` as
    in :class:`ResNet`.
    """
    if not include_top or features_only:
        if num_classes:
            raise ConfigError(f"include_top=False has no classifier: num_classes={num_classes} cannot apply")
        num_classes = 0
    cfg = resolve_config(name, config, num_classes=num_classes, in_channels=in_channels)
    return ResNet(cfg, form, conv_impl, dtype, pooling, features_only, norm)
