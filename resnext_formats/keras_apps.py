"""``keras.applications`` ResNet50 / 101 / 152 and their V2 weight files (``.weights.h5``, legacy
``.h5``), read exactly.

ResNet50 / 101 / 152 are ResNet v1 (the stride on each stage's first 1x1) whose convolutions
carry a bias and whose BatchNorm has eps 1.001e-5. In inference both fold into our
bias-free, eps-1e-5 layout without loss: a conv bias ``b`` before BN is the running
mean moved by ``-b``, and the eps difference is the running variance moved by 1e-8.
ResNet50V2 / 101V2 / 152V2 are pre-activation: no norm follows the stem's conv, the shortcuts'
or each block's last, so those keep their biases (``ArchConfig.conv_bias``); each stage strides in
its last block, and the stem's max-pool pads with zeros (presets ``resnet50v2`` ...).
A Keras 3 weights file keys its layers by class and order, and Keras loads a legacy
``.h5`` by order too, so the file is loaded into the ``keras.applications`` model of
its depth (counted from its convolutions) by Keras itself and read back layer by
layer, by the names that model gives them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace

import numpy as np

from resnext_spec import ArchConfig, get_config

from .errors import PortError

KERAS_EPS = 1.001e-5
OUR_EPS = 1e-5
# convolutions in the file -> (keras.applications model, blocks per stage)
DEPTHS = {
    53: ("ResNet50", (3, 4, 6, 3)),
    104: ("ResNet101", (3, 4, 23, 3)),
    155: ("ResNet152", (3, 8, 36, 3)),
}
# The V2 networks of the same depths: (keras.applications model, preset)
V2 = {"ResNet50": ("ResNet50V2", "resnet50v2"), "ResNet101": ("ResNet101V2", "resnet101v2"),
      "ResNet152": ("ResNet152V2", "resnet152v2")}  # fmt: skip
NOTE = (
    "keras.applications {model} (ResNet v1: stride on the first 1x1). Each conv bias is folded "
    "into the next BN's running mean and BN eps 1.001e-5 into its running variance: exact in "
    "inference (up to float32 rounding). Not exact in training mode: batch statistics take eps "
    "1e-5 here and running statistics move at momentum 0.1 (Keras: 0.01). Its softmax is left "
    "out: the ported model gives logits. It expects keras.applications.resnet.preprocess_input "
    "(BGR, ImageNet mean subtracted, no scaling)."
)

NOTE_V2 = (
    "keras.applications {model} (pre-activation; each stage strides in its last block, whose "
    "shortcut takes every second pixel; the stem's max-pool pads with zeros). Conv biases are kept "
    "where no norm follows; BN eps 1.001e-5 is folded into the running variance: exact in inference "
    "(up to float32 rounding), not in training mode (eps 1e-5 in batch statistics; running "
    "statistics at momentum 0.1, Keras: 0.01). Its softmax is left out: the ported model gives "
    "logits. It expects keras.applications.resnet_v2.preprocess_input (RGB scaled to [-1, 1])."
)


class KerasAppsError(PortError):
    """A keras.applications file this project cannot hold; the message says what differs."""


def depth_and_classes(path: str | os.PathLike) -> tuple[str, tuple[int, ...], int] | None:
    """(model name, blocks per stage, classes) when the file is shaped like a keras.applications ResNet;
    0 classes for a file saved without its top (``include_top=False``).

    Two layouts: Keras 3's ``.weights.h5`` (``layers/conv2d_7/vars/0``: by class and order)
    and the legacy ``.h5`` that Keras 2 wrote and keras.applications downloads are
    (``layer_names`` attribute, a group per layer listing its ``weight_names``). v1 and V2 have
    as many convolutions; V2 has four norms fewer (a norm on each block's input, one at the end,
    none after the shortcuts or the stem).
    """
    import h5py

    with h5py.File(path, "r") as f:
        if "layer_names" in f.attrs or "model_weights" in f:  # legacy; a whole-model file nests it
            group = f["model_weights"] if "model_weights" in f else f
            shapes = []
            for layer in group.attrs.get("layer_names", []):
                layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                names = group[layer].attrs.get("weight_names", [])
                if len(names):
                    first = names[0].decode() if isinstance(names[0], bytes) else str(names[0])
                    shapes.append(group[layer][first].shape)
            convs = sum(1 for shape in shapes if len(shape) == 4)
            norms = sum(1 for shape in shapes if len(shape) == 1)
            kernel_shape = shapes[-1] if shapes else ()
        else:
            layers = f.get("layers")
            if not isinstance(layers, h5py.Group):
                return None
            convs = sum(1 for n in layers if n == "conv2d" or n.startswith("conv2d_"))
            norms = sum(1 for n in layers if n.startswith("batch_normalization"))
            dense = layers.get("dense")
            kernel_shape = (
                dense["vars/0"].shape if isinstance(dense, h5py.Group) and "vars/0" in dense else ()
            )
        if convs not in DEPTHS or norms not in (convs, convs - 4):
            return None
        name, layers = DEPTHS[convs]
        name = name if norms == convs else V2[name][0]
        if len(kernel_shape) != 2:  # the last weights are a BN's, or there is no dense layer
            return name, layers, 0
        if kernel_shape[0] != 2048:
            raise KerasAppsError(
                f"a keras.applications {name} whose top takes {kernel_shape[0]} features, "
                "not the 2048 its last stage gives"
            )
        return name, layers, int(kernel_shape[1])


def read_keras_applications(
    path: str | os.PathLike,
) -> tuple[dict[str, np.ndarray], ArchConfig, list[str]] | None:
    """Canonical weights (form c), config and notes of a keras.applications ResNet weights file;
    None when the file is not shaped like one."""
    import keras

    found = depth_and_classes(path)
    if found is None:
        return None
    name, layers, classes = found
    top = dict(classes=classes, classifier_activation=None) if classes else dict(include_top=False)
    model = getattr(keras.applications, name)(weights=None, **top)
    model.load_weights(path)
    if name.endswith("V2"):
        weights, config, notes = _read_v2(model, name, layers, classes)
    else:
        weights, config, notes = _read_v1(model, name, layers, classes)
    if not classes:
        notes.append(
            "saved with include_top=False: ported as a headless model (num_classes=0); the file does "
            "not record a pooling, so Keras builds take pooling= and torch/Flax give average-pooled features"
        )
    return {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}, config, notes


def _norm(layer) -> dict[str, np.ndarray]:
    """A Keras BN's tensors under torch's names, its eps 1.001e-5 folded into the running variance."""
    gamma, beta, mean, var = layer.get_weights()
    return {
        "weight": gamma,
        "bias": beta,
        "running_mean": mean,
        "running_var": var + np.float32(KERAS_EPS - OUR_EPS),
    }


def _conv(layer) -> dict[str, np.ndarray]:
    """A Keras conv's kernel (HWIO -> OIHW) and bias, if it has one, under torch's names."""
    kernel, *bias = layer.get_weights()
    return {"weight": kernel.transpose(3, 2, 0, 1)} | ({"bias": bias[0]} if bias else {})


def _named(prefix: str, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def _head(model, classes: int) -> dict[str, np.ndarray]:
    if not classes:
        return {}
    kernel, bias = model.get_layer("predictions").get_weights()
    return {"fc.weight": kernel.T, "fc.bias": bias}


def _read_v2(model, name: str, layers: tuple[int, ...], classes: int):
    """ResNet50V2 / 101V2 / 152V2: each Keras layer is one canonical layer, renamed."""
    config = replace(get_config(V2[name.removesuffix("V2")][1]), layers=layers, num_classes=classes)
    weights = _named("conv1", _conv(model.get_layer("conv1_conv")))
    for s, blocks in enumerate(layers):
        for j in range(blocks):
            keras_block, ours = f"conv{s + 2}_block{j + 1}", f"layer{s + 1}.{j}"
            weights |= _named(f"{ours}.bn0", _norm(model.get_layer(f"{keras_block}_preact_bn")))
            for k in (1, 2, 3):
                weights |= _named(f"{ours}.conv{k}", _conv(model.get_layer(f"{keras_block}_{k}_conv")))
            for k in (1, 2):
                weights |= _named(f"{ours}.bn{k}", _norm(model.get_layer(f"{keras_block}_{k}_bn")))
            if j == 0:
                weights |= _named(f"{ours}.downsample.0", _conv(model.get_layer(f"{keras_block}_0_conv")))
    weights |= _named("norm", _norm(model.get_layer("post_bn"))) | _head(model, classes)
    return weights, config, [NOTE_V2.format(model=name)]


def _read_v1(model, name: str, layers: tuple[int, ...], classes: int):
    """ResNet50 / 101 / 152: each conv's bias folded into the BN after it."""
    config = replace(get_config("resnet50"), layers=layers, stride_on="1x1", num_classes=classes)

    def conv_bn(keras_prefix: str, conv: str, bn: str) -> dict[str, np.ndarray]:
        c, n = _conv(model.get_layer(f"{keras_prefix}_conv")), _norm(model.get_layer(f"{keras_prefix}_bn"))
        n["running_mean"] = n["running_mean"] - c.pop("bias")
        return _named(conv, c) | _named(bn, n)

    weights = conv_bn("conv1", "conv1", "bn1")
    for s, blocks in enumerate(layers):
        for j in range(blocks):
            keras_block, ours = f"conv{s + 2}_block{j + 1}", f"layer{s + 1}.{j}"
            for k in (1, 2, 3):
                weights |= conv_bn(f"{keras_block}_{k}", f"{ours}.conv{k}", f"{ours}.bn{k}")
            if j == 0:
                weights |= conv_bn(f"{keras_block}_0", f"{ours}.downsample.0", f"{ours}.downsample.1")
    return weights | _head(model, classes), config, [NOTE.format(model=name)]


