"""One small class per framework: a model, its optimizer and its step, behind the same methods.

The training loop (``train.loop``) is framework-free; it hands each engine the same
numpy batches (NHWC float32, int64 labels) and the learning rate of the epoch, and
reads back the loss, the number of correct predictions and, for evaluation, logits.
Each engine starts from the same canonical weights and steps with torch's SGD
(weight decay added to the gradient before momentum).
"""

from __future__ import annotations

import io
import os
from typing import Protocol

import numpy as np

from resnext_spec import ArchConfig, atomic_write
from resnext_spec.checkpoint import atomic_write_bytes

from .recipe import Recipe


class Engine(Protocol):
    framework: str

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        """One SGD step; (mean loss, correct predictions) of the batch, from the train-mode logits."""
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Eval-mode logits (running BN statistics)."""
        ...

    def weights(self) -> dict[str, np.ndarray]:
        """Canonical weights (torch names and layout) of the model's form."""
        ...

    def save(self, folder: str) -> None:
        """Model and optimizer state in the framework's own format, into ``folder``."""
        ...

    def restore(self, folder: str) -> None: ...


class TorchEngine:
    framework = "torch"

    def __init__(
        self, config: ArchConfig, form: str, weights: dict, recipe: Recipe, float64: bool = False
    ) -> None:
        """``float64`` trains in double precision: the truth a trajectory check measures against."""
        import torch

        from resnext_torch import create_model, import_weights

        self.torch = torch
        self.dtype = torch.float64 if float64 else torch.float32
        self.model = create_model(config=config, form=form)
        import_weights(self.model, weights)
        self.model.to(self.dtype)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )

    def _nchw(self, x: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.dtype)

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        torch = self.torch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        labels = torch.from_numpy(y.astype(np.int64))
        logits = self.model(self._nchw(x))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), int((logits.detach().argmax(1) == labels).sum())

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self._nchw(x)).float().numpy()

    def weights(self) -> dict[str, np.ndarray]:
        from resnext_torch import export_weights

        return export_weights(self.model)

    def save(self, folder: str) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        atomic_write(os.path.join(folder, "torch.pt"), lambda tmp: self.torch.save(state, tmp))

    def restore(self, folder: str) -> None:
        state = self.torch.load(os.path.join(folder, "torch.pt"), weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class KerasEngine:
    """Keras's own ``compile`` / ``train_on_batch``, so each backend jit-compiles the step its way."""

    framework = "keras"

    def __init__(
        self, config: ArchConfig, form: str, weights: dict, recipe: Recipe, conv_impl: str = "auto"
    ) -> None:
        import keras

        from resnext_keras import TorchSGD, create_model, import_weights

        self.keras = keras
        self.model = create_model(config=config, form=form, conv_impl=conv_impl)
        import_weights(self.model, weights)
        self.optimizer = TorchSGD(recipe.lr, recipe.momentum, recipe.weight_decay)
        self.model.compile(
            optimizer=self.optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        )
        self.optimizer.build(self.model.trainable_variables)

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        self.optimizer.learning_rate = lr
        logs = self.model.train_on_batch(x, y.astype(np.int32), return_dict=True)  # one batch's figures
        return float(logs["loss"]), round(float(logs["acc"]) * len(y))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.keras.ops.convert_to_numpy(self.model.predict_on_batch(x)))

    def weights(self) -> dict[str, np.ndarray]:
        from resnext_keras import export_weights

        return export_weights(self.model)

    def save(self, folder: str) -> None:
        from resnext_keras import save_weights_atomic

        save_weights_atomic(self.model, os.path.join(folder, "keras.weights.h5"))
        buffer = io.BytesIO()
        np.savez(buffer, *[np.asarray(v.numpy()) for v in self.optimizer.variables])
        atomic_write_bytes(os.path.join(folder, "keras_optimizer.npz"), buffer.getvalue())

    def restore(self, folder: str) -> None:
        self.model.load_weights(os.path.join(folder, "keras.weights.h5"))
        with np.load(os.path.join(folder, "keras_optimizer.npz")) as saved:
            if len(saved.files) != len(self.optimizer.variables):
                raise ValueError(f"{folder}: optimizer state of another model ({len(saved.files)} variables)")
            for i, v in enumerate(self.optimizer.variables):
                v.assign(saved[f"arr_{i}"])


class FlaxEngine:
    framework = "flax"

    def __init__(
        self, config: ArchConfig, form: str, weights: dict, recipe: Recipe, conv_impl: str = "auto"
    ) -> None:
        import jax
        import optax
        from flax import nnx

        from resnext_flax import create_model, import_weights
        from resnext_flax.train import forward, sgd, train_step

        self.nnx = nnx
        self.model = create_model(config=config, form=form, conv_impl=conv_impl)
        import_weights(self.model, weights)
        # The learning rate lives in the optimizer state, so an epoch's rate is set without recompiling.
        tx = optax.inject_hyperparams(sgd)(
            lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
        self.optimizer = nnx.Optimizer(self.model, tx, wrt=nnx.Param)
        self._step, self._forward, self._jax = train_step, forward, jax

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        self.optimizer.opt_state.hyperparams["lr"][...] = lr
        self.model.train()
        loss, logits = self._step(self.model, self.optimizer, x, y.astype(np.int32))
        return float(loss), int((np.asarray(logits).argmax(-1) == y).sum())

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        return np.asarray(self._forward(self.model, x))

    def weights(self) -> dict[str, np.ndarray]:
        from resnext_flax import export_weights

        return export_weights(self.model)

    def save(self, folder: str) -> None:
        from flax import serialization

        from resnext_flax import save_msgpack

        save_msgpack(self.model, os.path.join(folder, "flax.msgpack"))
        state = self._jax.tree.map(np.asarray, self.nnx.state(self.optimizer).to_pure_dict())
        atomic_write_bytes(
            os.path.join(folder, "flax_optimizer.msgpack"), serialization.msgpack_serialize(state)
        )

    def restore(self, folder: str) -> None:
        from flax import serialization

        from resnext_flax import load_msgpack

        saved = load_msgpack(os.path.join(folder, "flax.msgpack"))
        self.nnx.update(self.model, self.nnx.state(saved))
        with open(os.path.join(folder, "flax_optimizer.msgpack"), "rb") as f:
            # as jax arrays: msgpack hands back read-only numpy ones, which the next step writes into
            pure = self._jax.tree.map(self._jax.numpy.asarray, serialization.msgpack_restore(f.read()))
        state = self.nnx.state(self.optimizer)
        self.nnx.replace_by_pure_dict(state, pure)
        self.nnx.update(self.optimizer, state)


def make_engine(
    framework: str, config: ArchConfig, form: str, weights: dict, recipe: Recipe, conv_impl: str = "auto"
) -> Engine:
    if framework == "torch":
        return TorchEngine(config, form, weights, recipe)
    if framework == "keras":
        return KerasEngine(config, form, weights, recipe, conv_impl)
    if framework == "flax":
        return FlaxEngine(config, form, weights, recipe, conv_impl)
    raise ValueError(f"unknown framework {framework!r}; choose torch, keras or flax")
