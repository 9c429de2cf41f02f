"""One adapter per framework, so the harness can treat the nine builds alike.

A runner takes NCHW numpy input (it transposes for NHWC frameworks itself; the
models are never changed) and returns numpy results keyed by canonical names
in the model's own form. Frameworks are imported only when their runner is made,
so the harness works with any subset installed.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from resnext_spec import ArchConfig, PassResult

FRAMEWORKS = ("torch", "keras", "flax")


class Runner(Protocol):
    framework: str

    def build(self, config: ArchConfig, form: str) -> Any: ...
    def export(self, model: Any) -> dict[str, np.ndarray]: ...
    def load(self, model: Any, weights: dict[str, np.ndarray]) -> None: ...
    def count(self, model: Any) -> int: ...
    def logits(self, model: Any, x: np.ndarray) -> np.ndarray: ...
    def forward_backward(self, model: Any, x: np.ndarray, labels: np.ndarray, train: bool) -> PassResult: ...
    def sgd_step(
        self, model: Any, x: np.ndarray, labels: np.ndarray, **hp: float
    ) -> tuple[PassResult, dict[str, np.ndarray]]: ...


class TorchRunner:
    framework = "torch"

    def __init__(self, device: str = "cpu", float64: bool = False, tf32: bool = False) -> None:
        import torch

        import resnext_torch

        self.torch = torch
        self.rt = resnext_torch
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.dtype = torch.float64 if float64 else torch.float32
        self.tf32 = tf32

    def build(self, config: ArchConfig, form: str):
        return self.rt.create_model(config=config, form=form).to(self.device, self.dtype)

    def export(self, model) -> dict[str, np.ndarray]:
        return self.rt.export_weights(model)

    def load(self, model, weights: dict[str, np.ndarray]) -> None:
        self.rt.import_weights(model, weights)

    def count(self, model) -> int:
        return self.rt.count_params(model)

    def _precision(self):
        from resnext_torch.train import matmul_precision

        return matmul_precision(self.tf32)

    def logits(self, model, x) -> np.ndarray:
        """Eval-mode logits, no autograd: the eval check alone needs no gradient pass."""
        model.eval()
        xt = self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.dtype)
        with self._precision(), self.torch.no_grad():
            return model(xt).cpu().double().numpy()

    def forward_backward(self, model, x, labels, train) -> PassResult:
        from resnext_torch.train import forward_backward

        with self._precision():
            return forward_backward(model, x, labels, train)

    def sgd_step(self, model, x, labels, **hp) -> tuple[PassResult, dict[str, np.ndarray]]:
        from resnext_torch.train import sgd_step

        with self._precision():
            return sgd_step(model, x, labels, **hp)


def available_frameworks() -> list[str]:
    """The frameworks whose package and library are installed, in the usual order."""
    from importlib.util import find_spec

    needs = {
        "torch": ("torch", "resnext_torch"),
        "keras": ("keras", "resnext_keras"),
        "flax": ("flax", "resnext_flax"),
    }
    return [fw for fw in FRAMEWORKS if all(find_spec(m) is not None for m in needs[fw])]


def make_runner(
    framework: str,
    device: str = "cpu",
    keras_backend: str | None = None,
    flax_jit: str = "auto",
    conv_impl: str = "auto",
) -> Runner:
    """The runner of ``framework`` ('torch', 'keras' or 'flax') on ``device`` ('cpu' or 'gpu').

    ``conv_impl`` says how Keras and Flax compute grouped convs (``resnext_spec.grouped``).
    """
    if framework == "torch":
        return TorchRunner(device)
    if device == "gpu":
        pin_jax_fp32()
    if framework == "keras":
        from .keras_runner import KerasRunner

        # On GPU Keras runs on JAX (this workplace's GPU machines have no TensorFlow).
        return KerasRunner(keras_backend or ("jax" if device == "gpu" else None), conv_impl)
    if framework == "flax":
        from .flax_runner import FlaxRunner

        return FlaxRunner(device, flax_jit, conv_impl)
    raise ValueError(f"unknown framework {framework!r}; choose from {list(FRAMEWORKS)}")


def pin_jax_fp32() -> None:
    """Full fp32 matmuls and convs in JAX: on GPU its default precision may use TF32."""
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
