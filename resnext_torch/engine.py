"""``TorchEngine``: a model, torch's SGD and one training step, as ``resnext-train`` runs them.

In a process group (torchrun), the model is wrapped in DistributedDataParallel
(gloo on CPU, nccl on GPU); the loop hands each process its shard of the global batch.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from resnext_spec import ArchConfig, atomic_write
from resnext_spec.training import HEAD, Recipe

from .distributed import convert_sync_batchnorm
from .model import create_model
from .weights import export_weights, import_weights


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
        # Fine-tuning: frozen parameters leave the optimizer (nothing moves them, weight decay
        # included) and their BatchNorms stay in eval mode; the head may have its own lr.
        n_stages = len(config.layers)
        frozen = {n for n, _ in self.model.named_parameters() if recipe.is_frozen(n, n_stages)}
        self.frozen_norms = [
            m
            for n, m in self.model.named_modules()
            if isinstance(m, torch.nn.BatchNorm2d) and recipe.is_frozen(n, n_stages)
        ]
        groups: dict[float, list] = {}
        for name, p in self.model.named_parameters():
            p.requires_grad_(name not in frozen)
            if name not in frozen:
                groups.setdefault(recipe.head_lr_scale if name.startswith(HEAD) else 1.0, []).append(p)
        self.optimizer = torch.optim.SGD(
            [{"params": ps, "lr_scale": scale} for scale, ps in groups.items()],
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )

    def _nchw(self, x: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(
            self.device, self.dtype
        )

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        torch = self.torch
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # checkpoints from before it have none
        self.model.train()
        for m in self.frozen_norms:
            m.eval()
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
        return export_weights(self.model)

    def save(self, folder: str) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        atomic_write(os.path.join(folder, "torch.pt"), lambda tmp: self.torch.save(state, tmp))

    def restore(self, folder: str) -> None:
        state = self.torch.load(os.path.join(folder, "torch.pt"), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
