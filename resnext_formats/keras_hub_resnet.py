"""keras-hub ResNet presets (``ResNetImageClassifier.save_to_preset``), read without keras-hub.

A preset folder holds ``config.json`` (the ``ResNetBackbone``), ``model.weights.h5`` (its
weights), ``task.json`` and ``task.weights.h5`` (the classifier head). keras-hub's v1
ResNet is torchvision's exactly: bias-free convolutions, BN eps 1e-5, the stride in the
3x3 and the shortcut's 1x1, explicit zero padding where torch pads (before the max pool
the input is a ReLU's, so zeros equal torch's -inf). A Keras 3 weights file keys layers
by class and order (``layers/conv2d_7/vars/0``), so the convolutions and BatchNorms are
taken in the order keras-hub builds them: the stem, then per block 1, 2, the shortcut
(0), 3 for bottlenecks and 1, the shortcut, 2 for basic blocks (tests/test_port_ecosystem
checks this against keras-hub's own model). Its ``vd`` blocks (``resnet_vd_*``) are timm's
ResNet-D: a deep stem of 3x3 convs (32, 32, 64) and average-pooled shortcuts, which "same"
pooling computes as torch's ceil mode without the padding; their layers come in the same
order, and ``basic_block_vd`` projects in the first block of the first stage too
(``first_shortcut``).
Its pre-activation (v2) ResNet (``use_pre_activation``, presets ``resnet_v2_*``) is timm's
``resnetv2_*``: a norm on each block's input, none after the stem's conv or the shortcuts', the
stem's max-pool padded with -inf as torch pads it, and a final norm (``post_bn``). Its layers come
in the order v1's do, with the input's norm first in each block.
keras-hub's vd blocks with pre-activation fail to build in keras-hub itself, so none exists to read.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from resnext_spec import ArchConfig, plan
from resnext_spec.checkpoint import atomic_write_dir

from .errors import PortError

BLOCKS = {
    "bottleneck_block": "bottleneck",
    "basic_block": "basic",
    "bottleneck_block_vd": "bottleneck",
    "basic_block_vd": "basic",
}
# The vd blocks' stem and shortcuts, in ArchConfig's fields (timm's ResNet-D).
VD = dict(stem_type="deep", stem_width=32, avg_down=True)
NOTE = (
    "a keras-hub ResNetImageClassifier preset (ResNet v1.5: stride on the 3x3); exact in inference. "
    "In training, its BN (momentum 0.9, torch's 0.1) moves the running variance by the biased "
    "batch variance, torch by the unbiased one. "
    "It expects keras-hub's ResNetImageClassifierPreprocessor input (the preprocessor.json in the preset)"
)

NOTE_V2 = (
    "a keras-hub ResNet v2 preset (pre-activation; timm's resnetv2: stride on the 3x3); exact in "
    "inference. In training its BN moves the running variance by the biased batch variance. It "
    "expects keras-hub's ResNetImageClassifierPreprocessor input (the preprocessor.json in the preset)"
)


class KerasHubError(PortError):
    """A keras-hub preset this project cannot hold exactly; the message says what differs."""


def is_keras_hub_dir(path: str | os.PathLike) -> bool:
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and str(config.get("registered_name", "")).startswith("keras_hub>")


def _json(path: Path) -> dict:
    """A keras-hub JSON file: an object whose 'config' is a map."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise KerasHubError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise KerasHubError(f"{path}: not a keras-hub config (no 'config' map)")
    return data


def config_from_keras_hub(backbone: dict, task: dict, where) -> ArchConfig:
    """Our ArchConfig for a keras-hub ResNetBackbone + classifier config, or a KerasHubError."""
    depths = backbone.get("stackwise_num_blocks")
    if not isinstance(depths, list) or not depths or not all(isinstance(d, int) and d > 0 for d in depths):
        raise KerasHubError(f"{where}: stackwise_num_blocks {depths!r} is not a list of block counts")
    block_type = backbone.get("block_type") if backbone.get("block_type") in BLOCKS else "bottleneck_block"
    vd = block_type.endswith("_vd")
    preact = backbone.get("use_pre_activation") is True and not vd
    want = {
        "block_type": block_type,
        "use_pre_activation": preact,
        "input_conv_filters": [32, 32, 64] if vd else [64],
        "input_conv_kernel_sizes": [3, 3, 3] if vd else [7],
        "stackwise_num_filters": [64 * 2**s for s in range(len(depths))],
        "stackwise_num_strides": [1] + [2] * (len(depths) - 1),
    }
    problems = [f"{k} {backbone.get(k)!r} (here {v!r})" for k, v in want.items() if backbone.get(k) != v]
    if task.get("pooling", "avg") != "avg":
        problems.append(f"pooling {task.get('pooling')!r} (here 'avg')")
    if problems:
        raise KerasHubError(
            f"{where}: a keras-hub ResNet this project cannot express: " + ", ".join(problems)
        )
    classes = task.get("num_classes")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:  # 0: a backbone alone
        raise KerasHubError(f"{where}: num_classes {classes!r} is not a class count")
    variant = dict(VD, first_shortcut=block_type == "basic_block_vd") if vd else dict(preact=preact)
    return ArchConfig(block=BLOCKS[block_type], layers=tuple(depths), num_classes=classes, **variant)


