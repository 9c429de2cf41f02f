"""`resnext-parity` on the command line: table, JSON, progress, and exit codes 0 / 1 / 2."""

import json

import numpy as np
import pytest

import parity.harness
from parity.cli import main
from parity.runners import make_runner

pytestmark = pytest.mark.keras

QUICK = [
    "--models",
    "resnet18",
    "--forms",
    "c",
    "--checks",
    "counts,eval",
    "--image-size",
    "32",
    "--batch-size",
    "2",
]


def test_passing_run_prints_the_table_writes_json_and_plot_and_exits_0(tmp_path, capsys):
    path, plot = tmp_path / "out" / "report.json", tmp_path / "out" / "report.png"
    assert main([*QUICK, "--frameworks", "torch,keras,flax", "--json", str(path), "--plot", str(plot)]) == 0
    out, err = capsys.readouterr()
    assert "resnet18: every build against torch form (c)" in out and "PASS" in out
    assert "9 passed, 0 failed" in out  # 3 builds x (count, eval logits, eval stage outputs)
    assert "resnet18: keras (c)" in err  # progress on stderr
    data = json.loads(path.read_text())
    assert data["passed"] is True and len(data["results"]) == 9
    assert {"torch", "keras", "flax", "numpy"} <= set(data["meta"]["versions"])
    row = next(r for r in data["results"] if r["framework"] == "flax" and r["check"] == "eval")
    assert row["error"] <= row["bound"] and row["floor"] is not None
    stages = next(r for r in data["results"] if r["framework"] == "keras" and r["quantity"] == "stages")
    assert list(stages["stages"]) == ["stem", "layer1", "layer2", "layer3", "layer4", "pool"]
    assert max(stages["stages"].values()) == stages["error"] <= stages["bound"]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_quiet_prints_no_progress(capsys):
    assert main([*QUICK, "--frameworks", "torch", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_failing_check_exits_1_and_names_it(monkeypatch, capsys):
    def faulty(framework, *args):
        runner = make_runner(framework, *args)
        if framework == "keras":
            load = runner.load

            def transposed(model, weights):
                w = dict(weights)
                w["layer1.0.conv1.weight"] = np.ascontiguousarray(
                    w["layer1.0.conv1.weight"].transpose(0, 1, 3, 2)
                )
                load(model, w)

            runner.load = transposed
        return runner

    monkeypatch.setattr(parity.harness, "make_runner", faulty)
    assert main([*QUICK, "--frameworks", "torch,keras", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAIL resnet18 keras (c) eval/logits" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "resnext50_32x4"], "did you mean 'resnext50_32x4d'"),
        (["--forms", "d"], "unknown form"),
        (["--frameworks", "jax"], "unknown framework"),
        (["--checks", "evl"], "unknown check"),
        (["--batch-size", "1"], "--batch-size must be >= 2"),
        (["--device", "tpu"], "invalid choice"),
        (["--precision", "float16"], "invalid choice"),
        (["--checks", "trajectory", "--precision", "float64"], "trajectory check runs on CPU in float32"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_float64_and_bf16_runs_name_their_precision(capsys):
    assert main([*QUICK, "--frameworks", "torch", "--quiet", "--precision", "float64"]) == 0
    out = capsys.readouterr().out
    assert "float64" in out and "eval 0.0e+00/1e-12" in out  # torch (c) against itself, float64 bound
    assert main([*QUICK, "--frameworks", "torch", "--quiet", "--precision", "bf16"]) == 0
    assert "bfloat16 (shown, not judged), torch: eval logits" in capsys.readouterr().out
