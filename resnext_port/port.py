"""Weight porting between torch, safetensors, Keras and Flax files, in any block form.

Every file is read into the canonical dict (torch names and layout) with its ``ArchConfig`` and
form by ``resnext_formats``, converted to the target form by ``resnext_spec``, and written by the
target format's writer, atomically: the framework's own (``save_native``) or a layout of
``resnext_formats``. With ``verify``, the file written is read back and compared stage by stage.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import resnext_formats as formats
from resnext_formats import (
    FORMATS,
    FRAMEWORK_OF,
    HF,
    LEGACY_H5,
    PortError,
    Weights,
    describe,
    format_of,
    infer_config,
    timm_resnetv2,
    write_hf_dir,
)
from resnext_formats.hf import HFError
from resnext_formats.keras_apps import keras_applications_model, write_keras_applications
from resnext_formats.keras_hub_resnet import keras_hub_config, write_keras_hub_dir
from resnext_formats.torch_file import write_torch_state_dict
from resnext_spec import (
    ArchConfig,
    CheckpointError,
    ConfigError,
    check_form,
    check_form_for,
    get_config,
    list_presets,
    preset_of,
    save_checkpoint,
)
from resnext_spec import to_form as convert_form
from resnext_spec.frameworks import PACKAGES
from resnext_spec.layout import check_image_size
from resnext_spec.tolerances import TOL, first_over, stage_errors


@dataclass
class PortResult:
    src: str
    dst: str
    config: ArchConfig
    preset: str | None
    src_form: str
    dst_form: str
    seconds: float
    notes: list[str]
    # --verify: each stage point's relative error (resnext_spec.stage_names), in network order
    verify_stages: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)  # the reader's: said on stderr, not only noted

    @property
    def verify_error(self) -> float | None:
        """The output's error: the logits', or a headless model's pooled features'."""
        return None if self.verify_stages is None else list(self.verify_stages.values())[-1]

    @property
    def verified(self) -> bool | None:
        return None if self.verify_stages is None else self.parted_at is None

    @property
    def parted_at(self) -> str | None:
        """The first stage point whose error is over the tolerance: where the two models part."""
        return None if self.verify_stages is None else first_over(self.verify_stages, TOL)


# ---- writing --------------------------------------------------------------------------------


def package(framework: str):
    """The model package of ``framework``, imported when first needed (each framework is an optional
    install): its facade (build, stage_outputs, save_native, load_native) is all that porting calls."""
    return importlib.import_module(PACKAGES[framework])


def read(
    path: str | os.PathLike,
    model: str | None = None,
    form: str | None = None,
    num_classes: int | None = None,
    stride_on: str | None = None,
) -> Weights:
    """``resnext_formats.read``, with the model packages at hand for the project's own files."""
    return formats.read(path, model, form, num_classes, stride_on, native=package)


def anti_aliasing_warning(config: ArchConfig, dst: Path) -> str:
    """What a .pth of an anti-aliased network needs said: it cannot record the pools (no tensor holds
    them), so it reads back as the plain network unless the preset is named."""
    named = next(
        (
            n
            for n in list_presets()
            if get_config(n, num_classes=config.num_classes, in_channels=config.in_channels) == config
        ),
        None,
    )
    how = ""
    if named is not None:
        classes = (
            f" --num-classes {config.num_classes}"
            if get_config(named).num_classes != config.num_classes
            else ""
        )
        how = f"read {dst.name} with --model {named}{classes}, or "
    return (
        f"a .pth does not record anti-aliasing, which holds no tensor: {how}write .safetensors, "
        "which records it"
    )


# Another library's layout for a target (--layout): the suffix (a folder: "hf") it is written to, and
# the check that says whether that library has the network.
LAYOUTS = {
    "keras.applications": ("keras", keras_applications_model),
    "keras-hub": (HF, keras_hub_config),
}


def write(path: str | os.PathLike, w: Weights, layout: str | None = None) -> None:
    """Write ``w`` to ``path`` in the format its suffix names, atomically; ``layout``
    "keras.applications" writes a ``.weights.h5`` that keras.applications' model loads, "keras-hub"
    a preset folder that keras-hub's ``from_preset`` loads."""
    fmt = format_of(path)
    if layout == "keras.applications":
        write_keras_applications(path, convert_form(w.weights, w.config, w.form, "c"), w.config)
    elif layout == "keras-hub":
        write_keras_hub_dir(path, convert_form(w.weights, w.config, w.form, "c"), w.config)
    elif fmt == HF:
        try:
            write_hf_dir(path, convert_form(w.weights, w.config, w.form, "c"), w.config)
        except HFError as e:
            raise PortError(f"{path}: {e}") from e
    elif fmt == "safetensors":
        save_checkpoint(path, w.weights, w.config, w.form)
    elif fmt == "torch" and w.config.preact and w.form == "c":
        # No torchvision model is pre-activation: a v2 state_dict is timm's ResNetV2's, in its names.
        write_torch_state_dict(path, timm_resnetv2.to_timm(w.weights, w.config))
    else:  # the framework's own file: .pth, .weights.h5 or .msgpack
        lib = package(FRAMEWORK_OF[fmt])
        lib.save_native(lib.build(w.config, w.form, weights=w.weights), path)


