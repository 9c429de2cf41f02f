"""One adapter per framework, so the harness can treat the nine builds alike.

A runner takes NCHW numpy input (it transposes for NHWC frameworks itself; the
models are never changed) and returns float64 numpy results keyed by canonical
names in the model's own form: what the checks compare. This is harness code,
not model code, so it lives here and not in the framework packages. Frameworks
are imported only when their runner is made, so the harness works with any
subset installed.

Every runner computes in one ``dtype``: "float32" (the checks), "float64" (the
float64 checks, and torch's float64 reference) or "bfloat16" (the informational
reduced-precision rows: torch autocast, Keras ``mixed_bfloat16``, Flax bf16 compute).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from resnext_spec import ArchConfig
from resnext_spec.layout import canonical_shapes, is_running_stat

FRAMEWORKS = ("torch", "keras", "flax")
DTYPES = ("float32", "float64", "bfloat16")


@dataclass
class PassResult:
    """One forward + backward pass, in float64 numpy, keyed by canonical names of the model's form.

    ``grads`` holds the parameters only (running statistics have no gradient);
    ``state`` holds every canonical tensor after the pass, so a training-mode
    pass shows the running statistics it updated.
    """

    logits: np.ndarray
    loss: float
    grads: dict[str, np.ndarray]
    state: dict[str, np.ndarray]


@dataclass(frozen=True)
class SGD:
    """The optimiser of the ``sgd`` check: torch.optim.SGD's update, ``steps`` steps, momentum carried."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    steps: int = 3


class Runner(Protocol):
    framework: str
    dtype: str

    def build(self, config: ArchConfig, form: str) -> Any: ...
    def export(self, model: Any) -> dict[str, np.ndarray]: ...
    def load(self, model: Any, weights: dict[str, np.ndarray]) -> None: ...
    def count(self, model: Any) -> int: ...
    def logits(self, model: Any, x: np.ndarray) -> np.ndarray: ...
    def forward_backward(self, model: Any, x: np.ndarray, labels: np.ndarray, train: bool) -> PassResult: ...
    def sgd_steps(
        self, model: Any, x: np.ndarray, labels: np.ndarray, sgd: SGD
    ) -> tuple[PassResult, dict[str, np.ndarray]]: ...


class UnsupportedPrecision(ValueError):
    """A framework/backend that cannot compute a precision faithfully: refused before any work."""


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"unknown precision {dtype!r}; choose from {list(DTYPES)}")
    return dtype


