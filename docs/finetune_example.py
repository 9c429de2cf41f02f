"""The fine-tuning example of docs/backbones.md: a frozen backbone, a full fine-tune and training from
scratch, each in torch and in Flax, on image folders this script draws.

Task A (to pretrain on): stripes at one of four angles. Task B (to fine-tune on, 30 training
images a class): plain stripes, crossed stripes (a grid), or noise. A small ResNeXt is trained on
A with ``resnext-train`` and written as a torchvision/timm ``state_dict`` by ``resnext-port``;
``resnext-train --init-from`` then starts from that file, as it would from a timm one.

    python docs/finetune_example.py --out docs/results     # about 10 minutes on 2 CPU cores

Writes finetune.json (every epoch's metrics), finetune.md (the table) and finetune.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZE = 32
CONFIG = {"layers": [1, 1, 1], "cardinality": 4, "base_width": 8, "stem": "cifar", "num_classes": 4}
SETUPS = {  # name -> the resnext-train flags that make it
    "frozen backbone (linear probe)": ["--freeze", "backbone", "--head-lr", "0.1"],
    "full fine-tune": [],
    "from scratch": None,  # --config, no --init-from
}


def stripes(rng, angle: float, period: float) -> np.ndarray:
    y, x = np.mgrid[:SIZE, :SIZE]
    phase = rng.uniform(0, 2 * np.pi)
    return np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)


def draw(rng, task: str, label: int) -> np.ndarray:
    """One RGB image of ``task`` ("A" or "B") and class ``label``: a pattern in two random colours."""
    if task == "A":
        pattern = stripes(rng, label * np.pi / 4, rng.uniform(4, 8))
    elif label == 0:
        pattern = stripes(rng, rng.uniform(0, np.pi), rng.uniform(4, 8))
    elif label == 1:
        a = rng.uniform(0, np.pi)
        pattern = np.maximum(
            stripes(rng, a, rng.uniform(4, 8)), stripes(rng, a + np.pi / 2, rng.uniform(4, 8))
        )
    else:
        pattern = rng.uniform(-1, 1, (SIZE, SIZE))
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    mix = (pattern[..., None] + 1) / 2
    image = c0 * mix + c1 * (1 - mix) + rng.normal(0, 20, (SIZE, SIZE, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_task(root: str, task: str, classes: int, train: int, val: int, seed: int) -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for label in range(classes):
            folder = os.path.join(root, split, f"class{label}")
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                Image.fromarray(draw(rng, task, label)).save(os.path.join(folder, f"{i}.png"))
    return root


def run(*args: str) -> None:
    """A command of this project, as a user types it (``resnext-train``, ``resnext-port``)."""
    cmd = [sys.executable, "-m", "resnext_cli", *args]
    print("$ resnext " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/results")
    p.add_argument("--epochs", type=int, default=12, help="epochs of each fine-tune")
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--frameworks", default="torch,flax")
    args = p.parse_args(argv)
    frameworks = args.frameworks.split(",")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        task_a = write_task(os.path.join(work, "task_a"), "A", 4, train=200, val=40, seed=0)
        task_b = write_task(os.path.join(work, "task_b"), "B", 3, train=30, val=30, seed=1)
        config = os.path.join(work, "config.json")
        with open(config, "w") as f:
            json.dump(CONFIG, f)
        common = ["--image-size", str(SIZE), "--batch-size", "30", "--lr", "0.05", "-q"]
        pre = os.path.join(work, "pretrain")
        run("train", "--framework", "torch", "--config", config, "--data", task_a,
            "--epochs", str(args.pretrain_epochs), "--milestones", "0.75", "--out", pre, *common)  # fmt: skip
        source = os.path.join(work, "pretrained.pth")
        run("port", os.path.join(pre, "checkpoint", "model.safetensors"), source)
        with open(os.path.join(pre, "metrics.jsonl")) as f:
            pretrain = [json.loads(line) for line in f]
        results = {}
        for setup, flags in SETUPS.items():
            for fw in frameworks:
                out = os.path.join(work, f"{fw}-{len(results)}")
                start = ["--config", config] if flags is None else ["--init-from", source, *flags]
                run("train", "--framework", fw, *start, "--data", task_b, "--epochs", str(args.epochs),
                    "--milestones", "0.75", "--out", out, *common)  # fmt: skip
                with open(os.path.join(out, "metrics.jsonl")) as f:
                    results[f"{setup}, {fw}"] = [json.loads(line) for line in f]
    report = {
        "command": "python docs/finetune_example.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": CONFIG,
        "pretrain_task_a": pretrain[-1],
        "runs": results,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "finetune.json"), "w") as f:
        json.dump(report, f, indent=1)
    write_table(report, os.path.join(args.out, "finetune.md"))
    plot(report, os.path.join(args.out, "finetune.png"))
    return 0


def write_table(report: dict, path: str) -> None:
    lines = [
        "# Fine-tuning: frozen backbone, full fine-tune, from scratch",
        "",
        f"Made by `{report['command']}` ({report['seconds']:.0f} s); the setup is in",
        "[backbones.md](../backbones.md#fine-tuning). Pretrained on task A to test accuracy "
        f"{report['pretrain_task_a']['test_acc']:.3f}; task B has 3 classes, 30 training images each.",
        "",
        "| run | test accuracy after epoch 1 | final test accuracy | final train loss |",
        "|---|---|---|---|",
    ]
    for name, metrics in report["runs"].items():
        last = metrics[-1]
        lines.append(
            f"| {name} | {metrics[0]['test_acc']:.3f} | {last['test_acc']:.3f} | {last['train_loss']:.4f} |"
        )
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, metrics in report["runs"].items():
        style = "--" if name.endswith("flax") else "-"
        ax.plot(
            [m["epoch"] for m in metrics], [m["test_acc"] for m in metrics], style, marker="o", label=name
        )
    ax.set(
        xlabel="epoch",
        ylabel="test accuracy (task B)",
        ylim=(0, 1.02),
        title="fine-tuning a pretrained ResNeXt",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
