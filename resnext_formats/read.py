"""Reading any ResNet checkpoint people hold into the canonical dict, with its architecture and form.

Every file is read into the canonical dict (torch names and layout) with its ``ArchConfig`` and
form. The architecture comes from the file when it records one (our safetensors, ``.weights.h5``
and ``.msgpack`` files, a Hugging Face or timm folder's config), else from ``model=``, else it is
inferred from the tensor names and shapes alone, which is what makes a torchvision ``state_dict``
read with no flags. The project's own Keras and Flax files are read by their framework: the
caller passes ``native``, which gives the model package of a framework's name (this package sits
beside the model packages and imports none of them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import numpy as np

from resnext_spec import (
    ArchConfig,
    CheckpointError,
    ConfigError,
    WeightsMismatchError,
    check_form_for,
    check_weights,
    get_config,
    list_presets,
    load_checkpoint,
    preset_of,
)
from resnext_spec.checkpoint import (
    FORMAT_NAME,
    H5_ERRORS,
    read_h5_header,
    read_safetensors,
    read_safetensors_metadata,
)
from resnext_spec.config import STEMS, STRIDE_ON
from resnext_spec.layout import plan, stem_spec
from resnext_spec.parts import make_divisible
from resnext_spec.sources import Source

from . import keras_hub_resnet, timm_resnet, timm_resnetv2
from .errors import PortError
from .hf import read_hf_dir
from .keras_apps import KerasAppsError, read_keras_applications
from .torch_file import read_torch_state_dict

# A framework's name -> its model package (resnext_torch, resnext_keras, resnext_flax), for the
# project's own files that only the framework can read; the tools pass it.
Native = Callable[[str], ModuleType]


# Suffix -> format. The framework that reads and writes each one natively.
FORMATS = {
    ".weights.h5": "keras",
    ".safetensors": "safetensors",
    ".pth": "torch",
    ".pth.tar": "torch",  # timm's train.py checkpoints
    ".pt": "torch",
    ".msgpack": "flax",
    ".h5": "keras-h5",  # read only: keras.applications' legacy weight files
}
LEGACY_H5 = "keras-h5"
FRAMEWORK_OF = {
    "torch": "torch",
    "safetensors": "torch",
    "keras": "keras",
    "keras-h5": "keras",
    "flax": "flax",
    "hf": "torch",
}
HF = "hf"  # a Hugging Face transformers model directory: a folder, or a new path with no suffix
# What resnext export writes: a model with its computation, which no weights reader takes.
ARTIFACTS = (".onnx", ".tflite", ".pt2", ".stablehlo")


@dataclass
class Weights(Source):
    """Canonical weights read from a file, with the architecture and form they belong to, the notes
    on what was read and the input the source expects (``resnext_spec.sources.Source``)."""

    stride_recorded: bool = True  # False: read off tensor shapes, which cannot show where the stride sits
    # What the caller must be told, not only noted: other networks whose files hold exactly these
    # tensors, so that the file alone cannot say which it is (never ported in silence).
    warnings: list[str] = field(default_factory=list)


def format_of(path: str | os.PathLike) -> str:
    if Path(path).is_dir() or (not Path(path).exists() and "." not in Path(path).name):
        return HF
    name = Path(path).name
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    if any(name.endswith(s) for s in ARTIFACTS):
        raise PortError(
            f"{path}: an exported model, not a weights file: resnext port moves weights between "
            "frameworks; resnext export writes (and verifies) .onnx, .tflite, .stablehlo, .pt2 and SavedModel"
        )
    written = ", ".join(s for s, fmt in FORMATS.items() if fmt != LEGACY_H5)
    raise PortError(
        f"{path}: unknown format; use one of {written} (the suffix picks the format), or read "
        "keras.applications' legacy .h5"
    )


# ---- architecture inference -----------------------------------------------------------------


def describe(config: ArchConfig) -> str:
    """The preset name, a preset with changed classes/channels, or the full config."""
    if preset := preset_of(config):
        return preset
    for n in list_presets():
        base = get_config(n)
        if replace(base, num_classes=config.num_classes, in_channels=config.in_channels) == config:
            changed = [f"num_classes={config.num_classes}"] if config.num_classes != base.num_classes else []
            changed += [f"in_channels={config.in_channels}"] if config.in_channels != base.in_channels else []
            return f"{n} with {', '.join(changed)}"
    return f"no preset: {config}"


def infer_form(names: list[str]) -> str:
    """'a' (paths with their own conv3), 'b' (paths, shared conv3) or 'c' (no paths)."""
    if not any(".paths." in n for n in names):
        return "c"
    return "a" if any(re.search(r"\.paths\.\d+\.conv3\.", n) for n in names) else "b"


def infer_config(weights: Mapping[str, np.ndarray], form: str | None = None) -> tuple[ArchConfig, str]:
    """The (config, form) that ``weights`` look like; the caller checks every name and shape against it.

    Read off the tensors: the stem kernel (7: ImageNet stem, 3: CIFAR stem), the
    blocks per stage, the block type (a conv3 or not), the cardinality (form c:
    the grouped conv's channels per group; a/b: the number of paths), the width
    per path, the classes (0, headless, when there is no ``fc``), and timm's variants by their
    tensor names: a deep stem (``conv1.0``, tiered when its first conv is narrower than its
    second), ResNet-RS's strided conv for the max-pool (``maxpool.0``), average-pooled
    shortcuts (``downsample.2``), a first block that projects without changing the shape
    (keras-hub's vd), SE (``se.fc1``, its reduction from the widths) and ECA (``se.conv``).
    Where the stride sits (1x1 or 3x3) leaves no trace in the weights; it is taken from a
    preset that matches, else torchvision's 3x3.
    """
    names = [n for n in weights if not n.endswith("num_batches_tracked")]
    if "conv1.weight" not in weights and "conv1.0.weight" not in weights:
        first = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise PortError(
            f"not a ResNet layout: no stem conv (conv1.weight, or conv1.0.weight for a deep stem) among "
            f"its {len(names)} tensors ({first}). Layouts read: torchvision's and timm's ResNets, "
            "Hugging Face transformers, keras.applications, keras-hub and this project's"
        )
    form = form or infer_form(names)
    shape = {n: tuple(np.shape(weights[n])) for n in names}
    try:
        variant = _variant_fields(names, shape)
        deep = variant.get("stem_type", "").startswith("deep")
        if deep:  # a deep stem of 3x3 convs
            _, in_channels, k, _ = shape["conv1.0.weight"]
            stem_width = shape["conv1.3.weight"][0]
        else:
            stem_width, in_channels, k, _ = shape["conv1.weight"]
        num_classes = shape["fc.weight"][0] if "fc.weight" in shape else 0  # none: a headless backbone
        stages = sorted({int(m.group(1)) for n in names if (m := re.match(r"layer(\d+)\.", n))})
        layers = tuple(
            1 + max(int(m.group(1)) for n in names if (m := re.match(rf"layer{s}\.(\d+)\.", n)))
            for s in stages
        )
        block = (
            "bottleneck" if any(re.match(r"layer1\.0\.(paths\.0\.)?conv3\.", n) for n in names) else "basic"
        )
        # Each stage's planes, from what its first block puts out (expansion 4 or 1): torchvision's
        # 64 * 2**s, BiT's times a factor, or any widths at all (channels), as small test models have.
        expansion = 4 if block == "bottleneck" else 1
        planes = [_block_output(shape, s) // expansion for s in stages]
        width_factor, channels = max(1, planes[0] // 64), ()
        if planes != [64 * 2**i * width_factor for i in range(len(planes))]:
            width_factor, channels = 1, tuple(planes)
        if block == "basic":
            cardinality, base_width = 1, 64
        elif form == "c":
            width, per_group = shape["layer1.0.conv2.weight"][:2]
            cardinality, path_width = width // per_group, per_group
            base_width = path_width * 64 // planes[0]  # stage 1's path width is planes * d / 64
        else:
            cardinality = len({n.split(".")[3] for n in names if n.startswith("layer1.0.paths.")})
            base_width = shape["layer1.0.paths.0.conv1.weight"][0] * 64 // planes[0]
    except (KeyError, ValueError, IndexError) as e:
        raise PortError(f"cannot infer the architecture from these tensors ({type(e).__name__}: {e})") from e
    # The stem whose first conv has this kernel (the spec says what each stem is); a deep stem is
    # timm's and keras-hub's, on the ImageNet stem (its stride and max-pool leave no tensor).
    stem = next((s for s in STEMS if stem_spec(ArchConfig(stem=s)).steps[0].conv.shape[-1] == k), None)
    stem = "imagenet" if deep or variant.get("stem_type") == "fixed" else stem
    if stages != list(range(1, len(stages) + 1)) or stem is None:
        raise PortError(f"cannot infer the architecture: stages {stages}, stem kernel {k}")
    try:
        config = ArchConfig(
            block=block,
            layers=layers,
            cardinality=cardinality,
            base_width=base_width,
            stem=stem,
            stem_width=stem_width,
            num_classes=num_classes,
            in_channels=in_channels,
            width_factor=width_factor,
            channels=channels,
            **variant,
        )
    except ConfigError as e:
        raise PortError(f"cannot infer the architecture from these tensors ({e}); pass --model") from e
    for n in list_presets():  # what the tensors cannot show, from a preset that matches the rest
        base = get_config(n)
        unseen = dict(stride_on=base.stride_on, stride_at=base.stride_at)
        if base.stem_type == "fixed" and config.stem_type == "":  # a zero-padded max-pool: no tensor
            unseen["stem_type"] = "fixed"
        # compared as fields: a combination that is no valid config (a CIFAR stem, fixed) is no match
        if config.to_dict() | unseen | {"num_classes": base.num_classes} == base.to_dict() | {
            "in_channels": in_channels
        }:
            config = replace(config, **unseen)
            break
    return config, form


def _block_output(shape: dict[str, tuple[int, ...]], stage: int) -> int:
    """The channels the first block of ``stage`` puts out: its last conv's, in any form."""
    for last in ("conv3", "paths.0.conv3", "conv2"):
        name = f"layer{stage}.0.{last}.weight"
        if name in shape:
            return shape[name][0]
    raise KeyError(f"layer{stage}.0's last conv")


def _variant_fields(names: list[str], shape: dict[str, tuple[int, ...]]) -> dict:
    """The ArchConfig fields of timm's variants that the tensor names show (empty: the plain network)."""
    fields: dict = {}
    if any(n.endswith(".bn1.weight") for n in names) and not any(n.endswith("running_mean") for n in names):
        fields["norm_type"] = "group"  # norms without running statistics
    if any(n.endswith(".bn0.weight") for n in names):  # a norm on each block's input: ResNet v2
        fields["preact"] = True
        stem_conv = "conv1.6.bias" if "conv1.0.weight" in shape else "conv1.bias"
        fields["conv_bias"] = stem_conv in shape
    if fields.get("norm_type") == "group" and fields.get("preact") and "conv1.weight" in shape:
        # BiT: its weight standardisation and zero-padded stem pool leave no tensor, and it is timm's
        # only pre-activation GroupNorm network with a 7x7 stem
        fields |= dict(std_conv=True, stem_type="fixed")
    if "conv1.0.weight" in shape:
        tiered = shape["conv1.0.weight"][0] != shape["conv1.3.weight"][0]
        fields["stem_type"] = "deep_tiered" if tiered else "deep"
    if "maxpool.0.weight" in shape:
        fields["replace_stem_pool"] = True
    if any(n.endswith(".downsample.2.running_var") for n in names):
        fields["avg_down"] = True
    if fields.get("preact") and any(n.endswith(".downsample.1.weight") for n in names):  # no norm there
        fields["avg_down"] = True
    first = [shape[n] for n in ("layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight") if n in shape]
    if first and len(first[0]) == 4 and first[0][0] == first[0][1]:  # a projection that keeps the shape
        fields["first_shortcut"] = True
    if any(n.endswith(".se.conv.weight") for n in names):
        fields["attn_layer"] = "eca"
    fc1 = next((shape[n] for n in names if n.endswith(".se.fc1.weight")), None)
    if fc1 is not None:
        rd, channels = fc1[:2]
        ratio = next((r for r in SE_RATIOS if make_divisible(channels * r) == rd), None)
        if ratio is None:
            raise ValueError(f"SE reduces {channels} channels to {rd}, which no ratio of {SE_RATIOS} gives")
        fields |= dict(attn_layer="se", attn_rd_ratio=ratio)
    return fields


# The fields a timm model's name fixes whatever its create_model arguments, and its tensors show: its
# kind of block, stem and parts (aa_layer, which no tensor shows, is taken from the name).
NAMED_FIELDS = (
    "block", "stem", "stem_type", "replace_stem_pool", "avg_down", "attn_layer", "attn_rd_ratio",
    "first_shortcut", "preact", "conv_bias", "norm_type", "width_factor",
)  # fmt: skip

HELD = (
    "It holds timm's deep and tiered stems, ResNet-RS's stem, average-pooled shortcuts, SE, ECA, "
    "anti-aliasing, GroupNorm, pre-activation and BiT, and keras-hub's vd blocks (docs/porting.md "
    "lists the models)"
)

# SE's reductions in timm's ResNets: 1/16 (SE-ResNet, SE-ResNeXt), 1/4 (ResNet-RS).
SE_RATIOS = (1 / 16, 1 / 4)


# ---- reading --------------------------------------------------------------------------------


def _fit(weights: dict, config: ArchConfig, form: str, path) -> dict[str, np.ndarray]:
    """check_weights, with a --num-classes hint when only the head's size is off."""
    try:
        return check_weights(weights, config, form, context=f" ({path} as {describe(config)}, form {form!r})")
    except WeightsMismatchError as e:
        fc = weights.get("fc.weight")
        if fc is not None and np.shape(fc)[0] != config.num_classes:
            raise PortError(
                f"{e}\nhint: the file's head has {np.shape(fc)[0]} classes, the model {config.num_classes}; "
                f"pass --num-classes {np.shape(fc)[0]}"
            ) from e
        raise PortError(str(e)) from e


def read(
    path: str | os.PathLike,
    model: str | None = None,
    form: str | None = None,
    num_classes: int | None = None,
    stride_on: str | None = None,
    *,
    native: Native | None = None,
) -> Weights:
    """Canonical weights, config and form of the file at ``path`` (any supported format).

    Where the stride sits (ResNet v1: first 1x1; v1.5 / torchvision: 3x3) leaves no
    trace in tensor shapes: it comes from the file's metadata when it has any (ours,
    a Hugging Face config), from ``model``, from ``stride_on``, else 3x3 with a note. ``native``
    gives a framework's model package, for this project's ``.weights.h5`` and ``.msgpack`` files.
    """
    if stride_on is not None and stride_on not in STRIDE_ON:
        raise PortError(f"--stride-on {stride_on!r}: choose 1x1 or 3x3")
    w = _read(Path(path), model, form, num_classes, native)
    if stride_on is not None and stride_on != w.config.stride_on:
        if w.stride_recorded:
            raise PortError(f"{path}: the file has the stride on the {w.config.stride_on}, not {stride_on}")
        w.config = replace(w.config, stride_on=stride_on)
    elif stride_on is None and not w.stride_recorded and w.config.block == "bottleneck":
        w.notes.append(
            f"the stride's place is not in the tensors: assumed on the {w.config.stride_on} "
            "(torchvision, ResNet v1.5); pass --stride-on 1x1 for ResNet v1"
        )
    return w


def _native(native: Native | None, framework: str, path: Path) -> ModuleType:
    if native is None:
        raise PortError(f"{path}: a {framework} file of this project's, which only its model package reads")
    return native(framework)


def _read(
    path: Path, model: str | None, form: str | None, num_classes: int | None, native: Native | None
) -> Weights:
    fmt = format_of(path)
    asked = None
    if model is not None:
        asked = get_config(model)
        asked = replace(asked, num_classes=num_classes) if num_classes is not None else asked
    if fmt == HF and path.is_dir():
        return _read_folder(path, model, asked, form, num_classes)
    if not path.is_file():
        raise PortError(f"{path}: no such file" + (" or folder" if fmt == HF else ""))
    if fmt in ("keras", LEGACY_H5):
        if fmt == "keras":
            from_file, stored_form = read_h5_header(path)
        else:
            from_file, stored_form = None, None
        if from_file is None and (asked is None or fmt == LEGACY_H5):  # not ours: keras.applications'?
            try:
                found = read_keras_applications(path)
            except KerasAppsError as e:
                raise PortError(f"{path}: {e}") from e
            except H5_ERRORS as e:
                raise PortError(
                    f"{path}: a damaged keras.applications weights file ({type(e).__name__}: {e})"
                ) from e
            if found is not None:
                return _form_c(*found, asked, form, path, preprocessing="caffe")
            if fmt == LEGACY_H5:
                raise PortError(
                    f"{path}: a legacy Keras .h5 that is not a keras.applications ResNet50/101/152; "
                    "this project's Keras files end in .weights.h5"
                )
        config = _agree(from_file, asked, path)
        lib = _native(native, "keras", path)
        keras_model = lib.load_native(path, config, form or stored_form)
        return Weights(lib.export_weights(keras_model), keras_model.config, keras_model.form)
    if fmt == "flax":
        lib = _native(native, "flax", path)
        flax_model = lib.load_native(path)
        _agree(flax_model.config, asked, path)
        _agree_form(flax_model.form, form, path)
        return Weights(lib.export_weights(flax_model), flax_model.config, flax_model.form)
    notes: list[str] = []
    if fmt == "safetensors":
        data = path.read_bytes()
        if read_safetensors_metadata(data, path).get("format") == FORMAT_NAME:
            weights, config, stored_form = load_checkpoint(path)
            _agree(config, asked, path)
            _agree_form(stored_form, form, path)
            return Weights(weights, config, stored_form)
        raw = read_safetensors(data, path)
        notes.append("a safetensors file without this project's metadata: read as a plain state_dict")
        arch = None
    else:
        raw, notes, arch = read_torch_state_dict(path)
    return _from_state_dict(raw, notes, path, asked, form, num_classes, arch)


def _read_folder(
    path: Path, model: str | None, asked: ArchConfig | None, form: str | None, num_classes: int | None
) -> Weights:
    """A model folder: timm's hub layout, a keras-hub preset, or a transformers directory,
    told apart by its config.json."""
    if timm_resnet.is_timm_dir(path):
        found, arch, notes = timm_resnet.read_timm_dir(path)  # a TimmError is a PortError
        if found.suffix == ".safetensors":
            raw = read_safetensors(found.read_bytes(), found)
        else:
            raw, more, _ = read_torch_state_dict(found)
            notes += more
        return _from_state_dict(raw, notes, found, asked, form, num_classes, arch)
    if keras_hub_resnet.is_keras_hub_dir(path):
        try:
            found = keras_hub_resnet.read_keras_hub_dir(path)  # a KerasHubError is a PortError
        except H5_ERRORS as e:
            raise PortError(f"{path}: a damaged keras-hub preset ({type(e).__name__}: {e})") from e
        return _form_c(*found, asked, form, path, preprocessing="imagenet")
    try:
        weights, config, notes = read_hf_dir(path)
    except CheckpointError as e:  # an HFError is a PortError already
        raise PortError(str(e)) from e
    # --model without --num-classes takes the folder's class count here (its config names it)
    classes = config.num_classes if num_classes is None else num_classes
    lenient = replace(get_config(model), num_classes=classes) if model else None
    return _form_c(weights, config, notes, lenient, form, path, preprocessing="imagenet")


def _form_c(
    weights: dict[str, np.ndarray],
    config: ArchConfig,
    notes: list[str],
    asked: ArchConfig | None,
    form: str | None,
    path: Path,
    preprocessing: str | None = None,
) -> Weights:
    """Weights from a reader that maps another library's layout to form (c), held to what was asked."""
    _agree(config, asked, path)
    _agree_form("c", form, path)
    return Weights(weights, config, "c", notes, preprocessing=preprocessing)


def _from_state_dict(
    raw: dict[str, np.ndarray],
    notes: list[str],
    path: Path,
    asked: ArchConfig | None,
    form: str | None,
    num_classes: int | None,
    arch: str | None,
) -> Weights:
    """Weights of a torchvision-named state_dict (torchvision's, timm's, or ours without metadata).

    ``arch`` is the timm architecture a file names, if it names one: it is checked, and
    it records the stride's place (timm's plain ResNets: the 3x3, as torchvision).
    """
    if timm_resnetv2.is_timm_resnetv2(list(raw)):
        if timm_resnetv2.avg_down_of(raw):
            notes.append(
                "timm's ResNetV2 with a deep stem: its shortcuts average-pool (avg_down), as every "
                "such timm model's do; the pool holds no tensor"
            )
        raw = timm_resnetv2.from_timm(raw)
        notes.append("timm's ResNetV2 (pre-activation) tensor names, renamed to the canonical ones")
    if any(n.startswith("resnet.embedder.") for n in raw):
        raise PortError(
            f"{path}: a Hugging Face transformers ResNet's tensors: port its folder, whose config.json "
            "says the architecture and where the stride sits"
        )
    if variant := timm_resnet.variant_in_names(list(raw)):
        raise PortError(f"{path}: not a network this project holds: {variant}. {HELD}")
    if arch is not None:
        timm_resnet.check_arch(arch, str(path))  # a TimmError is a PortError
        notes.append(f"timm {arch}: stride on the 3x3 (timm's ResNets, as torchvision)")
    if asked is not None:
        form = form or infer_form(list(raw))
        check_form_for(asked, form)
        return Weights(_fit(raw, asked, form, path), asked, form, notes, preprocessing="imagenet")
    try:
        config, form = infer_config(raw, form)
    except PortError as e:
        raise PortError(f"{path}: {e}") from e
    if num_classes is not None and num_classes != config.num_classes:
        raise PortError(
            f"{path}: the file's head has {config.num_classes} classes, not --num-classes {num_classes}"
        )
    notes.append(f"inferred the architecture from the tensor shapes: {describe(config)}, form ({form})")
    if config.std_conv and arch is None:
        notes.append(
            "weight standardisation leaves no trace in the tensors: a pre-activation GroupNorm network "
            "with a 7x7 stem is timm's BiT, whose convs are standardised, and is read as one"
        )
    if arch is not None:
        config = replace(config, stride_on="3x3")
        named = timm_resnet.preset_name(arch)
        if named is not None:
            # What the name stands for beyond what a hub folder's model_args may change (the depth,
            # the widths): each variant field must be the one the tensors show.
            preset = get_config(named)
            odd = [f for f in NAMED_FIELDS if getattr(preset, f) != getattr(config, f)]
            if odd:
                raise PortError(
                    f"{path}: it names timm's {arch}, but its tensors are {describe(config)} "
                    f"({', '.join(f'{f}={getattr(config, f)!r}' for f in odd)})"
                )
            # Anti-aliasing and weight standardisation have no tensor: the name is where they show.
            config = replace(config, aa_layer=preset.aa_layer, std_conv=preset.std_conv)
    warnings = [] if arch is not None else shared_layouts(config)
    return Weights(
        _fit(raw, config, form, path),
        config,
        form,
        notes,
        stride_recorded=arch is not None or config.preact,  # every v2 strides in its 3x3
        preprocessing="imagenet",  # torchvision's and timm's ResNets; said in a note where it is assumed
        warnings=warnings,
    )


def shared_layouts(config: ArchConfig) -> list[str]:
    """Who else a bare state_dict of ``config`` could be. timm's anti-aliased networks (``resnetaa*``:
    average pooling, ``resnetblur*``: a fixed blur) replace a stem's max-pool and each strided conv's
    stride with a pool that has no tensor, so their files hold exactly the plain network's tensors."""
    if plan(config).stem.pool != "max" or config.preact:  # no anti-aliased network is pre-activation
        return []
    same = [
        n
        for n in list_presets()
        if get_config(n).aa_layer
        and replace(
            get_config(n), aa_layer="", num_classes=config.num_classes, in_channels=config.in_channels
        )
        == config
    ]
    named = f" ({', '.join(same)})" if same else ""
    choose = f"pass --model {' or --model '.join(same)}" if same else "pass --model with its preset's name"
    return [
        f"this layout is also timm's anti-aliased networks'{named}: their pools hold no tensors, and "
        f"they compute another function. A bare state_dict cannot say which it is, so it ports as "
        f"{describe(config)}. If the file is an anti-aliased one, {choose}, or port its hub folder or "
        "train.py checkpoint, which name the architecture"
    ]


def _agree(stored: ArchConfig | None, asked: ArchConfig | None, path) -> ArchConfig | None:
    if stored is not None and asked is not None and stored != asked:
        raise PortError(f"{path}: the file says it holds {describe(stored)}, not {describe(asked)}")
    return stored or asked


def _agree_form(stored: str, asked: str | None, path) -> None:
    if asked is not None and asked != stored:
        raise PortError(f"{path}: the file holds form ({stored}), not ({asked}); use --to-form to convert")


def read_source(
    path: str | os.PathLike,
    native: Native | None = None,
    model: str | None = None,
    num_classes: int | None = None,
    stride_on: str | None = None,
) -> Source:
    """:func:`read` as every tool that takes "any checkpoint" reads its file (``resnext-train
    --init-from``, ``resnext-export``), with what the file cannot say given the way ``resnext port``
    takes it: its preset (``model``), its head and where it strides.

    With ``model`` and no ``num_classes`` the head is the file's own: the preset names the network,
    and a fine-tune or an export keeps or replaces the head by its own rules.
    """
    if model is not None and num_classes is None:
        try:
            num_classes = read(path, native=native).config.num_classes
        except PortError:
            pass  # the preset's head, held to the file's by read
    return read(path, model, num_classes=num_classes, stride_on=stride_on, native=native)
