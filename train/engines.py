"""One small class per framework: a model, its optimizer and its step, behind the same methods.

The training loop (``train.loop``) is framework-free; it hands each engine the same
numpy batches (NHWC float32, int64 labels) and the learning rate of the epoch, and
reads back the loss, the number of correct predictions and, for evaluation, logits.
Each engine starts from the same canonical weights and steps with torch's SGD
(weight decay added to the gradient before momentum).

Data parallelism is each framework's own: torch DistributedDataParallel in every
process torchrun starts (the loop hands each its shard of the global batch), a
``jax.sharding.Mesh`` over devices in Flax and ``keras.distribution.DataParallel``
in Keras on JAX (the engine splits the batch over the devices). Either way a step
returns the loss and correct count of the whole global batch.
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
    rank: int  # this process, of ``world`` processes that each feed their shard of every batch
    world: int
    mesh_devices: list[str] | None  # the devices one process splits its batch over (Keras, Flax)

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


CPU_DEVICES_HINT = "on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N before start gives N devices"


def pick_devices(devices: int | str | None, available: list, batch_size: int) -> list | None:
    """The devices a Flax or Keras run shards its batch over (None: one device, no mesh).

    ``devices`` is a count or ``"all"``; the global batch must split evenly over them.
    """
    if devices in (None, 1, "1"):
        return None
    n = len(available) if devices == "all" else int(devices)
    if n < 1 or n > len(available):
        raise ValueError(
            f"--devices {devices}: this process sees {len(available)} device(s); {CPU_DEVICES_HINT}"
        )
    if batch_size % n:
        raise ValueError(f"a global batch of {batch_size} does not split evenly over {n} devices")
    return available[:n]


def padded(x: np.ndarray, multiple: int) -> np.ndarray:
    """``x`` with zero images appended to a multiple of ``multiple`` rows (an evaluation batch on a mesh)."""
    extra = -len(x) % multiple
    return np.concatenate([x, np.zeros((extra, *x.shape[1:]), x.dtype)]) if extra else x


class TorchEngine:
    framework = "torch"
    mesh_devices = None  # one device a process

    def __init__(
        self,
        config: ArchConfig,
        form: str,
        weights: dict,
        recipe: Recipe,
        float64: bool = False,
        sync_bn: bool = False,
        device: str = "cpu",
    ) -> None:
        """``float64`` trains in double precision: the truth a trajectory check measures against.

        In a process group (torchrun), the model is wrapped in DistributedDataParallel
        (gloo on CPU, nccl on GPU) and ``sync_bn`` normalises over the global batch.
        """
        import torch
        import torch.distributed as dist

        from resnext_torch import convert_sync_batchnorm, create_model, import_weights

        self.torch, self.dist = torch, dist
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rank = dist.get_rank() if self.world > 1 else 0
        self.dtype = torch.float64 if float64 else torch.float32
        self.device = torch.device(device)
        self.model = create_model(config=config, form=form)
        import_weights(self.model, weights)
        self.model.to(self.device, self.dtype)
        self.net = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            if sync_bn:  # its own group, so its reductions never interleave with DDP's gradient buckets
                convert_sync_batchnorm(self.model, dist.new_group())
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )

    def _nchw(self, x: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(
            self.device, self.dtype
        )

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        torch = self.torch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        labels = torch.from_numpy(y.astype(np.int64)).to(self.device)
        logits = self.net(self._nchw(x))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP, gradients are averaged over the processes here
        self.optimizer.step()
        correct = (logits.detach().argmax(1) == labels).sum()
        if self.world == 1:
            return float(loss.detach()), int(correct)
        sums = torch.tensor(  # on the model's device: nccl reduces CUDA tensors only
            [float(loss.detach()) * len(y), float(correct), len(y)], dtype=torch.float64, device=self.device
        )
        self.dist.all_reduce(sums)  # the global batch's mean loss and correct count, as one process sees
        return float(sums[0] / sums[2]), int(sums[1])

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self._nchw(x)).float().cpu().numpy()

    def weights(self) -> dict[str, np.ndarray]:
        from resnext_torch import export_weights

        return export_weights(self.model)

    def save(self, folder: str) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        atomic_write(os.path.join(folder, "torch.pt"), lambda tmp: self.torch.save(state, tmp))

    def restore(self, folder: str) -> None:
        state = self.torch.load(os.path.join(folder, "torch.pt"), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


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
        import contextlib

        import keras

        from resnext_keras import TorchSGD, create_model, import_weights

        self.keras = keras
        self.n_devices, self._scope, self.mesh_devices = 1, contextlib.nullcontext, None
        if devices not in (None, 1, "1"):
            backend = keras.backend.backend()
            if backend != "jax":
                raise ValueError(
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
            self.optimizer = TorchSGD(recipe.lr, recipe.momentum, recipe.weight_decay)
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
        import jax
        import optax
        from flax import nnx

        from resnext_flax import create_model, import_weights
        from resnext_flax.train import forward, sgd, train_step

        self.nnx, self._jax = nnx, jax
        self.rank, self.world = jax.process_index(), jax.process_count()
        available = jax.devices() if self.world > 1 else jax.local_devices()
        chosen = pick_devices(devices, available, recipe.batch_size)
        if self.world > 1 and (chosen is None or len(chosen) < len(available)):
            raise ValueError(f"across {self.world} processes, --devices all (each process feeds its shard)")
        self.model = create_model(config=config, form=form, conv_impl=conv_impl)
        import_weights(self.model, weights)
        # The learning rate lives in the optimizer state, so an epoch's rate is set without recompiling.
        tx = optax.inject_hyperparams(sgd)(
            lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
        self.optimizer = nnx.Optimizer(self.model, tx, wrt=nnx.Param)
        self._step, self._forward = train_step, forward
        self.mesh, self.mesh_devices = None, None
        if chosen is not None:
            from jax.sharding import AxisType, NamedSharding, PartitionSpec

            # Auto axes: XLA places the collectives (the explicit mode refuses the model's reshapes)
            self.mesh = jax.make_mesh((len(chosen),), ("batch",), devices=chosen, axis_types=(AxisType.Auto,))
            self._batch = NamedSharding(self.mesh, PartitionSpec("batch"))
            self._replicated = NamedSharding(self.mesh, PartitionSpec())
            self._correct = jax.jit(lambda logits, y: (logits.argmax(-1) == y).sum())
            self.mesh_devices = [str(d) for d in chosen]
            self._replicate()

    def _replicate(self) -> None:
        """Every parameter, statistic and optimizer slot on every device of the mesh."""
        state = self.nnx.state((self.model, self.optimizer))
        self.nnx.update((self.model, self.optimizer), self._jax.device_put(state, self._replicated))

    def _global(self, local: np.ndarray):
        """This process's rows as its part of a batch split over the mesh."""
        return self._jax.make_array_from_process_local_data(self._batch, local)

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        self.optimizer.opt_state.hyperparams["lr"][...] = lr
        self.model.train()
        y = y.astype(np.int32)
        if self.mesh is None:
            loss, logits = self._step(self.model, self.optimizer, x, y)
            return float(loss), int((np.asarray(logits).argmax(-1) == y).sum())
        x, y = self._global(x), self._global(y)
        loss, logits = self._step(self.model, self.optimizer, x, y)
        return float(loss), int(self._correct(logits, y))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Eval logits of the whole batch ``x`` (every process passes the same one)."""
        self.model.eval()
        if self.mesh is None:
            return np.asarray(self._forward(self.model, x))
        from jax.experimental import multihost_utils

        n, whole = len(x), padded(x, self.mesh.size)
        rows = len(whole) // self.world
        logits = self._forward(self.model, self._global(whole[self.rank * rows : (self.rank + 1) * rows]))
        return np.asarray(multihost_utils.process_allgather(logits, tiled=True))[:n]

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
        if self.mesh is not None:
            self._replicate()


def make_engine(
    framework: str,
    config: ArchConfig,
    form: str,
    weights: dict,
    recipe: Recipe,
    conv_impl: str = "auto",
    *,
    devices: int | str | None = None,
    sync_bn: bool = False,
    device: str = "cpu",
) -> Engine:
    """The engine of ``framework``; ``devices`` is Keras's and Flax's, ``sync_bn`` and ``device`` torch's."""
    if framework == "torch":
        if devices not in (None, 1, "1"):
            raise ValueError(
                "torch runs one process per device: torchrun --nproc-per-node N resnext-train ... "
                "(--devices is for Keras and Flax)"
            )
        return TorchEngine(config, form, weights, recipe, sync_bn=sync_bn, device=device)
    if sync_bn:
        raise ValueError(
            "--sync-bn is for torch: with --devices, Keras and Flax normalise over the global batch always"
        )
    if framework == "keras":
        return KerasEngine(config, form, weights, recipe, conv_impl, devices)
    if framework == "flax":
        return FlaxEngine(config, form, weights, recipe, conv_impl, devices)
    raise ValueError(f"unknown framework {framework!r}; choose torch, keras or flax")
