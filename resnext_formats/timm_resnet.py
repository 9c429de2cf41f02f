"""timm ResNet / ResNeXt checkpoints: which ones port exactly, and a refusal naming the rest.

timm's ResNets keep torchvision's tensor names and put the stride in the 3x3, so their
``state_dict`` is read as torchvision's. Its variants show in the tensor names, and those this
project holds are read off them (``read.infer_config``): a deep stem (``conv1.0``), ResNet-RS's
strided conv in the max-pool's place (``maxpool.0``), an average-pooled shortcut
(``downsample.2``), SE (``se.fc1``) and ECA (``se.conv``). Others show in the names too and are
refused (selective kernels); some do not: an anti-aliased ``resnetaa50`` or
``resnetblur50`` has exactly ``resnet50``'s tensors and computes something else. Only the
architecture name tells those apart, and timm writes it in two places this module reads: a
training checkpoint's ``arch`` (``train.py``) and a hub folder's ``config.json``
(``save_for_hf``). A bare state_dict has neither; it ports by its tensors, with a warning, and
docs/porting.md says so.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from resnext_spec import list_presets

from .errors import PortError

TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin")

# What a name shows that ArchConfig cannot hold, and what it is in timm's words.
VARIANT_NAMES = (
    (re.compile(r"\.conv2\.paths\.\d+\.conv\."), "selective kernels (conv2.paths; timm's sk*)"),
    (re.compile(r"\.aa\."), "anti-aliased downsampling (aa; timm's resnetblur*/resnetaa*)"),
    (re.compile(r"\.v$"), "EvoNorm (a norm's 'v'; timm's resnetv2_50d_evos)"),
    (re.compile(r"\.tau$"), "FilterResponseNorm (a norm's 'tau'; timm's resnetv2_50d_frn)"),
)
# Words in a timm architecture name this project does not hold, and what they add.
VARIANT_WORDS = (
    (re.compile(r"aa"), "anti-aliased downsampling (a pool before each strided conv)"),
    (re.compile(r"blur"), "blur pooling"),
    (re.compile(r"^sk"), "selective kernels"),
    (re.compile(r"evos"), "EvoNorm"),
    (re.compile(r"frn"), "FilterResponseNorm"),
    (re.compile(r"pruned"), "pruned widths"),
    (re.compile(r"^senet"), "SENet's stem and shortcuts"),
)
# create_model arguments a hub folder may record that the tensors show, or that act in training only.
HARMLESS_ARGS = {
    "layers", "cardinality", "base_width", "num_classes", "in_chans", "stem_width", "stem_type",
    "avg_down", "replace_stem_pool",
    "drop_rate", "drop_path_rate", "drop_block_rate", "zero_init_last", "pretrained_cfg",
}  # fmt: skip


class TimmError(PortError):
    """A timm checkpoint this project cannot hold exactly; the message says what differs."""


def variant_in_names(names: list[str]) -> str | None:
    """What the tensor names show that ArchConfig cannot hold (None: nothing)."""
    found = [what for pattern, what in VARIANT_NAMES if any(pattern.search(n) for n in names)]
    return "; ".join(found) or None


def preset_name(arch: str) -> str | None:
    """The preset a timm architecture name is (``resnet50d.ra2_in1k`` -> ``resnet50d``), or None."""
    base = arch.split(".", 1)[0]
    return base if base in list_presets() else None


def check_arch(arch: str, where: str) -> None:
    """Refuse a timm architecture name that is none of this project's presets."""
    if preset_name(arch) is not None:
        return
    base = arch.split(".", 1)[0]
    what = [w for pattern, w in VARIANT_WORDS if pattern.search(base)]
    raise TimmError(
        f"{where}: timm's {base!r} is not a network this project holds"
        + (f" ({'; '.join(what)})" if what else "")
        + ": it holds the timm ResNets its presets name (docs/porting.md lists them)"
    )


def is_timm_dir(path: str | os.PathLike) -> bool:
    """A folder written by timm's ``save_for_hf`` / ``push_to_hub`` (its config names an architecture)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("architecture"), str)


def read_timm_dir(path: str | os.PathLike) -> tuple[Path, str, list[str]]:
    """(weights file, architecture, notes) of a timm hub folder whose config this project can hold."""
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    arch = config["architecture"]
    check_arch(arch, f"{path}/config.json")
    args = config.get("model_args") or {}
    if not isinstance(args, dict):
        raise TimmError(f"{path}/config.json: model_args is not a map")
    args = dict(args)
    pool = args.pop("global_pool", config.get("global_pool", "avg"))
    if pool != "avg":
        raise TimmError(f"{path}/config.json: global_pool {pool!r} (average pooling here)")
    if odd := sorted(set(args) - HARMLESS_ARGS):
        raise TimmError(
            f"{path}/config.json: {arch} was built with {', '.join(odd)}, which the tensors cannot show "
            "and this project does not hold"
        )
    found = next((path / n for n in TIMM_WEIGHTS if (path / n).is_file()), None)
    if found is None:
        raise TimmError(f"{path}: a timm folder with no {' or '.join(TIMM_WEIGHTS)}")
    return found, arch, [f"a timm hub folder: {arch}"]
