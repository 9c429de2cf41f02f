"""The export job: a source network into one framework's build, out as one deployable artifact, and
(``verify=True``) the artifact run in its own runtime against the torch form (c) reference.

A source is a preset name, an ``ArchConfig`` JSON file (seeded random weights with every BN
tensor drawn away from the identity, so a dropped or mis-folded BN shows) or any checkpoint
``resnext-port`` reads. Grouped convolutions are built with ``conv_impl="native"`` in Keras and
Flax: the artifact holds one grouped convolution per layer, and the runtime picks its kernel.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnext_formats import read_source
from resnext_spec import (
    ArchConfig,
    check_form,
    check_form_for,
    get_config,
    list_presets,
    preset_of,
    random_weights,
)
from resnext_spec import to_form as convert_form
from resnext_spec.config import unknown_preset
from resnext_spec.errors import ConfigError
from resnext_spec.frameworks import PACKAGES, check_framework
from resnext_spec.layout import stem_spec
from resnext_spec.sources import PREPROCESSING, Source, recorded_image_size
from resnext_spec.tolerances import TOL, rel_error
from resnext_spec.versions import versions

from . import artifacts
from .formats import FORMATS, KERAS_BACKEND_FOR, ExportError, check_pair, format_from_path, require

VERIFY_BATCH = 8  # the batch --verify compares at; batch 1 is run too (the dynamic batch at its edge)
LATENCY_BATCHES = (1, 8)
# The bound on an artifact's logits against the torch (c) fp32 reference: the harness's TOL for
# every format. Measured worst (docs/results/export.md): 1.7e-6, LiteRT on resnext50_32x4d, over
# 44 rows of every pair and form; no format needed a bound of its own.
BOUND = TOL


@dataclass
class Verification:
    errors: dict[str, float]  # relative errors; see VERIFY_ROWS
    bound: float
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # batch -> {artifact, source}
    failure: str | None = None  # the runtime refused to load or run the artifact: what it said

    @property
    def passed(self) -> bool:
        if self.failure is not None:
            return False
        return self.errors["reference"] <= self.bound and self.errors["batch 1"] <= self.bound


VERIFY_ROWS = {
    "reference": "artifact vs torch form (c), fp32, same weights and images",
    "batch 1": "the first image alone vs the reference (the dynamic batch at 1)",
    "source": "artifact vs the build it was exported from, in its framework",
    "float64": "artifact vs torch form (c) in float64",
    "fp32 floor": "torch form (c) fp32 vs float64: rounding alone",
    "unfused": "artifact with the runtime's fusions off vs the reference",
}


@dataclass
class ExportResult:
    source: str
    out: str
    framework: str
    keras_backend: str | None
    format: str
    form: str
    config: ArchConfig
    input_shape: list[int | None]
    layout: str
    seconds: float  # the whole job, verifying included
    export_seconds: float  # reading, building and writing
    size_bytes: int
    weight_bytes: int
    notes: list[str]
    verification: Verification | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        if self.verification is not None:
            d["verification"]["passed"] = self.verification.passed
        return d


def resolve_framework(framework: str, fmt: str) -> str | None:
    """Check ``framework`` and, for Keras, settle its backend (None for torch and Flax).

    Keras fixes its backend when first imported. A Keras export in a fresh process with
    ``KERAS_BACKEND`` unset picks the backend the format needs (JAX for StableHLO, else
    TensorFlow); a backend already chosen is kept, and a format it cannot write is refused.
    """
    check_framework(framework)
    if framework != "keras":
        return None
    if "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ:
        os.environ["KERAS_BACKEND"] = KERAS_BACKEND_FOR.get(fmt, "tensorflow")
    import keras

    return keras.backend.backend()


def load_source(source: str, seed: int = 0, read_as: dict | None = None) -> Source:
    """A preset (random weights), a config JSON (random weights) or a checkpoint file's weights,
    read with ``read_as`` (``model``, ``num_classes``, ``stride_on``: what the file cannot say)."""
    read_as = {k: v for k, v in (read_as or {}).items() if v is not None}
    if source in list_presets() or source.endswith(".json"):
        if read_as:
            raise ExportError(
                f"--{next(iter(read_as)).replace('_', '-')} is for a checkpoint source, not {source}"
            )
        if source in list_presets():
            config = get_config(source)
        elif Path(source).is_file():
            config = ArchConfig.from_file(source)
        else:
            raise ExportError(f"{source}: no such config file")
        note = f"random weights (seed {seed}), every BN tensor drawn away from the identity"
        return Source(random_weights(config, "c", seed), config, "c", [note])
    if not Path(source).exists():
        raise ExportError(f"{source}: not a config .json or an existing file, and {unknown_preset(source)}")
    return read_source(source, native=lambda fw: importlib.import_module(PACKAGES[fw]), **read_as)


def build(framework: str, config: ArchConfig, form: str, weights: dict[str, np.ndarray]):
    """The model of ``framework`` holding ``weights``, in eval mode, ready to export (grouped convs as
    the framework's own op, which every exporter knows)."""
    lib = importlib.import_module(PACKAGES[framework])  # each framework is an optional install
    model = lib.build(config, form, conv_impl="native", weights=weights)
    if framework != "keras":
        model.eval()
    return model


def forward(framework: str, model) -> Callable[[np.ndarray], np.ndarray]:
    """The framework's own inference call (the latency baseline): torch eager under ``no_grad``,
    Keras's compiled ``predict_on_batch``, Flax through ``jax.jit``; all in full fp32."""
    if framework == "torch":
        import torch

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

        return run
    if framework == "keras":
        import resnext_keras

        def run(x: np.ndarray) -> np.ndarray:
            with resnext_keras.full_fp32():
                return np.asarray(model.predict_on_batch(x))

        return run
    import jax

    call = jax.jit(artifacts.jax_function("flax", model))

    def run(x: np.ndarray) -> np.ndarray:
        with jax.default_matmul_precision("highest"):
            return np.asarray(call(x))

    return run


def image_shape(config: ArchConfig, framework: str, image_size: int | None) -> tuple[int, ...]:
    size = image_size or stem_spec(config).image_size
    if size < 1:
        raise ExportError(f"image size must be positive, got {size}")
    c = config.in_channels
    return (c, size, size) if framework == "torch" else (size, size, c)


def sidecar(result: ExportResult, source: Source, preset: str | None) -> dict[str, Any]:
    """What a deployment needs to feed the artifact: layout, shape, preprocessing, output."""
    prep = None if source.preprocessing is None else preprocessing(source.preprocessing)
    return {
        "format": result.format,
        "framework": result.framework,
        "keras_backend": result.keras_backend,
        "form": result.form,
        "preset": preset,
        "config": result.config.to_dict(),
        # the names the artifact's file records; None where its format passes arrays by position
        "input": {
            "name": None if result.format == "stablehlo" else artifacts.INPUT_NAME,
            "layout": result.layout,
            "shape": result.input_shape,
            "dtype": "float32",
        },
        "output": {
            "name": output_name(result.config) if result.format in artifacts.NAMED_OUTPUT else None,
            "shape": [None, result.config.num_classes or _features(result.config)],
        },
        "preprocessing": prep,
        "source": result.source,
        "notes": result.notes,
        "versions": versions(),
    }


def output_name(config: ArchConfig) -> str:
    return "features" if config.headless else "logits"


def preprocessing(name: str) -> dict[str, Any]:
    """How to turn an image into the artifact's input, as the source network was trained.

    keras.applications weights expect Caffe-style input (``preprocess_input``: BGR, 0..255, the
    ImageNet mean subtracted, no division), and the exported network keeps expecting it, so the
    pipeline its users already have feeds the artifact unchanged. Every other source expects RGB
    on 0..1 with the ImageNet mean and std.
    """
    mean, std = PREPROCESSING[name]
    if name == "caffe":
        return {
            "name": name,
            "channels": "BGR",
            "scale": "0..255",
            "mean": [round(m * 255, 3) for m in reversed(mean)],
            "std": [1.0, 1.0, 1.0],
            "formula": "(x - mean) / std per channel, x in the channel order and scale given",
        }
    return {
        "name": name,
        "channels": "RGB",
        "scale": "0..1",
        "mean": list(mean),
        "std": list(std),
        "formula": "(x - mean) / std per channel, x in the channel order and scale given",
    }


def _features(config: ArchConfig) -> int:
    from resnext_spec.layout import feature_info

    return feature_info(config)[-1].num_chs


def sidecar_path(out: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json``; a SavedModel folder ``m`` -> ``m.json`` beside it."""
    out = Path(out)
    return out.with_name(out.name.rstrip("/") + ".json")


def _write_atomically(out: Path, fmt: str, meta: dict, write: Callable[[str], None]) -> None:
    """Write the artifact and its sidecar in a temporary folder beside ``out``, then move both into
    place: a failed export leaves neither, and an existing artifact is replaced only on success."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        staged = tmp / f"artifact{FORMATS[fmt].suffix}"  # Keras's LiteRT writer wants the suffix
        write(str(staged))
        (tmp / "sidecar.json").write_text(json.dumps(meta, indent=2) + "\n")
        old = tmp / "old"
        if out.exists():  # --force: keep the old artifact until the new one is in place
            os.replace(out, old)
        os.replace(staged, out)
        os.replace(tmp / "sidecar.json", sidecar_path(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export(
    source: str,
    out: str | os.PathLike,
    framework: str,
    *,
    fmt: str | None = None,
    form: str | None = None,
    image_size: int | None = None,
    verify: bool = False,
    force: bool = False,
    seed: int = 0,
    repeats: int = 10,
    read_as: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``source`` from ``framework``'s build (form ``form``) as ``fmt`` to ``out``.

    Everything that can be refused is refused before any work: an unknown or unsupported
    (framework, format), a missing package (named, with its pip command), a form the network
    lacks, an existing ``out`` without ``force``. Raises :class:`ExportError` naming the problem.
    """
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    out = Path(out)
    fmt = format_from_path(str(out), fmt)
    backend = resolve_framework(framework, fmt)
    require(check_pair(framework, fmt, backend), f"exporting {framework} to {fmt}")
    if verify:  # its reference is torch form (c), whatever the build exported
        require([FORMATS[fmt].runtime, ("torch", "torch")], f"--verify of {fmt}")
    if out.exists() and not force:
        raise ExportError(f"{out} exists; pass --force to overwrite it")
    if repeats < 1:
        raise ExportError(f"repeats must be >= 1, got {repeats}")
    say(f"reading {source}")
    src = load_source(source, seed, read_as)
    target_form = src.form if form is None else form
    try:
        check_form(target_form)
        check_form_for(src.config, target_form)
    except ConfigError as e:
        raise ExportError(str(e)) from e
    if image_size is None and (trained_at := recorded_image_size(source)) is not None:
        image_size = trained_at
        src.notes.append(
            f"the image size the run was trained at: {trained_at} px (--image-size sets another)"
        )
    shape = image_shape(src.config, framework, image_size)
    weights = convert_form(src.weights, src.config, src.form, target_form)
    preset = preset_of(src.config)
    result = ExportResult(
        source=str(source),
        out=str(out),
        framework=framework,
        keras_backend=backend,
        format=fmt,
        form=target_form,
        config=src.config,
        input_shape=[None, *shape],
        layout="NCHW" if framework == "torch" else "NHWC",
        seconds=0.0,
        export_seconds=0.0,
        size_bytes=0,
        weight_bytes=sum(int(np.asarray(v).nbytes) for v in weights.values()),
        notes=list(src.notes),
    )
    meta = sidecar(result, src, preset)
    say(f"building {framework} form ({target_form}) and exporting it as {fmt}")
    model = build(framework, src.config, target_form, weights)
    _write_atomically(out, fmt, meta, lambda path: artifacts.write(framework, fmt, model, path, shape, meta))
    result.size_bytes = artifacts.size_bytes(str(out))
    result.export_seconds = time.perf_counter() - t0
    if verify:
        say(f"verifying: {out.name} in its runtime against torch form (c) and the source build")
        result.verification = verify_artifact(result, src, model, repeats, seed)
    result.seconds = time.perf_counter() - t0
    return result


def verify_artifact(result: ExportResult, src: Source, model, repeats: int, seed: int) -> Verification:
    """Run the artifact in its own runtime on the harness's seeded images and compare (VERIFY_ROWS)."""
    import torch

    import resnext_torch

    size = result.input_shape[2] if result.layout == "NCHW" else result.input_shape[1]
    rng = np.random.default_rng(seed + 1)  # the parity harness's input rule
    x = rng.standard_normal((VERIFY_BATCH, src.config.in_channels, size, size)).astype(np.float32)
    x_own = x if result.layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    reference = resnext_torch.build(
        src.config, "c", weights=convert_form(src.weights, src.config, src.form, "c")
    )
    reference.eval()
    with torch.no_grad():
        ref = reference(torch.from_numpy(x)).numpy()
        truth = reference.double()(torch.from_numpy(x).double()).numpy()

    try:  # an artifact its own runtime refuses is what verifying is for: a failed check, not a crash
        run = artifacts.load(result.format, result.out, output=output_name(result.config))
        y = run(x_own)
    except Exception as e:
        said = f"{FORMATS[result.format].runtime[1]} refused the artifact: {type(e).__name__}: "
        return Verification({}, BOUND, failure=said + " ".join(str(e).split())[:300])
    source_run = forward(result.framework, model)
    errors = {
        "reference": rel_error(y, ref),
        "batch 1": rel_error(run(x_own[:1]), ref[:1]),
        "source": rel_error(y, source_run(x_own)),
        "float64": rel_error(y, truth),
        "fp32 floor": rel_error(ref, truth),
    }
    if result.format in ("onnx", "tflite"):
        errors["unfused"] = rel_error(
            artifacts.load(result.format, result.out, False, output_name(result.config))(x_own), ref
        )
    latency = {
        str(b): {"artifact": _ms(run, x_own[:b], repeats), "source": _ms(source_run, x_own[:b], repeats)}
        for b in LATENCY_BATCHES
    }
    return Verification(errors, BOUND, latency)


def _ms(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, repeats: int) -> float:
    """Median milliseconds of ``run(x)`` after two warm-up calls (compiling, allocating)."""
    for _ in range(2):
        run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)
