"""BatchNorm over every process's batch, for DistributedDataParallel training on CPU or GPU.

``torch.nn.SyncBatchNorm`` normalises by the statistics of the global batch, but it
runs on GPUs only (it refuses CPU tensors). :class:`GlobalBatchNorm2d` computes the
same statistics with ``torch.distributed``'s differentiable ``all_reduce``, so a
data-parallel run with gloo on CPU steps like one process with the whole batch.
:func:`convert_sync_batchnorm` picks torch's own layer on GPU and this one on CPU.
Both keep ``BatchNorm2d``'s state-dict names, so checkpoints do not change.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SumOverProcesses(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient, which is the same sum of the processes' gradients.

    (``torch.distributed.nn.functional.all_reduce`` did this and is deprecated; its
    successor in ``_functional_collectives`` has no autograd.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
        ctx.group = group
        total = x.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose train-mode mean and variance are over the batches of every process.

    Two sums are all-reduced per layer (two passes, as one-process BN computes its
    variance): ``sum(x)`` with the pixel count, then ``sum((x - mean)^2)``. The
    reductions are differentiable, so each process's gradient carries the other
    processes' share through the statistics, as in one process. The running
    variance takes the unbiased estimate over the global count, as ``BatchNorm2d``
    does over its batch. In eval mode, or with one process, it is ``BatchNorm2d``.
    """

    def __init__(self, *args, group: dist.ProcessGroup | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size(self.group) > 1):
            return super().forward(x)

        def all_reduce(t: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
            return _SumOverProcesses.apply(t, group)

        c = x.shape[1]
        local = torch.cat([x.sum((0, 2, 3)), x.new_tensor([x.numel() // c])])
        total = all_reduce(local, group=self.group)
        count = total[c].detach()
        mean = total[:c] / count
        centred = x - mean.view(1, c, 1, 1)
        var = all_reduce(centred.square().sum((0, 2, 3)), group=self.group) / count
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                # momentum None is BatchNorm2d's cumulative average
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (count / (count - 1)), alpha=m)
        return y


def convert_sync_batchnorm(model: nn.Module, group: dist.ProcessGroup | None = None) -> nn.Module:
    """Every ``BatchNorm2d`` of ``model`` normalised over the global batch; same parameters and buffers.

    On CUDA, torch's ``SyncBatchNorm`` (its fused kernels); elsewhere :class:`GlobalBatchNorm2d`.
    ``group`` is the process group the statistics are reduced over (default: all processes).
    """
    if next(model.parameters()).is_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model, group)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                bn = GlobalBatchNorm2d(
                    child.num_features,
                    child.eps,
                    child.momentum,
                    child.affine,
                    child.track_running_stats,
                    group=group,
                    device=child.running_mean.device,
                    dtype=child.running_mean.dtype,
                )
                bn.load_state_dict(child.state_dict())
                bn.train(child.training)
                setattr(parent, name, bn)
    return model