class TorchRunner:
    framework = "torch"

    def __init__(self, device: str = "cpu", dtype: str = "float32", tf32: bool = False) -> None:
        import torch

        import resnext_torch

        self.torch = torch
        self.rt = resnext_torch
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.dtype = check_dtype(dtype)
        # bfloat16 is autocast: float32 parameters, bf16 matmuls and convs.
        self.param_dtype = torch.float64 if dtype == "float64" else torch.float32
        self.tf32 = tf32

    def build(self, config: ArchConfig, form: str):
        return self.rt.create_model(config=config, form=form).to(self.device, self.param_dtype)

    def export(self, model) -> dict[str, np.ndarray]:
        return self.rt.export_weights(model)

    def load(self, model, weights: dict[str, np.ndarray]) -> None:
        self.rt.import_weights(model, weights)

    def count(self, model) -> int:
        return self.rt.count_params(model)

    @contextmanager
    def _precision(self) -> Iterator[None]:
        """fp32 pinned (or TF32 allowed) in CUDA convs and matmuls, bf16 autocast if asked; then restored.

        torch allows TF32 in cuDNN convolutions by default on Ampere and newer, which
        costs ~1e-3 relative error; parity runs pin it off and measure it separately.
        """
        cudnn, matmul = self.torch.backends.cudnn, self.torch.backends.cuda.matmul
        old = (cudnn.allow_tf32, matmul.allow_tf32)
        cudnn.allow_tf32 = matmul.allow_tf32 = self.tf32
        autocast = (
            self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)
            if self.dtype == "bfloat16"
            else nullcontext()
        )
        try:
            with autocast:
                yield
        finally:
            cudnn.allow_tf32, matmul.allow_tf32 = old

    def _input(self, x: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.param_dtype)

    def logits(self, model, x) -> np.ndarray:
        """Eval-mode logits, no autograd: the eval check alone needs no gradient pass."""
        model.eval()
        with self._precision(), self.torch.no_grad():
            return _numpy(model(self._input(x)))

    def state(self, model) -> dict[str, np.ndarray]:
        """Every canonical tensor (parameters and running statistics) in float64."""
        sd = model.state_dict()
        return {n: _numpy(sd[n]) for n in canonical_shapes(model.config, model.form)}

    def _backward(self, model, x, labels, train: bool):
        """One forward and backward pass; gradients left in ``.grad``. Returns (logits, loss)."""
        import torch.nn.functional as F

        model.train(train)
        model.zero_grad(set_to_none=True)
        yt = self.torch.from_numpy(np.asarray(labels)).long().to(self.device)
        with self._precision():
            logits = model(self._input(x))
            loss = F.cross_entropy(logits, yt)
        loss.backward()
        return logits, loss

    def _result(self, model, logits, loss) -> PassResult:
        params = dict(model.named_parameters())
        grads = {
            n: _numpy(params[n].grad)
            for n in canonical_shapes(model.config, model.form)
            if not is_running_stat(n)
        }
        return PassResult(
            logits.detach().cpu().double().numpy(), float(loss.detach()), grads, self.state(model)
        )

    def forward_backward(self, model, x, labels, train) -> PassResult:
        """Logits, mean cross-entropy and its gradients w.r.t. every canonical parameter.

        In train mode BN uses batch statistics and updates its running statistics,
        which ``state`` then shows.
        """
        return self._result(model, *self._backward(model, x, labels, train))

    def sgd_steps(self, model, x, labels, sgd: SGD) -> tuple[PassResult, dict[str, np.ndarray]]:
        """``sgd.steps`` training-mode steps of torch.optim.SGD on one batch, from fresh state.

        Returns the first step's pass (the ``train`` check reads it) and the state after the last.
        """
        opt = self.torch.optim.SGD(
            model.parameters(), lr=sgd.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay
        )
        first = None
        for _ in range(sgd.steps):
            logits, loss = self._backward(model, x, labels, True)
            if first is None:
                first = self._result(model, logits, loss)
            opt.step()
        return first, self.state(model)


def _numpy(t) -> np.ndarray:
    """A float64 numpy copy of a torch tensor: never a view of a float64 model's own buffers,
    which later SGD steps would change under the result."""
    return t.detach().cpu().double().numpy().copy()


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
    dtype: str = "float32",
) -> Runner:
    """The runner of ``framework`` ('torch', 'keras' or 'flax') on ``device`` ('cpu' or 'gpu').

    ``conv_impl`` says how Keras and Flax compute grouped convs (``resnext_spec.grouped``);
    ``dtype`` what every pass computes in (``DTYPES``).
    """
    check_dtype(dtype)
    if framework == "torch":
        return TorchRunner(device, dtype)
    if device == "gpu":
        pin_jax_fp32()
    if framework == "keras":
        from .keras_runner import KerasRunner

        # On GPU Keras runs on JAX (this workplace's GPU machines have no TensorFlow).
        return KerasRunner(keras_backend or ("jax" if device == "gpu" else None), conv_impl, dtype)
    if framework == "flax":
        from .flax_runner import FlaxRunner

        return FlaxRunner(device, flax_jit, conv_impl, dtype)
    raise ValueError(f"unknown framework {framework!r}; choose from {list(FRAMEWORKS)}")


def pin_jax_fp32() -> None:
    """Full fp32 matmuls and convs in JAX: on GPU its default precision may use TF32."""
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")


def jax_x64(needed: bool):
    """JAX's 64-bit mode while float64 builds run (a no-op context otherwise, or without JAX).

    Scoped, not global: outside it JAX keeps its float32 defaults, so float32 runs
    in the same process are unchanged.
    """
    if not needed:
        return nullcontext()
    try:
        import jax
    except ImportError:
        return nullcontext()
    return jax.enable_x64(True)
