"""Which (framework, format) pairs export, what each needs installed, and why the others are refused.

The matrix is measured, not assumed: every pair listed in :data:`EXPORTERS` exports all three
block forms and is checked in ``tests/test_export.py``; every refusal below says why and what to
use instead. Keras has one backend per process, so a Keras pair also names the backends it runs on.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from resnext_spec.errors import ResNeXtError


class ExportError(ResNeXtError):
    """A source, format or setting that cannot be exported; the message says what and what to do."""


@dataclass(frozen=True)
class Format:
    suffix: str  # "" for a folder
    description: str
    runtime: tuple[str, str]  # (module, pip package) that runs the artifact for --verify
    dynamic_batch: bool = True


FORMATS = {
    "onnx": Format(".onnx", "ONNX model", ("onnxruntime", "onnxruntime")),
    "tflite": Format(".tflite", "LiteRT (TensorFlow Lite) flatbuffer", ("ai_edge_litert", "ai-edge-litert")),
    "saved_model": Format("", "TensorFlow SavedModel folder", ("tensorflow", "tensorflow-cpu")),
    "stablehlo": Format(".stablehlo", "StableHLO, serialised by jax.export", ("jax", "jax")),
    "pt2": Format(".pt2", "torch.export ExportedProgram", ("torch", "torch")),
}

# (framework, format) -> {Keras backend or "" : the (module, pip package) pairs the exporter needs}
EXPORTERS: dict[tuple[str, str], dict[str, list[tuple[str, str]]]] = {
    ("torch", "onnx"): {"": [("onnx", "onnx"), ("onnxscript", "onnxscript")]},
    ("torch", "pt2"): {"": []},
    ("keras", "onnx"): {
        "tensorflow": [("tf2onnx", "tf2onnx"), ("onnx", "onnx")],
        "jax": [("jax2onnx", "jax2onnx"), ("onnx", "onnx")],
        "torch": [("onnx", "onnx"), ("onnxscript", "onnxscript")],
    },
    ("keras", "saved_model"): {"tensorflow": [], "jax": [("tensorflow", "tensorflow-cpu")]},
    ("keras", "tflite"): {"tensorflow": []},
    ("keras", "stablehlo"): {"jax": []},
    ("flax", "onnx"): {"": [("jax2onnx", "jax2onnx"), ("onnx", "onnx")]},
    ("flax", "stablehlo"): {"": []},
}

# Why the other pairs are refused (exit 2, nothing written), and what to run instead.
REFUSED = {
    ("torch", "tflite"): "LiteRT from torch needs litert-torch, which this project does not drive; "
    "port the weights and export --framework keras (Keras on TensorFlow)",
    ("torch", "saved_model"): "a SavedModel is TensorFlow's format; export --framework keras",
    ("torch", "stablehlo"): "StableHLO comes from JAX here; export --framework flax (or keras on JAX)",
    ("flax", "tflite"): "LiteRT from JAX goes through jax2tf, which JAX has deprecated; "
    "export --framework keras (Keras on TensorFlow)",
    ("flax", "saved_model"): "a SavedModel from JAX goes through jax2tf, which JAX has deprecated; "
    "export --framework keras",
    ("flax", "pt2"): "pt2 is torch.export's format; export --framework torch",
    ("keras", "pt2"): "pt2 is torch.export's format; export --framework torch",
}
KERAS_REFUSED = {
    "tflite": "Keras writes LiteRT on TensorFlow (its torch path needs litert-torch): "
    "run with KERAS_BACKEND=tensorflow",
    "stablehlo": "StableHLO comes from JAX: run with KERAS_BACKEND=jax",
    "saved_model": "Keras writes a SavedModel on TensorFlow or JAX: run with KERAS_BACKEND=tensorflow",
}
# The backend a Keras export picks when KERAS_BACKEND is unset and Keras is not yet imported.
KERAS_BACKEND_FOR = {"stablehlo": "jax"}


def format_from_path(path: str, fmt: str | None) -> str:
    """``fmt``, or the format ``path``'s suffix names (a path with no suffix: a SavedModel folder)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
        return fmt
    for name, f in FORMATS.items():
        if f.suffix and path.endswith(f.suffix):
            return name
    if "." not in path.rstrip("/").rsplit("/", 1)[-1]:
        return "saved_model"
    raise ExportError(
        f"{path}: its suffix names no format; pass --format ({', '.join(FORMATS)}) "
        "or use " + ", ".join(f.suffix for f in FORMATS.values() if f.suffix)
    )


def check_pair(framework: str, fmt: str, keras_backend: str | None = None) -> list[tuple[str, str]]:
    """The packages the exporter of (framework, fmt) needs; :class:`ExportError` if it is refused."""
    if (framework, fmt) in REFUSED:
        raise ExportError(f"{framework} -> {fmt} is not exported: {REFUSED[framework, fmt]}")
    by_backend = EXPORTERS[framework, fmt]
    key = keras_backend if framework == "keras" else ""
    if key not in by_backend:
        why = KERAS_REFUSED.get(fmt, f"choose KERAS_BACKEND from {', '.join(by_backend)}")
        raise ExportError(f"keras on {keras_backend} -> {fmt} is not exported: {why}")
    return by_backend[key]


def require(packages: list[tuple[str, str]], purpose: str) -> None:
    """Fail with the pip command when a package ``purpose`` needs is missing (nothing is written)."""
    missing = [pip for module, pip in packages if importlib.util.find_spec(module) is None]
    if missing:
        raise ExportError(f"{purpose} needs {', '.join(missing)}: pip install {' '.join(missing)}")
