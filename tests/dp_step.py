"""One synchronised-BN step of TorchEngine in two torchrun processes, at a chosen precision.

Run by tests/test_data_parallel.py as
``python -m torch.distributed.run --nproc-per-node 2 tests/dp_step.py BATCH.npz CONFIG.json RECIPE.json
OUT.npz float32|float64``: each process takes its half of the global batch (rows ``rank * b :
(rank + 1) * b``, as resnext-train's shards) and rank 0 saves the stepped weights, unrounded.

The float64 run is what makes the data-parallel check independent of the CPU: two fp32
processes reduce in another order than one, and train-mode gradients amplify that rounding
(a BN bias 4.2e-4 off on an AVX-512 CPU, under the old 1e-5 bound on AVX2), while in float64
the same step landed 9.5e-15 from one process's.
"""

import json
import sys

import numpy as np
import torch.distributed as dist

from resnext_spec import ArchConfig, init_weights
from resnext_torch import TorchEngine
from resnext_train import Recipe


def main(batch_file: str, config_file: str, recipe_file: str, out: str, precision: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    with open(config_file) as f:
        config = ArchConfig.from_json(f.read())
    data = np.load(batch_file)
    x, y, lr = data["x"], data["y"], float(data["lr"])
    with open(recipe_file) as f:
        recipe = Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.load(f).items()})
    engine = TorchEngine(
        config,
        "c",
        init_weights(config, "c", recipe.seed),
        recipe,
        float64=precision == "float64",
        sync_bn=True,
    )
    b = len(x) // world
    engine.train_step(x[rank * b : (rank + 1) * b], y[rank * b : (rank + 1) * b], lr)
    if rank == 0:
        state = engine.model.state_dict()
        np.savez(out, **{k: v.detach().double().numpy() for k, v in state.items() if "num_batches" not in k})
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:6])
