"""The one-call GPU script runs end to end: a dry run on CPU, on a tiny model, every part.

A GPU machine is lent rarely and briefly, so the script must not fail there on a typo.
With DEVICE=cpu and small settings it runs every part on this machine: each part
starts, ends, and writes its JSON; Keras's float64 refusal is printed with its reason.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "resnext_bench" / "gpu_run.sh"

# The parts that must succeed on any machine (torchvision, absent from this CPU machine, is not one).
MUST_PASS = ["parity-fp32", "parity-float64", "trajectory", "bench-torch", "bench-flax", "bench-keras"]


# Full tier: every part spawns its own processes (the bench rows one each), 143 s on 2 cores,
# more than the fast tier's 10 minutes have room for.
@pytest.mark.slow
@pytest.mark.first_backend_only  # the script sets Keras's backend itself
def test_the_gpu_script_dry_runs_on_cpu_every_part_ending_with_its_figures(tmp_path):
    env = os.environ | {
        "OUT": str(tmp_path),
        "DEVICE": "cpu",
        "MODEL": "resnet10t",  # the smallest ImageNet preset (timm's: tiered stem, avg_down)
        "PARITY_IMAGE_SIZE": "32",
        "IMAGE_SIZE": "32",
        "BATCH": "2",
        "BENCH_MODELS": "resnet10t",
        "BENCH_MODES": "infer",
        "BUDGET_S": "600",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # python3 = this one
    }
    run = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    out = run.stdout + run.stderr
    exits = {
        line.split(":")[0].removeprefix("=== "): int(line.split("exit ")[1].split()[0])
        for line in run.stdout.splitlines()
        if line.startswith("=== ") and ": exit " in line
    }
    for part in MUST_PASS:
        assert exits.get(part) == 0, (part, exits, out[-3000:])
    assert exits["keras-float64"] == 2 and "computes parts of a float64 model in float32" in out
    assert "=== done in" in run.stdout
    fp32 = json.loads((tmp_path / "parity_gpu.json").read_text())
    assert fp32["passed"] and fp32["meta"]["models"] == ["resnet10t"]
    assert {r["framework"] for r in fp32["results"]} >= {"torch", "keras", "flax"}
    float64 = json.loads((tmp_path / "parity_gpu_float64.json").read_text())
    assert float64["passed"] and float64["meta"]["precision"] == "float64"
    for name in ("trajectory", "bench_torch", "bench_flax", "bench_keras"):
        assert (tmp_path / f"{name}.json").stat().st_size > 0, name
