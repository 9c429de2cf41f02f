"""Joining the other processes of a data-parallel run, with each framework's own launcher.

torch: ``torchrun`` starts the processes and sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK`` and the rendezvous address; each joins a ``torch.distributed``
process group (gloo on CPU, nccl on GPU). Flax: one process per host, each calling
``jax.distributed.initialize()`` when ``JAX_COORDINATOR_ADDRESS`` is set (with
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, or a cluster JAX detects, e.g. SLURM).
Keras: one process, several devices (``keras.distribution``).
"""

from __future__ import annotations

import os

from resnext_spec.errors import ConfigError

TORCH_ENV = "WORLD_SIZE"
JAX_ENV = "JAX_COORDINATOR_ADDRESS"


def init_process_group(framework: str) -> int:
    """Join the run's other processes, if it has any; this process's rank (0 when alone).

    Nothing is imported or joined for a one-process run.
    """
    if framework == "torch" and int(os.environ.get(TORCH_ENV, "1")) > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank()
    if framework == "flax" and os.environ.get(JAX_ENV):
        import jax

        count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.distributed.initialize(
            num_processes=int(count) if count else None, process_id=int(index) if index else None
        )
        return jax.process_index()
    if framework == "keras" and os.environ.get(JAX_ENV):
        raise ConfigError(
            f"{JAX_ENV} is set: multi-host Keras is not supported here; "
            "run one process per host with --framework flax, or torch with torchrun"
        )
    return 0


def leave_process_group() -> None:
    """Tear down the torch process group this process joined (a no-op otherwise)."""
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
