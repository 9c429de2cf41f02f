"""The torch runner: the reference every other build is compared with (form (c), and float64)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np

from resnext_spec import ArchConfig
from resnext_spec.layout import canonical_shapes, is_running_stat

from .runner_base import SGD, PassResult, check_dtype, split_stages


class TorchRunner:
    framework = "torch"
    compile_s = 0.0  # torch runs eagerly, the reference as torch itself runs by default

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

    def compiled(self, model) -> bool:
        return False

    def runs_beside(self, config: ArchConfig, form: str) -> bool:
        """No: eager torch holds the GIL between its small ops, so a thread would gain nothing."""
        return False

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

    def stages(self, model, x) -> dict[str, np.ndarray]:
        """Eval-mode outputs at every stage and the logits, no autograd: the eval check alone
        needs no gradient pass."""
        model.eval()
        with self._precision(), self.torch.no_grad():
            return {k: _numpy(v) for k, v in model.forward_stages(self._input(x)).items()}

    def state(self, model) -> dict[str, np.ndarray]:
        """Every canonical tensor (parameters and running statistics) in float64."""
        sd = model.state_dict()
        return {n: _numpy(sd[n]) for n in canonical_shapes(model.config, model.form)}

    def _backward(self, model, x, labels, train: bool):
        """One forward and backward pass; gradients left in ``.grad``. Returns (stage outputs
        with the logits, loss)."""
        import torch.nn.functional as F

        model.train(train)
        model.zero_grad(set_to_none=True)
        yt = self.torch.from_numpy(np.asarray(labels)).long().to(self.device)
        with self._precision():
            out = model.forward_stages(self._input(x))
            loss = F.cross_entropy(out["logits"], yt)
        loss.backward()
        return out, loss

    def _result(self, model, out, loss) -> PassResult:
        params = dict(model.named_parameters())
        grads = {
            n: _numpy(params[n].grad)
            for n in canonical_shapes(model.config, model.form)
            if not is_running_stat(n)
        }
        logits, stages = split_stages(out, model.config, _numpy, nhwc=False)
        return PassResult(_numpy(logits), float(loss.detach()), grads, self.state(model), stages)

    def forward_backward(self, model, x, labels, train) -> PassResult:
        """Logits, mean cross-entropy and its gradients w.r.t. every canonical parameter.

        In train mode BN uses batch statistics and updates its running statistics,
        which ``state`` then shows.
        """
        return self._result(model, *self._backward(model, x, labels, train))

    def full_fp32(self):
        """A no-op: every pass pins torch's own TF32 switches itself (``_precision``)."""
        return nullcontext()

    def sgd_steps(self, model, x, labels, sgd: SGD) -> tuple[PassResult, dict[str, np.ndarray]]:
        """``sgd.steps`` training-mode steps of torch.optim.SGD on one batch, from fresh state.

        Returns the first step's pass (the ``train`` check reads it) and the state after the last.
        """
        opt = self.torch.optim.SGD(
            model.parameters(), lr=sgd.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay
        )
        first = None
        for _ in range(sgd.steps):
            out, loss = self._backward(model, x, labels, True)
            if first is None:
                first = self._result(model, out, loss)
            opt.step()
        return first, self.state(model)


def _numpy(t) -> np.ndarray:
    """A float64 numpy copy of a torch tensor: never a view of a float64 model's own buffers,
    which later SGD steps would change under the result."""
    return t.detach().cpu().double().numpy().copy()