def _by_class(layers, cls: str) -> list:
    """The h5 groups of one layer class, in the order Keras numbered them (conv2d, conv2d_1, ...)."""
    found = [
        (int(m.group(1) or 0), layers[n]) for n in layers if (m := re.fullmatch(rf"{cls}(?:_(\d+))?", n))
    ]
    return [group for _, group in sorted(found, key=lambda t: t[0])]


def _build_order(config: ArchConfig) -> tuple[list[str], list[str]]:
    """Our convs and our norms, each in the order keras-hub's model lists its layers of that class:
    per block the convs 1, 2, the shortcut's (0), 3 (a basic block: 1, 0, 2), each with its norm,
    and in a pre-activation block the input's norm first and none after its last conv or the
    shortcut's (tests/test_port_ecosystem.py and test_preact.py check this against keras-hub)."""
    p = plan(config)
    convs = [step.conv.name for step in p.stem.steps]
    norms = [step.norm.name for step in p.stem.steps if step.norm is not None]
    for b in p.blocks:
        norms += [b.pre_norm.name] if b.preact else []
        for k in ("1", "2", "0", "3") if b.block == "bottleneck" else ("1", "0", "2"):
            if k == "0" and b.projection:
                convs.append(b.shortcut.conv.name)
                norms += [b.shortcut.norm.name] if b.shortcut.norm is not None else []
            elif k != "0":
                convs.append(f"{b.name}.conv{k}")
                last = k == ("3" if b.block == "bottleneck" else "2")
                norms += [] if b.preact and last else [f"{b.name}.bn{k}"]
    return convs, norms + ([p.head.norm.name] if p.head.norm is not None else [])


def read_keras_hub_dir(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], ArchConfig, list[str]]:
    """Canonical weights (form c), config and notes of a keras-hub ResNet classifier preset, or of
    a backbone preset (no task files), read as a headless model."""
    import h5py

    path = Path(path)
    backbone = _json(path / "config.json")
    if (kind := backbone.get("class_name")) != "ResNetBackbone":
        raise KerasHubError(f"{path}: a keras-hub {kind} preset; of keras-hub's models, ResNets are read")
    headless = not (path / "task.json").is_file() and not (path / "task.weights.h5").is_file()
    if not headless and not ((path / "task.json").is_file() and (path / "task.weights.h5").is_file()):
        raise KerasHubError(f"{path}: a keras-hub preset with one of task.json and task.weights.h5, not both")
    task = {"num_classes": 0} if headless else _json(path / "task.json")["config"]
    config = config_from_keras_hub(backbone["config"], task, path)
    conv_names, norm_names = _build_order(config)
    weights: dict[str, np.ndarray] = {}
    with h5py.File(path / "model.weights.h5", "r") as f:
        convs, norms = _by_class(f["layers"], "conv2d"), _by_class(f["layers"], "batch_normalization")
        if len(convs) != len(conv_names) or len(norms) != len(norm_names):
            raise KerasHubError(
                f"{path}/model.weights.h5: {len(convs)} convolutions and {len(norms)} BatchNorms, "
                f"where config.json's network has {len(conv_names)} and {len(norm_names)}"
            )
        for conv, kernel in zip(conv_names, convs, strict=True):
            weights[f"{conv}.weight"] = np.asarray(kernel["vars/0"]).transpose(3, 2, 0, 1)
        for bn, norm in zip(norm_names, norms, strict=True):
            for i, leaf in enumerate(("weight", "bias", "running_mean", "running_var")):
                weights[f"{bn}.{leaf}"] = np.asarray(norm[f"vars/{i}"])
    notes = [NOTE_V2 if config.preact else NOTE]
    if headless:
        notes.append("a keras-hub ResNetBackbone preset (no task): ported as a headless model, num_classes=0")
    else:
        with h5py.File(path / "task.weights.h5", "r") as f:
            dense = f["layers/dense/vars"]
            weights["fc.weight"], weights["fc.bias"] = np.asarray(dense["0"]).T, np.asarray(dense["1"])
    if task.get("activation") not in (None, "linear"):
        notes.append(f"its {task['activation']} activation is left out: the ported model gives logits")
    return {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}, config, notes


