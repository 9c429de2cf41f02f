"""Training throughput of resnext-train on 1 and 2 workers (torchrun, Flax mesh, Keras DataParallel).

Each row is a whole `resnext-train` run in its own process(es) on a CIFAR-10 archive of
random learnable images written here, two epochs; the figure is the second epoch's
img/s (training steps only, after the first epoch's compiling and warm-up). On CPU,
"2 devices" for JAX are two XLA host devices sharing the same cores.

    python -m resnext_bench.data_parallel --json docs/results/cpu_data_parallel.json
    python -m resnext_bench.data_parallel --rows torch:1,flax:1,keras:1 --model resnext29_8x64d  # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from resnext_data.synthetic import write_cifar
from resnext_spec import ArchConfig

# Small enough for 2 CPU cores: ResNeXt-29's shape with one block a stage, 8 paths of 16.
SMALL = ArchConfig(layers=(1, 1, 1), cardinality=8, base_width=16, stem="cifar", num_classes=10)
HOST_DEVICES = "--xla_force_host_platform_device_count="


def command(row: str, args, folder: str) -> tuple[list[str], dict]:
    """The command and environment of one row, ``framework:workers[sync]``."""
    framework, workers = row.split(":")
    sync = workers.endswith("sync")
    n = int(workers.removesuffix("sync"))
    train = [sys.executable, "-m", "resnext_train"]
    if framework == "torch" and n > 1:
        train = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={n}",
            "-m",
            "train",
        ]
    model = (
        ["--config", os.path.join(folder, "model.json")] if args.model == "small" else ["--model", args.model]
    )
    cmd = [*train, "--framework", framework.split("-")[0], *model, "--data", os.path.join(folder, "data")]
    cmd += ["--epochs", "2", "--batch-size", str(args.batch), "--out", os.path.join(folder, row), "-q"]
    env = dict(os.environ)
    if framework.startswith("keras"):
        cmd += ["--keras-backend", "jax"]
    if framework != "torch" and n > 1:
        cmd += ["--num-devices", str(n)]
        if not args.gpu:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {HOST_DEVICES}{n}".strip()
    if sync:
        cmd.append("--sync-bn")
    return cmd, env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="torch:1,torch:2,torch:2sync,flax:1,flax:2,keras:1,keras:2")
    p.add_argument("--model", default="small", help="a preset, or 'small' (see SMALL)")
    p.add_argument("--images", type=int, default=512, help="training images (the test split is 64)")
    p.add_argument("--batch", type=int, default=64, help="the global batch")
    p.add_argument("--gpu", action="store_true", help="JAX rows use the real devices, not host ones")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_cifar(
            os.path.join(folder, "data"), "cifar10-bin", n_train=args.images, n_test=64, learnable=True
        )
        with open(os.path.join(folder, "model.json"), "w") as f:
            json.dump(SMALL.to_dict(), f)
        for row in args.rows.split(","):
            cmd, env = command(row, args, folder)
            t = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t
            if done.returncode:
                print(f"{row}: exit {done.returncode}\n{done.stderr[-2000:]}", file=sys.stderr)
                rows.append({"row": row, "error": done.stderr[-500:]})
                continue
            with open(os.path.join(folder, row, "metrics.jsonl")) as f:
                metrics = [json.loads(line) for line in f]
            rows.append(
                {
                    "row": row,
                    "img_s": metrics[-1]["img_s"],
                    "first_epoch_img_s": metrics[0]["img_s"],
                    "train_loss": metrics[-1]["train_loss"],
                    "wall_s": wall,
                }
            )
            last, first = metrics[-1]["img_s"], metrics[0]["img_s"]
            print(f"{row:12s} {last:8.1f} img/s  (epoch 1: {first:.1f}; {wall:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"model": args.model, "batch": args.batch, "images": args.images, "rows": rows}, f, indent=2
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
