"""The training recipe, the same in every framework: the paper's CIFAR settings by default."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Recipe:
    """SGD with momentum and torch-coupled weight decay; the learning rate /10 at each milestone.

    Defaults are the ResNeXt paper's CIFAR recipe (Xie et al. 2017, section 5.3):
    batch 128, lr 0.1, momentum 0.9, weight decay 5e-4, 300 epochs, lr divided by 10
    at 50% and 75% of training. Milestones are fractions of ``epochs``.
    """

    epochs: int = 300
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = (0.5, 0.75)
    seed: int = 0
    zero_init_residual: bool = False

    def __post_init__(self) -> None:
        problems = []
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
            raise ValueError("; ".join(problems))
        object.__setattr__(self, "milestones", ms)

    def milestone_epochs(self) -> list[int]:
        """The epochs (from 0) at whose start the learning rate drops."""
        return [round(m * self.epochs) for m in self.milestones]

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (from 0), as torch's MultiStepLR stepped once an epoch."""
        return self.lr / 10 ** sum(epoch >= m for m in self.milestone_epochs())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(**{**d, "milestones": tuple(d.get("milestones", (0.5, 0.75)))})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