# ---- verify ---------------------------------------------------------------------------------


def outputs(framework: str, w: Weights, seed: int = 0) -> dict[str, np.ndarray]:
    """Eval-mode outputs of a seeded batch (2 images, 64 px; 32 for CIFAR stems) at every point of
    ``resnext_spec.stage_names`` (stem, each stage, pooled features, logits), float64, maps NCHW."""
    size = check_image_size(w.config)
    x = np.random.default_rng(seed).standard_normal((2, w.config.in_channels, size, size)).astype(np.float32)
    lib = package(framework)
    return lib.stage_outputs(lib.build(w.config, w.form, weights=w.weights), x)


def logits(framework: str, w: Weights, seed: int = 0) -> np.ndarray:
    """Eval-mode logits (a headless model's pooled features) of :func:`outputs`' batch."""
    return list(outputs(framework, w, seed).values())[-1]


# ---- the whole job --------------------------------------------------------------------------


def port(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    model: str | None = None,
    form: str | None = None,
    to_form: str | None = None,
    num_classes: int | None = None,
    stride_on: str | None = None,
    verify: bool = False,
    force: bool = False,
    layout: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PortResult:
    """Port the weights in ``src`` to ``dst`` (formats by suffix), converting to form ``to_form``.

    Nothing is written unless everything checked out: ``dst`` is written
    atomically, and an existing ``dst`` is kept unless ``force``. With
    ``verify``, the file written is read back and its logits compared with the
    source's at every stage, each in its own framework, so a mismatch says where the two
    part (``PortResult.parted_at``). Raises :class:`PortError` (or
    :class:`CheckpointError`) naming the problem.
    """
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if format_of(dst) == LEGACY_H5:  # an unknown or read-only target format fails before any work
        raise PortError(f"{dst}: legacy .h5 files are read, not written; write Keras 3's .weights.h5")
    if dst.exists() and not force:
        raise PortError(f"{dst} exists; pass --force to overwrite it")
    if layout is not None and (layout not in LAYOUTS or format_of(dst) != LAYOUTS[layout][0]):
        raise PortError(
            f"--layout {layout}: keras.applications is written to a .weights.h5, keras-hub to a folder"
        )
    try:
        for f in (form, to_form):
            if f is not None:
                check_form(f)
        say(f"reading {src}")
        source = read(src, model, form, num_classes, stride_on)
        target_form = to_form or source.form
        check_form_for(source.config, target_form)
    except (PortError, CheckpointError):
        raise
    except ConfigError as e:  # an unknown preset or a form the architecture does not have
        raise PortError(str(e)) from e
    target = Weights(
        convert_form(source.weights, source.config, source.form, target_form),
        source.config,
        target_form,
        source.notes,
    )
    say(f"writing {dst} ({describe(source.config)}, form {source.form} -> {target_form})")
    if layout is not None:
        LAYOUTS[layout][1](source.config)  # the library has this network, or the error says it has not
    write(dst, target, layout)
    if format_of(dst) == "torch" and source.config.stride_on != "3x3":  # a state_dict cannot say where
        source.notes.append(
            f"a .pth does not record where the stride sits: read {dst.name} with --stride-on "
            f"{source.config.stride_on} (or write .safetensors, which records it)"
        )
    result = PortResult(
        str(src),
        str(dst),
        source.config,
        preset_of(source.config),
        source.form,
        target_form,
        0.0,
        source.notes,
    )
    result.warnings = list(source.warnings)
    if format_of(dst) == "torch" and source.config.aa_layer:  # as the stride's place, but never silent
        result.warnings.append(anti_aliasing_warning(source.config, dst))
    if verify:
        say("verifying: every stage's output of the source and of the file written, each in its framework")
        back = read(dst, stride_on=source.config.stride_on)  # what a file without metadata cannot say
        back.config = replace(back.config, aa_layer=source.config.aa_layer)  # the warning above
        result.verify_stages = stage_errors(
            outputs(FRAMEWORK_OF[format_of(dst)], back), outputs(FRAMEWORK_OF[format_of(src)], source)
        )
    result.seconds = time.perf_counter() - t0
    return result


__all__ = [
    "FORMATS",
    "PortError",
    "PortResult",
    "Weights",
    "format_of",
    "infer_config",
    "port",
    "read",
    "write",
]
