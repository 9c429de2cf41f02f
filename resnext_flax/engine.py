"""``FlaxEngine``: a jitted ``train_step`` with the torch-coupled SGD in optax.

``devices`` shards each batch over a one-axis ``jax.sharding.Mesh``.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import optax
from flax import nnx, serialization
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from resnext_spec import ArchConfig
from resnext_spec.checkpoint import atomic_write_bytes
from resnext_spec.errors import ConfigError
from resnext_spec.training import HEAD, Recipe, padded, pick_devices

from .model import BatchNorm, create_model
from .train import finetune_sgd, forward, sgd, train_step
from .weights import export_weights, import_weights, load_msgpack, save_msgpack, submodule, weight_table


class FlaxEngine:
    framework = "flax"

    def __init__(
        self,
        config: ArchConfig,
        form: str,
        weights: dict,
        recipe: Recipe,
        conv_impl: str = "auto",
        devices: int | str | None = None,
    ) -> None:
        """``devices`` (a count or ``"all"``) shards each batch over a one-axis ``jax.sharding.Mesh``.

        Parameters, statistics and optimizer state are replicated; the batch axis is
        split, so XLA computes the loss and every BN statistic over the global batch.
        Across hosts (after ``jax.distributed.initialize()``), ``"all"`` is every
        process's devices and each process feeds its shard of the batch.
        """
        self.nnx, self._jax = nnx, jax
        self.rank, self.world = jax.process_index(), jax.process_count()
        available = jax.devices() if self.world > 1 else jax.local_devices()
        chosen = pick_devices(devices, available, recipe.batch_size)
        if self.world > 1 and (chosen is None or len(chosen) < len(available)):
            raise ConfigError(
                f"across {self.world} processes, --num-devices all (each process feeds its shard)"
            )
        self.model = create_model(config=config, form=form, conv_impl=conv_impl)
        import_weights(self.model, weights)
        # The learning rate lives in the optimizer state, so an epoch's rate is set without recompiling.
        hp = dict(lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
        n_stages = len(config.layers)
        if recipe.freeze == "none" and recipe.head_lr is None:
            tx = optax.inject_hyperparams(sgd)(**hp)
        else:  # fine-tuning: parameter groups, as torch's
            tx = optax.inject_hyperparams(finetune_sgd, static_args="labels")(
                **hp, head_lr_scale=recipe.head_lr_scale, labels=self._labels(recipe, n_stages)
            )
        # Frozen BatchNorms stay in eval mode: their statistics do not move either.
        self.frozen_norms = [
            submodule(self.model, name.rsplit(".", 1)[0])
            for name, _, _ in weight_table(self.model)
            if name.endswith(".running_mean") and recipe.is_frozen(name, n_stages)
        ]
        assert all(isinstance(bn, BatchNorm) for bn in self.frozen_norms)
        self.optimizer = nnx.Optimizer(self.model, tx, wrt=nnx.Param)
        # nnx.jit walks the module graph on every call (58 ms a ResNet-50 step on CPU, issue 28);
        # nnx.jit_partial flattens model and optimizer once. Made at first use, in the mode it
        # runs in: a partial keeps the structure (train/eval, frozen BNs) it was made with.
        self._step = self._forward = None
        self.mesh, self.mesh_devices = None, None
        if chosen is not None:
            # Auto axes: XLA places the collectives (the explicit mode refuses the model's reshapes)
            self.mesh = jax.make_mesh((len(chosen),), ("batch",), devices=chosen, axis_types=(AxisType.Auto,))
            self._batch = NamedSharding(self.mesh, PartitionSpec("batch"))
            self._replicated = NamedSharding(self.mesh, PartitionSpec())
            self._correct = jax.jit(lambda logits, y: (logits.argmax(-1) == y).sum())
            self.mesh_devices = [str(d) for d in chosen]
            self._replicate()

    def _labels(self, recipe: Recipe, n_stages: int):
        """The parameter group of every parameter, as a pytree like ``nnx.state(model, nnx.Param)``."""
        group = {}
        for name, var, _ in weight_table(self.model):
            if recipe.is_frozen(name, n_stages):
                group[id(var)] = "frozen"
            else:
                group[id(var)] = "head" if name.startswith(HEAD) else "body"
        params = self.nnx.state(self.model, self.nnx.Param)
        return self._jax.tree.map(
            lambda v: group[id(v)], params, is_leaf=lambda x: isinstance(x, self.nnx.Variable)
        )

    def _replicate(self) -> None:
        """Every parameter, statistic and optimizer slot on every device of the mesh."""
        state = self.nnx.state((self.model, self.optimizer))
        self.nnx.update((self.model, self.optimizer), self._jax.device_put(state, self._replicated))

    def _global(self, local: np.ndarray):
        """This process's rows as its part of a batch split over the mesh."""
        return self._jax.make_array_from_process_local_data(self._batch, local)

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        self.optimizer.opt_state.hyperparams["lr"][...] = lr
        if self._step is None:
            self.model.train()
            for bn in self.frozen_norms:
                bn.use_running_average = True
            self._step = nnx.jit_partial(train_step.fun, self.model, self.optimizer, graph=False)
        y = y.astype(np.int32)
        if self.mesh is None:
            loss, logits = self._step(x, y)
            return float(loss), int((np.asarray(logits).argmax(-1) == y).sum())
        x, y = self._global(x), self._global(y)
        loss, logits = self._step(x, y)
        return float(loss), int(self._correct(logits, y))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Eval logits of the whole batch ``x`` (every process passes the same one)."""
        if self._forward is None:
            self.model.eval()
            self._forward = nnx.jit_partial(forward.fun, self.model, graph=False)
            self.model.train()  # the model object stays in training mode; the partial keeps eval
        if self.mesh is None:
            return np.asarray(self._forward(x))
        n, whole = len(x), padded(x, self.mesh.size)
        rows = len(whole) // self.world
        logits = self._forward(self._global(whole[self.rank * rows : (self.rank + 1) * rows]))
        return np.asarray(multihost_utils.process_allgather(logits, tiled=True))[:n]

    def weights(self) -> dict[str, np.ndarray]:
        return export_weights(self.model)

    def save(self, folder: str) -> None:
        save_msgpack(self.model, os.path.join(folder, "flax.msgpack"))
        state = self._jax.tree.map(np.asarray, self.nnx.state(self.optimizer).to_pure_dict())
        atomic_write_bytes(
            os.path.join(folder, "flax_optimizer.msgpack"), serialization.msgpack_serialize(state)
        )

    def restore(self, folder: str) -> None:
        saved = load_msgpack(os.path.join(folder, "flax.msgpack"))
        self.nnx.update(self.model, self.nnx.state(saved))
        with open(os.path.join(folder, "flax_optimizer.msgpack"), "rb") as f:
            # as jax arrays: msgpack hands back read-only numpy ones, which the next step writes into
            pure = self._jax.tree.map(self._jax.numpy.asarray, serialization.msgpack_restore(f.read()))
        state = self.nnx.state(self.optimizer)
        self.nnx.replace_by_pure_dict(state, pure)
        self.nnx.update(self.optimizer, state)
        if self.mesh is not None:
            self._replicate()
