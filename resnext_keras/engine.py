"""``KerasEngine``: Keras's own ``compile`` / ``train_on_batch`` with the torch-coupled SGD.

``devices`` splits each batch with ``keras.distribution.DataParallel`` (JAX backend).
"""

from __future__ import annotations

import contextlib
import io
import os

import keras
import numpy as np

from resnext_spec import ArchConfig, CheckpointError
from resnext_spec.checkpoint import atomic_write_bytes
from resnext_spec.errors import ConfigError
from resnext_spec.layout import layers
from resnext_spec.training import HEAD, Recipe, padded, pick_devices

from .model import create_model, layer_name
from .train import TorchSGD
from .weights import export_weights, import_weights, save_weights_atomic


class KerasEngine:
    """Keras's own ``compile`` / ``train_on_batch``, so each backend jit-compiles the step its way."""

    framework = "keras"
    rank, world = 0, 1  # one process; ``devices`` are split inside it

    def __init__(
        self,
        config: ArchConfig,
        form: str,
        weights: dict,
        recipe: Recipe,
        conv_impl: str = "auto",
        devices: int | str | None = None,
    ) -> None:
        """``devices`` (a count or ``"all"``) runs ``keras.distribution.DataParallel``: JAX backend only."""
        self.keras = keras
        self.n_devices, self._scope, self.mesh_devices = 1, contextlib.nullcontext, None
        if devices not in (None, 1, "1"):
            backend = keras.backend.backend()
            if backend != "jax":
                raise ConfigError(
                    f"data-parallel Keras runs on the JAX backend (keras.distribution.DataParallel), not "
                    f"{backend}: set KERAS_BACKEND=jax (or --keras-backend jax), or use --framework torch "
                    "with torchrun"
                )
            chosen = pick_devices(devices, keras.distribution.list_devices(), recipe.batch_size)
            distribution = keras.distribution.DataParallel(devices=chosen)
            self.n_devices, self._scope = len(chosen), distribution.scope
            self.mesh_devices = [str(d) for d in chosen]
        with self._scope():  # the variables are laid out (replicated) by the distribution
            self.model = create_model(config=config, form=form, conv_impl=conv_impl)
            import_weights(self.model, weights)
            # Fine-tuning: a frozen layer is not trainable, which in Keras also runs its BatchNorm
            # in inference mode, so its statistics stay as loaded too.
            for spec in layers(config, form):
                if recipe.is_frozen(spec.name, len(config.layers)):
                    self.model.get_layer(layer_name(spec.name)).trainable = False
            head = {layer_name(HEAD.rstrip(".")) + "/": recipe.head_lr_scale} if recipe.head_lr else {}
            self.optimizer = TorchSGD(recipe.lr, recipe.momentum, recipe.weight_decay, lr_multipliers=head)
            self.model.compile(
                optimizer=self.optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
            )
            self.optimizer.build(self.model.trainable_variables)

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        self.optimizer.learning_rate = lr
        with self._scope():  # the batch is split over the devices by the distribution
            logs = self.model.train_on_batch(x, y.astype(np.int32), return_dict=True)  # one batch's figures
        return float(logs["loss"]), round(float(logs["acc"]) * len(y))

    def predict(self, x: np.ndarray) -> np.ndarray:
        with self._scope():
            logits = self.model.predict_on_batch(padded(x, self.n_devices))
        return np.asarray(self.keras.ops.convert_to_numpy(logits))[: len(x)]

    def weights(self) -> dict[str, np.ndarray]:
        return export_weights(self.model)

    def save(self, folder: str) -> None:
        save_weights_atomic(self.model, os.path.join(folder, "keras.weights.h5"))
        buffer = io.BytesIO()
        np.savez(buffer, *[np.asarray(v.numpy()) for v in self.optimizer.variables])
        atomic_write_bytes(os.path.join(folder, "keras_optimizer.npz"), buffer.getvalue())

    def restore(self, folder: str) -> None:
        self.model.load_weights(os.path.join(folder, "keras.weights.h5"))
        with np.load(os.path.join(folder, "keras_optimizer.npz")) as saved:
            if len(saved.files) != len(self.optimizer.variables):
                raise CheckpointError(
                    f"{folder}: optimizer state of another model ({len(saved.files)} variables)"
                )
            for i, v in enumerate(self.optimizer.variables):
                v.assign(saved[f"arr_{i}"])
