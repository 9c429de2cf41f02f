"""The dispatcher: one runner per framework, so the harness can treat the nine builds alike.

The runners themselves live one per file (``torch_runner``, ``keras_runner``,
``flax_runner``) over what they share (``runner_base``); this module sits above them.
"""

from __future__ import annotations

from resnext_spec.frameworks import check_framework, installed_frameworks

from .flax_runner import FlaxRunner
from .keras_runner import KerasRunner
from .runner_base import DTYPES, SGD, PassResult, Runner, UnsupportedPrecision, check_dtype
from .torch_runner import TorchRunner

__all__ = [
    "DTYPES", "SGD", "FlaxRunner", "KerasRunner", "PassResult", "Runner", "TorchRunner",
    "UnsupportedPrecision", "available_frameworks", "check_dtype", "make_runner",
]  # fmt: skip


def available_frameworks() -> list[str]:
    """The frameworks whose package and library are installed, in the usual order."""
    return installed_frameworks()


def make_runner(
    framework: str,
    device: str = "cpu",
    keras_backend: str | None = None,
    conv_impl: str = "auto",
    dtype: str = "float32",
    compile: str = "auto",
) -> Runner:
    """The runner of ``framework`` ('torch', 'keras' or 'flax') on ``device`` ('cpu' or 'gpu').

    ``conv_impl`` says how Keras and Flax compute grouped convs (``resnext_spec.grouped``);
    ``dtype`` what every pass computes in (``DTYPES``); ``compile`` which Keras and Flax
    builds run compiled ("auto", "always", "never"; ``runner_base.compiles``).
    """
    check_dtype(dtype)
    if framework == "torch":
        return TorchRunner(device, dtype)
    if framework == "keras":
        # On GPU Keras runs on JAX (this workplace's GPU machines have no TensorFlow).
        return KerasRunner(keras_backend or ("jax" if device == "gpu" else None), conv_impl, dtype, compile)
    if framework == "flax":
        return FlaxRunner(device, compile, conv_impl, dtype)
    check_framework(framework)
    raise AssertionError(f"no runner for {framework}")