def keras_hub_config(config: ArchConfig) -> dict:
    """keras-hub's ``ResNetBackbone`` config of ``config``, or a KerasHubError where keras-hub has no
    such network (read back by :func:`config_from_keras_hub`, which must give ``config`` again)."""
    vd = config.stem_type == "deep"
    block_type = ("bottleneck_block" if config.block == "bottleneck" else "basic_block") + (
        "_vd" if vd else ""
    )
    n = len(config.layers)
    backbone = {
        "name": "res_net_backbone",
        "trainable": True,
        "dtype": {
            "module": "keras",
            "class_name": "DTypePolicy",
            "config": {"name": "float32"},
            "registered_name": None,
        },
        "input_conv_filters": [32, 32, 64] if vd else [64],
        "input_conv_kernel_sizes": [3, 3, 3] if vd else [7],
        "stackwise_num_filters": [64 * 2**s for s in range(n)],
        "stackwise_num_blocks": list(config.layers),
        "stackwise_num_strides": [1] + [2] * (n - 1),
        "block_type": block_type,
        "use_pre_activation": config.preact,
        "image_shape": [None, None, config.in_channels],
    }
    try:
        same = config_from_keras_hub(backbone, {"num_classes": config.num_classes}, "") == config
    except KerasHubError:
        same = False
    if not same:
        raise KerasHubError(
            "keras-hub's ResNetBackbone has no such network: it builds ResNet v1.5 (torchvision's), its vd "
            f"blocks and ResNet v2 with 3 input channels, not {config}"
        )
    return backbone


def write_keras_hub_dir(path: str | os.PathLike, weights: dict[str, np.ndarray], config: ArchConfig) -> None:
    """A keras-hub preset folder of ``config`` (form-c ``weights``) that ``ResNetImageClassifier``
    (``ResNetBackbone`` for a headless config) ``.from_preset`` loads: its config and task JSON, and
    its weights in the layout Keras writes (``layers/conv2d_7/vars/0``, by class and build order),
    written without keras-hub, beside and renamed into place."""
    import datetime

    import h5py

    backbone = keras_hub_config(config)

    def wrapped(cls: str, module: str, inner: dict) -> dict:
        return {"module": module, "class_name": cls, "config": inner, "registered_name": f"keras_hub>{cls}"}

    backbone_json = wrapped("ResNetBackbone", "keras_hub.src.models.resnet.resnet_backbone", backbone)
    conv_names, norm_names = _build_order(config)

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(backbone_json, indent=4))
        with h5py.File(tmp / "model.weights.h5", "w") as f:
            f.create_group("vars")
            layers = f.create_group("layers")
            for i, name in enumerate(conv_names):
                group = layers.create_group(f"conv2d_{i}" if i else "conv2d").create_group("vars")
                group["0"] = np.asarray(weights[f"{name}.weight"], np.float32).transpose(2, 3, 1, 0)
            for i, name in enumerate(norm_names):
                group = layers.create_group(f"batch_normalization_{i}" if i else "batch_normalization")
                for k, leaf in enumerate(("weight", "bias", "running_mean", "running_var")):
                    group.require_group("vars")[str(k)] = np.asarray(weights[f"{name}.{leaf}"], np.float32)
        stats = sum(np.size(weights[f"{n}.running_mean"]) for n in norm_names)
        count = sum(np.size(v) for k, v in weights.items() if not k.startswith("fc.")) + stats
        tasks = []
        if config.num_classes:
            task = {
                "backbone": backbone_json, "preprocessor": None, "name": "res_net_image_classifier",
                "num_classes": config.num_classes, "pooling": "avg", "activation": None, "dropout": 0.0,
            }  # fmt: skip
            module = "keras_hub.src.models.resnet.resnet_image_classifier"
            (tmp / "task.json").write_text(
                json.dumps(wrapped("ResNetImageClassifier", module, task), indent=4)
            )
            with h5py.File(tmp / "task.weights.h5", "w") as f:
                dense = f.create_group("layers/dense/vars")
                dense["0"] = np.asarray(weights["fc.weight"], np.float32).T
                dense["1"] = np.asarray(weights["fc.bias"], np.float32)
                # The optimizer keras-hub compiles a classifier with (Adam at 5e-5), untrained, as
                # keras-hub's own save_to_preset writes it: without it from_preset warns.
                f["optimizer/vars/0"] = np.int64(0)
                f["optimizer/vars/1"] = np.float32(5e-5)
            tasks = ["ImageClassifier"]
        metadata = {
            "parameter_count": int(count),
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "tasks": tasks,
            "written_by": "resnext port (resnext-three-ways)",
        }
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=4))

    atomic_write_dir(path, write)
