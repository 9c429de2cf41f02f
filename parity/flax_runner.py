"""The Flax runner: NCHW numpy in, NHWC to the model."""

from __future__ import annotations

import numpy as np

from resnext_spec import ArchConfig, PassResult
from resnext_spec.grouped import check_conv_impl


class FlaxRunner:
    framework = "flax"

    def __init__(self, device: str = "cpu", jit: str = "auto", conv_impl: str = "auto") -> None:
        """``jit``: "always", "never", or "auto" = form (c) only.

        Explicit paths make XLA compile times explode (resnext50_32x4d form (a):
        877 s to compile one gradient pass on 2 CPU cores, 27 s to run it eagerly),
        and the harness runs each build only once or twice.
        """
        if jit not in ("auto", "always", "never"):
            raise ValueError(f"flax jit must be 'auto', 'always' or 'never', got {jit!r}")
        self.jit = jit
        self.conv_impl = check_conv_impl(conv_impl)
        import jax

        import resnext_flax
        from resnext_flax import train

        self.jax, self.rf, self.train = jax, resnext_flax, train
        self.device = jax.devices("gpu" if device == "gpu" else "cpu")[0]

    def build(self, config: ArchConfig, form: str):
        # A plain initialised build: nnx.eval_shape would skip the random init, but
        # tracing thousands of modules made it far slower (resnext50_32x4d form (a):
        # 218 s abstract vs 3.4 s concrete on 2 CPU cores).
        with self.jax.default_device(self.device):
            return self.rf.ResNet(config, form, conv_impl=self.conv_impl)

    def export(self, model) -> dict[str, np.ndarray]:
        return self.rf.export_weights(model)

    def load(self, model, weights: dict[str, np.ndarray]) -> None:
        with self.jax.default_device(self.device):
            self.rf.import_weights(model, weights)

    def count(self, model) -> int:
        return self.rf.count_params(model)

    def _jit(self, model) -> bool:
        return self.jit == "always" or (self.jit == "auto" and model.form == "c")

    def logits(self, model, x) -> np.ndarray:
        # One forward pass: compiling it costs more than it saves unless jit is "always"
        # (resnet152 at 32 px: 4.4 s to compile and run, 2.6 s eager).
        with self.jax.default_device(self.device):
            model.eval()
            nhwc = self.jax.numpy.asarray(x.transpose(0, 2, 3, 1))
            out = self.train.forward(model, nhwc) if self.jit == "always" else model(nhwc)
            return np.asarray(out, dtype=np.float64)

    def forward_backward(self, model, x, labels, train) -> PassResult:
        with self.jax.default_device(self.device):
            nhwc = x.transpose(0, 2, 3, 1)
            return self.train.forward_backward(model, nhwc, labels, train, jit=self._jit(model))

    def sgd_step(self, model, x, labels, **hp) -> tuple[PassResult, dict[str, np.ndarray]]:
        with self.jax.default_device(self.device):
            nhwc = x.transpose(0, 2, 3, 1)
            return self.train.sgd_step(model, nhwc, labels, jit=self._jit(model), **hp)
