"""What every framework's training engine shares: the recipe, the engine's methods, device choice.

The three framework packages each hold one engine (``resnext_torch.TorchEngine``,
``resnext_keras.KerasEngine``, ``resnext_flax.FlaxEngine``): a model, its optimizer
and its step behind the methods of :class:`Engine`. ``resnext-train``'s loop and the
harness's trajectory check hand every engine the same numpy batches (NHWC float32,
int64 labels) and the learning rate of the step, so the step a user trains with is
the step the harness checks. Each engine starts from the same canonical weights and
steps with torch's SGD (weight decay added to the gradient before momentum).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """SGD with momentum and torch-coupled weight decay; the learning rate /10 at each milestone.

    Defaults are the ResNeXt paper's CIFAR recipe (Xie et al. 2017, section 5.3):
    batch 128, lr 0.1, momentum 0.9, weight decay 5e-4, 300 epochs, lr divided by 10
    at 50% and 75% of training. Milestones are fractions of ``epochs``.

    Fine-tuning: ``freeze`` keeps part of the network exactly as loaded -- its parameters
    out of the optimizer and its BatchNorms in eval mode, so their statistics do not move
    either: ``"none"``, ``"stem"``, ``"stages-K"`` (the stem and stages 1..K) or
    ``"backbone"`` (all but the classifier: a linear probe). ``head_lr`` is the
    classifier's own learning rate (None: ``lr``), following the same milestones.
    """

    epochs: int = 300
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = (0.5, 0.75)
    seed: int = 0
    zero_init_residual: bool = False
    freeze: str = "none"
    head_lr: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not FREEZE.fullmatch(str(self.freeze)):
            problems.append(f"freeze must be none, stem, stages-K (K >= 1) or backbone, got {self.freeze!r}")
        if self.head_lr is not None and not self.head_lr > 0:
            problems.append(f"head lr must be > 0, got {self.head_lr}")
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            problems.append(f"epochs must be a whole number >= 1, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 2):
            problems.append(
                f"batch size must be a whole number >= 2 (train-mode BN), got {self.batch_size!r}"
            )
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:
            problems.append(f"weight decay must be >= 0, got {self.weight_decay}")
        ms = tuple(self.milestones)
        if any(not 0 < m < 1 for m in ms) or list(ms) != sorted(set(ms)):
            problems.append(f"milestones must be increasing fractions of training in (0, 1), got {ms}")
        if problems:
            raise ConfigError("; ".join(problems))
        object.__setattr__(self, "milestones", ms)

    def milestone_epochs(self) -> list[int]:
        """The epochs (from 0) at whose start the learning rate drops."""
        return [round(m * self.epochs) for m in self.milestones]

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (from 0), as torch's MultiStepLR stepped once an epoch."""
        return self.lr / 10 ** sum(epoch >= m for m in self.milestone_epochs())

    @property
    def head_lr_scale(self) -> float:
        """The classifier's learning rate over everyone else's (1 without ``head_lr``)."""
        return 1.0 if self.head_lr is None else self.head_lr / self.lr

    def frozen_prefixes(self, num_stages: int) -> tuple[str, ...]:
        """The canonical-name prefixes ``freeze`` holds still in a network of ``num_stages`` stages."""
        if self.freeze == "none":
            return ()
        stages = num_stages if self.freeze == "backbone" else 0
        if self.freeze.startswith("stages-"):
            stages = int(self.freeze.split("-")[1])
            if stages > num_stages:
                raise ConfigError(f"freeze {self.freeze}: the network has {num_stages} stages")
        # The stem: torchvision's conv1/bn1, timm's deep stem (conv1.0 ... conv1.6, bn1) and
        # ResNet-RS's strided conv in the max-pool's place (maxpool.0, .1); a pre-activation
        # network's final norm is the backbone's last layer (timm's forward_features ends on it).
        final = ("norm.",) if self.freeze == "backbone" else ()
        return ("conv1.", "bn1.", "maxpool.", *(f"layer{s + 1}." for s in range(stages)), *final)

    def is_frozen(self, name: str, num_stages: int) -> bool:
        """Whether the canonical tensor or layer ``name`` stays as loaded."""
        return (name + ".").startswith(self.frozen_prefixes(num_stages))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(**{**d, "milestones": tuple(d.get("milestones", (0.5, 0.75)))})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


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


FREEZE = re.compile(r"none|stem|backbone|stages-[1-9]\d*")
HEAD = "fc."  # the classifier's canonical prefix: what head_lr applies to

CPU_DEVICES_HINT = "on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N before start gives N devices"


def pick_devices(devices: int | str | None, available: list, batch_size: int) -> list | None:
    """The devices a Flax or Keras run shards its batch over (None: one device, no mesh).

    ``devices`` is a count or ``"all"``; the global batch must split evenly over them.
    """
    if devices in (None, 1, "1"):
        return None
    n = len(available) if devices == "all" else int(devices)
    if n < 1 or n > len(available):
        raise ConfigError(
            f"--num-devices {devices}: this process sees {len(available)} device(s); {CPU_DEVICES_HINT}"
        )
    if batch_size % n:
        raise ConfigError(f"a global batch of {batch_size} does not split evenly over {n} devices")
    return available[:n]


def padded(x: np.ndarray, multiple: int) -> np.ndarray:
    """``x`` with zero images appended to a multiple of ``multiple`` rows (an evaluation batch on a mesh)."""
    extra = -len(x) % multiple
    return np.concatenate([x, np.zeros((extra, *x.shape[1:]), x.dtype)]) if extra else x
