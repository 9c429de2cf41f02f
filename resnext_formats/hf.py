"""Hugging Face ``transformers`` ResNet model directories, read and written without transformers.

A directory holds ``config.json`` (``model_type: "resnet"``) and ``model.safetensors``
or ``pytorch_model.bin``. Its tensors are torchvision's under other names:

    resnet.embedder.embedder.convolution / .normalization      conv1 / bn1
    resnet.encoder.stages.S.layers.J.layer.K.convolution        layer{S+1}.J.conv{K+1}
    resnet.encoder.stages.S.layers.J.layer.K.normalization      layer{S+1}.J.bn{K+1}
    resnet.encoder.stages.S.layers.J.shortcut.convolution       layer{S+1}.J.downsample.0
    resnet.encoder.stages.S.layers.J.shortcut.normalization     layer{S+1}.J.downsample.1
    classifier.1                                                fc

The config says where the stride sits (``downsample_in_bottleneck``: on the first
1x1, as ResNet v1). transformers has no grouped ResNet, so ResNeXt has no HF layout.
A ``ResNetModel`` or ``ResNetBackbone`` folder holds the same tensors without the
``resnet.`` prefix and without the classifier: it is read as a headless model
(``num_classes=0``), and a headless model is written as a ``ResNetModel``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from resnext_spec import ArchConfig, ConfigError, WeightsMismatchError, check_weights, plan
from resnext_spec.checkpoint import atomic_write_bytes, atomic_write_dir, read_safetensors

from .errors import PortError
from .torch_file import read_torch_state_dict

HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
PREFIX = "resnet."  # ResNetForImageClassification's base model; ResNetModel's own names have none
HEADLESS = ("ResNetModel", "ResNetBackbone")
_STEM = "resnet.embedder.embedder."
_BLOCK = re.compile(
    r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.(layer\.(\d+)|shortcut)\.(convolution|normalization)\.(.+)"
)


class HFError(PortError):
    """A Hugging Face directory this project cannot hold exactly; the message says what differs."""


def config_from_hf(hf: dict, path) -> ArchConfig:
    """Our ArchConfig for a transformers ``ResNetConfig`` dict, or an HFError naming what differs."""
    if hf.get("model_type") != "resnet":
        raise HFError(f"{path}: config.json is a {hf.get('model_type')!r} model, not a transformers ResNet")
    block = {"bottleneck": "bottleneck", "basic": "basic"}.get(hf.get("layer_type", "bottleneck"))
    depths, widths = list(hf.get("depths", [])), list(hf.get("hidden_sizes", []))
    expansion = 4 if block == "bottleneck" else 1
    problems = []
    if block is None:
        problems.append(f"layer_type {hf.get('layer_type')!r}")
    if len(widths) != len(depths) or any(not isinstance(w, int) or w < 1 or w % expansion for w in widths):
        problems.append(
            f"hidden_sizes {widths} (one per stage, each a multiple of the expansion {expansion})"
        )
    stem_width = hf.get("embedding_size", 64)
    if not isinstance(stem_width, int) or stem_width < 1:
        problems.append(f"embedding_size {stem_width!r}")
    if hf.get("hidden_act", "relu") != "relu":
        problems.append(f"hidden_act {hf.get('hidden_act')!r}")
    if hf.get("downsample_in_first_stage", False):
        problems.append("downsample_in_first_stage (stage 1 has stride 1 here)")
    if problems:
        raise HFError(f"{path}: a transformers ResNet this project cannot express: " + ", ".join(problems))
    labels = hf.get("id2label") or {}
    headless = any(a in HEADLESS for a in hf.get("architectures") or [])
    planes = [w // expansion for w in widths]
    standard = planes == [64 * 2**s for s in range(len(planes))]  # torchvision's widths
    return ArchConfig(
        block=block,
        layers=tuple(depths),
        stem_width=stem_width,
        channels=() if standard else tuple(planes),
        stride_on="1x1" if hf.get("downsample_in_bottleneck", False) else "3x3",
        num_classes=0 if headless else int(hf.get("num_labels", len(labels) or 1000)),
        in_channels=int(hf.get("num_channels", 3)),
    )


# ArchConfig's fields for timm's, keras-hub's and keras.applications' variants, none of which
# transformers' ResNet has.
VARIANT_FIELDS = (
    "stem_type", "replace_stem_pool", "avg_down", "attn_layer", "aa_layer", "first_shortcut",
    "preact", "stride_at", "conv_bias",
)  # fmt: skip


def hf_config(config: ArchConfig) -> dict:
    """The transformers ``config.json`` of ``config`` (a ResNet: cardinality 1, ImageNet stem)."""
    if (
        config.cardinality != 1
        or config.base_width != 64
        or config.stem != "imagenet"
        or config.width_factor != 1
    ):
        raise HFError(
            "transformers' ResNet has no grouped convolutions, no CIFAR stem and no width factor: "
            "only ResNets (of any depths, widths and class counts) can be written as a Hugging Face model, "
            f"not {config}"
        )
    default = ArchConfig()
    variant = [f for f in VARIANT_FIELDS if getattr(config, f) != getattr(default, f)]
    if variant:
        raise HFError(
            "transformers' ResNet is torchvision's plain network: it has no "
            + ", ".join(f"{f}={getattr(config, f)!r}" for f in variant)
        )
    labels = (
        {}
        if config.headless
        else {
            "id2label": {str(i): f"LABEL_{i}" for i in range(config.num_classes)},
            "label2id": {f"LABEL_{i}": i for i in range(config.num_classes)},
        }
    )
    return {
        "architectures": ["ResNetModel" if config.headless else "ResNetForImageClassification"],
        "model_type": "resnet",
        "layer_type": config.block,
        "depths": list(config.layers),
        "hidden_sizes": [stage[0].out_channels for stage in plan(config).stages],
        "embedding_size": config.stem_width,
        "hidden_act": "relu",
        "downsample_in_first_stage": False,
        "downsample_in_bottleneck": config.stride_on == "1x1",
        "num_channels": config.in_channels,
        **labels,
    }


def canonical_name(hf_name: str) -> str | None:
    """Our name for a transformers ResNet tensor (None for ``num_batches_tracked``)."""
    if hf_name.endswith("num_batches_tracked"):
        return None
    if hf_name.startswith(_STEM):
        part, leaf = hf_name[len(_STEM) :].split(".", 1)
        return {"convolution": "conv1", "normalization": "bn1"}[part] + "." + leaf
    if hf_name.startswith("classifier.1."):
        return "fc." + hf_name[len("classifier.1.") :]
    m = _BLOCK.fullmatch(hf_name)
    if m is None:
        raise KeyError(hf_name)
    stage, index, _, k, kind, leaf = m.groups()
    prefix = f"layer{int(stage) + 1}.{index}."
    if k is None:  # the shortcut
        return prefix + ("downsample.0." if kind == "convolution" else "downsample.1.") + leaf
    return prefix + ("conv" if kind == "convolution" else "bn") + f"{int(k) + 1}." + leaf


def hf_name(name: str) -> str:
    """The transformers name of one of our tensors (the inverse of :func:`canonical_name`)."""
    head, leaf = name.rsplit(".", 1)
    if head in ("conv1", "bn1"):
        return _STEM + {"conv1": "convolution", "bn1": "normalization"}[head] + "." + leaf
    if head == "fc":
        return f"classifier.1.{leaf}"
    m = re.fullmatch(r"layer(\d+)\.(\d+)\.(conv|bn)(\d)|layer(\d+)\.(\d+)\.downsample\.(\d)", head)
    if m is None:
        raise KeyError(name)
    if m.group(1):
        stage, index, kind, k = m.group(1), m.group(2), m.group(3), int(m.group(4))
        part = f"layer.{k - 1}." + ("convolution" if kind == "conv" else "normalization")
    else:
        stage, index = m.group(5), m.group(6)
        part = "shortcut." + ("convolution" if m.group(7) == "0" else "normalization")
    return f"resnet.encoder.stages.{int(stage) - 1}.layers.{index}.{part}.{leaf}"


def read_hf_dir(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], ArchConfig, list[str]]:
    """Canonical weights (form c), config and notes of a transformers ResNet directory."""
    path = Path(path)
    try:
        hf = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HFError(f"{path}/config.json: not readable JSON ({e})") from e
    if not isinstance(hf, dict):
        raise HFError(f"{path}/config.json: not a JSON object")
    try:
        config = config_from_hf(hf, path)
    except HFError:
        raise
    except (TypeError, ConfigError) as e:  # a field of the wrong type (list(5)), or values ArchConfig refuses
        raise HFError(f"{path}/config.json: not a ResNet config this project can read ({e})") from e
    notes = [
        f"a Hugging Face transformers ResNet; stride on the {config.stride_on} (downsample_in_bottleneck)"
    ]
    found = next((path / n for n in HF_WEIGHTS if (path / n).is_file()), None)
    if found is None:
        others = [n for n in ("tf_model.h5", "flax_model.msgpack") if (path / n).is_file()]
        hint = f" (it has {', '.join(others)}: only the PyTorch weights are read)" if others else ""
        raise HFError(f"{path}: no {' or '.join(HF_WEIGHTS)}{hint}")
    if found.suffix == ".safetensors":
        raw = read_safetensors(found.read_bytes(), found)
    else:
        raw, more, _ = read_torch_state_dict(found)
        notes += more
    has_head = any(k.startswith("classifier.") for k in raw)
    if config.headless or not has_head:
        if has_head:
            raise HFError(f"{found}: config.json names a {HEADLESS} model, but the weights hold a classifier")
        if not all(k.startswith(("embedder.", "encoder.")) for k in raw):
            raise HFError(f"{found}: a transformers ResNet without the classifier head and with other names")
        raw = {PREFIX + k: v for k, v in raw.items()}
        config = replace(config, num_classes=0)
        notes.append(
            "a transformers ResNetModel/ResNetBackbone (no classifier): ported as a headless model, "
            "num_classes=0, whose pooled features are ResNetModel's pooler_output"
        )
    weights = {}
    for k, v in raw.items():
        try:
            name = canonical_name(k)
        except KeyError:
            raise HFError(f"{found}: a tensor this layout does not have: {k}") from None
        if name is not None:
            weights[name] = np.asarray(v)
    try:
        return check_weights(weights, config, "c", context=f" ({found})"), config, notes
    except WeightsMismatchError as e:
        raise HFError(str(e)) from e


def write_hf_dir(path: str | os.PathLike, weights: dict[str, np.ndarray], config: ArchConfig) -> None:
    """A directory ``ResNetForImageClassification.from_pretrained`` loads (``ResNetModel`` for a
    headless ``config``): config.json + model.safetensors.

    ``weights`` are canonical form (c). The folder is written beside and renamed into place,
    so a failed write leaves nothing at ``path``.
    """
    from safetensors.numpy import save as st_save

    hf = hf_config(config)
    weights = check_weights(weights, config, "c")
    tensors = {hf_name(k): np.ascontiguousarray(v, np.float32) for k, v in weights.items()}
    if config.headless:  # a ResNetModel's own names
        tensors = {k.removeprefix(PREFIX): v for k, v in tensors.items()}
    for k in [k for k in tensors if k.endswith("running_var")]:  # transformers' BatchNorm2d has this buffer
        tensors[k[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)

    def write(folder: Path) -> None:
        atomic_write_bytes(folder / "config.json", (json.dumps(hf, indent=2) + "\n").encode())
        atomic_write_bytes(folder / "model.safetensors", st_save(tensors, metadata={"format": "pt"}))

    atomic_write_dir(path, write)
