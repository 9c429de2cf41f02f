"""``keras.applications`` ResNet50 / 101 / 152 weight files (``.weights.h5``, legacy ``.h5``), read exactly.

Those networks are ResNet v1 (the stride on each stage's first 1x1) whose convolutions
carry a bias and whose BatchNorm has eps 1.001e-5. In inference both fold into our
bias-free, eps-1e-5 layout without loss: a conv bias ``b`` before BN is the running
mean moved by ``-b``, and the eps difference is the running variance moved by 1e-8.
A Keras 3 weights file keys its layers by class and order, and Keras loads a legacy
``.h5`` by order too, so the file is loaded into the ``keras.applications`` model of
its depth (counted from its convolutions) by Keras itself and read back layer by
layer, by the names that model gives them.
"""

from __future__ import annotations

import os
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
NOTE = (
    "keras.applications {model} (ResNet v1: stride on the first 1x1). Each conv bias is folded "
    "into the next BN's running mean and BN eps 1.001e-5 into its running variance: exact in "
    "inference (up to float32 rounding). Not exact in training mode: batch statistics take eps "
    "1e-5 here and running statistics move at momentum 0.1 (Keras: 0.01). Its softmax is left "
    "out: the ported model gives logits. It expects keras.applications.resnet.preprocess_input "
    "(BGR, ImageNet mean subtracted, no scaling)."
)


class KerasAppsError(PortError):
    """A keras.applications file this project cannot hold; the message says what differs."""


def depth_and_classes(path: str | os.PathLike) -> tuple[str, tuple[int, ...], int] | None:
    """(model name, blocks per stage, classes) when the file is shaped like a keras.applications ResNet;
    0 classes for a file saved without its top (``include_top=False``).

    Two layouts: Keras 3's ``.weights.h5`` (``layers/conv2d_7/vars/0``: by class and order)
    and the legacy ``.h5`` that Keras 2 wrote and keras.applications downloads are
    (``layer_names`` attribute, a group per layer listing its ``weight_names``).
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
            kernel_shape = shapes[-1] if shapes else ()
        else:
            layers = f.get("layers")
            if not isinstance(layers, h5py.Group):
                return None
            convs = sum(1 for n in layers if n == "conv2d" or n.startswith("conv2d_"))
            dense = layers.get("dense")
            kernel_shape = (
                dense["vars/0"].shape if isinstance(dense, h5py.Group) and "vars/0" in dense else ()
            )
        if convs not in DEPTHS:
            return None
        if len(kernel_shape) != 2:  # the last weights are a BN's, or there is no dense layer
            return (*DEPTHS[convs], 0)
        if kernel_shape[0] != 2048:
            raise KerasAppsError(
                f"a keras.applications {DEPTHS[convs][0]} whose top takes {kernel_shape[0]} features, "
                "not the 2048 its last stage gives"
            )
        return (*DEPTHS[convs], int(kernel_shape[1]))


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
    config = replace(get_config("resnet50"), layers=layers, stride_on="1x1", num_classes=classes)

    def conv_bn(keras_prefix: str, conv: str, bn: str) -> dict[str, np.ndarray]:
        kernel, bias = model.get_layer(f"{keras_prefix}_conv").get_weights()
        gamma, beta, mean, var = model.get_layer(f"{keras_prefix}_bn").get_weights()
        return {
            f"{conv}.weight": kernel.transpose(3, 2, 0, 1),
            f"{bn}.weight": gamma,
            f"{bn}.bias": beta,
            f"{bn}.running_mean": mean - bias,
            f"{bn}.running_var": var + np.float32(KERAS_EPS - OUR_EPS),
        }

    weights = conv_bn("conv1", "conv1", "bn1")
    for s, blocks in enumerate(layers):
        for j in range(blocks):
            keras_block, ours = f"conv{s + 2}_block{j + 1}", f"layer{s + 1}.{j}"
            for k in (1, 2, 3):
                weights |= conv_bn(f"{keras_block}_{k}", f"{ours}.conv{k}", f"{ours}.bn{k}")
            if j == 0:
                weights |= conv_bn(f"{keras_block}_0", f"{ours}.downsample.0", f"{ours}.downsample.1")
    notes = [NOTE.format(model=name)]
    if classes:
        kernel, bias = model.get_layer("predictions").get_weights()
        weights |= {"fc.weight": kernel.T, "fc.bias": bias}
    else:
        notes.append(
            "saved with include_top=False: ported as a headless model (num_classes=0); the file does "
            "not record a pooling, so Keras builds take pooling= and torch/Flax give average-pooled features"
        )
    return {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}, config, notes
