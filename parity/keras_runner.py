"""The Keras runner: NCHW numpy in, NHWC to the model. The Keras backend is fixed per process."""

from __future__ import annotations

import os

import numpy as np

from resnext_spec import ArchConfig, PassResult
from resnext_spec.grouped import check_conv_impl

BACKENDS = ("tensorflow", "jax", "torch")


class KerasRunner:
    framework = "keras"

    def __init__(self, backend: str | None = None, conv_impl: str = "auto") -> None:
        self.conv_impl = check_conv_impl(conv_impl)
        if backend is not None:
            if backend not in BACKENDS:
                raise ValueError(f"unknown Keras backend {backend!r}; choose from {list(BACKENDS)}")
            loaded = _loaded_backend()
            if loaded is not None and loaded != backend:
                raise ValueError(
                    f"Keras is already running on {loaded!r} in this process; its backend is fixed "
                    f"when keras is first imported (set KERAS_BACKEND={backend} before starting)"
                )
            os.environ["KERAS_BACKEND"] = backend
        import keras

        import resnext_keras
        from resnext_keras import train

        self.keras, self.rk, self.train = keras, resnext_keras, train
        self.backend = keras.backend.backend()

    def build(self, config: ArchConfig, form: str):
        return self.rk.create_model(config=config, form=form, conv_impl=self.conv_impl)

    def export(self, model) -> dict[str, np.ndarray]:
        return self.rk.export_weights(model)

    def load(self, model, weights: dict[str, np.ndarray]) -> None:
        self.rk.import_weights(model, weights)

    def count(self, model) -> int:
        return self.rk.count_params(model)

    def logits(self, model, x) -> np.ndarray:
        out = model(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), training=False)
        return np.asarray(self.keras.ops.convert_to_numpy(out), dtype=np.float64)

    def forward_backward(self, model, x, labels, train) -> PassResult:
        return self.train.forward_backward(model, x.transpose(0, 2, 3, 1), labels, train)

    def sgd_step(self, model, x, labels, **hp) -> tuple[PassResult, dict[str, np.ndarray]]:
        return self.train.sgd_step(model, x.transpose(0, 2, 3, 1), labels, **hp)


def _loaded_backend() -> str | None:
    import sys

    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None
