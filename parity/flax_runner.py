"""The Flax runner: NCHW numpy in, NHWC to the model."""

from __future__ import annotations

import numpy as np

from resnext_spec import ArchConfig, PassResult


class FlaxRunner:
    framework = "flax"

    def __init__(self, device: str = "cpu") -> None:
        import jax

        import resnext_flax
        from resnext_flax import train

        self.jax, self.rf, self.train = jax, resnext_flax, train
        self.device = jax.devices("gpu" if device == "gpu" else "cpu")[0]

    def build(self, config: ArchConfig, form: str):
        # Shapes only: every weight is loaded before use, so random init would be wasted.
        with self.jax.default_device(self.device):
            return self.rf.weights.empty_model(config, form)

    def export(self, model) -> dict[str, np.ndarray]:
        return self.rf.export_weights(model)

    def load(self, model, weights: dict[str, np.ndarray]) -> None:
        with self.jax.default_device(self.device):
            self.rf.import_weights(model, weights)

    def count(self, model) -> int:
        return self.rf.count_params(model)

    def forward_backward(self, model, x, labels, train) -> PassResult:
        with self.jax.default_device(self.device):
            return self.train.forward_backward(model, x.transpose(0, 2, 3, 1), labels, train)

    def sgd_step(self, model, x, labels, **hp) -> tuple[PassResult, dict[str, np.ndarray]]:
        with self.jax.default_device(self.device):
            return self.train.sgd_step(model, x.transpose(0, 2, 3, 1), labels, **hp)