def keras_applications_model(config: ArchConfig) -> str:
    """The keras.applications model that ``config`` is (any head), or a KerasAppsError saying which
    networks keras.applications builds."""
    for name, layers in DEPTHS.values():
        v1 = replace(get_config("resnet50"), layers=layers, stride_on="1x1")
        v2 = get_config(V2[name][1])
        for model, base in ((name, v1), (V2[name][0], v2)):
            if replace(config, num_classes=base.num_classes) == base:
                return model
    raise KerasAppsError(
        "keras.applications builds ResNet50/101/152 (v1: stride on the 1x1) and their V2, not "
        f"{config}: port to this project's .weights.h5 instead"
    )


def write_keras_applications(
    path: str | os.PathLike, weights: dict[str, np.ndarray], config: ArchConfig
) -> None:
    """A ``.weights.h5`` that the keras.applications model of ``config`` loads (``load_weights``),
    written by Keras itself into that model, atomically: the inverse of
    :func:`read_keras_applications` (form-c ``weights``). A v1 conv gets a zero bias, its BN the
    running mean as it is; BN eps 1.001e-5 takes 1e-8 back from each running variance."""
    import keras

    from resnext_spec import atomic_write

    name = keras_applications_model(config)
    top = dict(classes=config.num_classes, classifier_activation=None) if config.num_classes else {}
    model = getattr(keras.applications, name)(weights=None, include_top=bool(config.num_classes), **top)

    def conv(layer: str, prefix: str) -> None:
        target = model.get_layer(layer)
        kernel = weights[f"{prefix}.weight"].transpose(2, 3, 1, 0)
        bias = weights.get(f"{prefix}.bias", np.zeros(kernel.shape[-1], np.float32))
        target.set_weights([kernel, bias] if target.use_bias else [kernel])

    def norm(layer: str, prefix: str) -> None:
        var = weights[f"{prefix}.running_var"] - np.float32(KERAS_EPS - OUR_EPS)
        stats = [weights[f"{prefix}.{t}"] for t in ("weight", "bias", "running_mean")]
        model.get_layer(layer).set_weights([*stats, var])

    v2 = name.endswith("V2")
    conv("conv1_conv", "conv1")
    if not v2:
        norm("conv1_bn", "bn1")
    for s, blocks in enumerate(config.layers):
        for j in range(blocks):
            keras_block, ours = f"conv{s + 2}_block{j + 1}", f"layer{s + 1}.{j}"
            if v2:
                norm(f"{keras_block}_preact_bn", f"{ours}.bn0")
            for k in (1, 2, 3):
                conv(f"{keras_block}_{k}_conv", f"{ours}.conv{k}")
                if k < 3 or not v2:
                    norm(f"{keras_block}_{k}_bn", f"{ours}.bn{k}")
            if j == 0:
                conv(f"{keras_block}_0_conv", f"{ours}.downsample.0")
                if not v2:
                    norm(f"{keras_block}_0_bn", f"{ours}.downsample.1")
    if v2:
        norm("post_bn", "norm")
    if config.num_classes:
        model.get_layer("predictions").set_weights([weights["fc.weight"].T, weights["fc.bias"]])

    def save(tmp: str) -> None:  # Keras insists on the '.weights.h5' suffix: written beside, then moved
        with tempfile.TemporaryDirectory() as folder:
            named = os.path.join(folder, "model.weights.h5")
            model.save_weights(named)
            shutil.move(named, tmp)

    atomic_write(path, save)
