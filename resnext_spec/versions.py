"""The versions every report records (parity, bench), read from the installed distributions."""

from __future__ import annotations

import platform
from importlib import metadata


def versions() -> dict[str, str]:
    """Versions of Python and of every library a report's figures may depend on."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in (
        "numpy",
        "safetensors",
        "torch",
        "keras",
        "tensorflow-cpu",
        "tensorflow",
        "jax",
        "jaxlib",
        "flax",
        "optax",
        # resnext-export's exporters and runtimes
        "onnx",
        "onnxscript",
        "onnxruntime",
        "tf2onnx",
        "jax2onnx",
        "ai-edge-litert",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
