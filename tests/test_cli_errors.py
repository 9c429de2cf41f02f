"""Every command's exit codes: 2 and one line for bad input, with nothing written; 3 and the traceback
for a bug. A bug must never read as bad input (which a `except ValueError` once made of any numpy
error), and bad input must never cost a traceback."""

import pytest
import torch

import resnext_cli
from parity import cli as parity_cli
from resnext_bench import cli as bench_cli
from resnext_explain import cli as explain_cli
from resnext_export import cli as export_cli
from resnext_port import cli as port_cli
from resnext_spec import ConfigError, ResNeXtError
from resnext_train import cli as train_cli

NO_GPU = not torch.cuda.is_available()


def junk(folder, name: str) -> str:
    path = folder / name
    path.write_bytes(b"not a checkpoint\n" * 3)
    return str(path)


def bad_inputs(tmp):
    """(command, argv) pairs that are each bad input, with every output aimed into ``tmp/out``."""
    out = tmp / "out"
    cases = [
        (parity_cli, ["--models", "resnet51", "--json", str(out)]),
        (parity_cli, ["--models", "tiny,", "--frameworks", "torch"]),
        (parity_cli, ["--batch-size", "1", "--json", str(out)]),
        (parity_cli, ["--checks", "trajectory", "--precision", "float64", "--json", str(out)]),
        (port_cli, [str(tmp / "missing.pth"), str(out / "m.safetensors")]),
        (port_cli, [junk(tmp, "junk.pth"), str(out / "m.safetensors")]),
        (port_cli, [junk(tmp, "junk.safetensors"), str(out / "m.msgpack")]),
        (port_cli, [junk(tmp, "junk.weights.h5"), str(out / "m.pth"), "--model", "resnet18"]),
        (train_cli, ["--framework", "torch", "--config", str(tmp / "none.json"), "--data", str(tmp)]),
        (train_cli, ["--framework", "torch", "--config", junk(tmp, "bad.json"), "--data", str(tmp)]),
        (
            train_cli,
            ["--framework", "torch", "--model", "resnet18", "--data", str(tmp / "no"), "--out", str(out)],
        ),
        (train_cli, ["--framework", "torch", "--model", "resnet18", "--data", str(tmp), "--lr", "-1"]),
        (
            train_cli,
            ["--framework", "keras", "--model", "resnet18", "--data", str(tmp), "--num-devices", "0"],
        ),
        (bench_cli, ["--config", str(tmp / "none.json"), "--json", str(out)]),
        (bench_cli, ["--batch-size", "0"]),
        (explain_cli, ["resnext26_8x16d", "--block", "layer9.0", "--json", str(out)]),
        (explain_cli, ["resnet18"]),
        (export_cli, ["resnet51", "--framework", "torch", "--out", str(out / "m.onnx")]),
        (export_cli, ["resnet18", "--framework", "torch", "--out", str(out / "m.tflite")]),
        (export_cli, ["resnet18", "--framework", "torch", "--form", "a", "--out", str(out / "m.pt2")]),
        (export_cli, ["resnet18", "--framework", "flax", "--out", str(out / "m.bin")]),
        (export_cli, [junk(tmp, "junk2.pth"), "--framework", "torch", "--out", str(out / "m.pt2")]),
        (export_cli, [str(tmp / "none.json"), "--framework", "flax", "--out", str(out / "m.onnx")]),
    ]
    if NO_GPU:  # --device gpu on a machine without one: refused before any work
        cases += [
            (parity_cli, ["--device", "gpu", "--json", str(out)]),
            (bench_cli, ["--device", "gpu", "--frameworks", "torch", "--json", str(out)]),
        ]
    return cases


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    for command, argv in bad_inputs(tmp_path):
        before = sorted(tmp_path.rglob("*"))
        code = command.main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        where = f"{command.__name__} {argv}"
        assert code == 2, f"{where}: exit {code}\n{err}"
        # progress lines may come first (resnext-port says what it reads); the error is one line, last
        said = [line for line in lines if line.startswith("resnext-")]
        assert len(said) == 1 and said[0] == lines[-1] and "Traceback" not in err, f"{where}: {err}"
        assert sorted(tmp_path.rglob("*")) == before, f"{where} wrote something"


@pytest.mark.skipif(not NO_GPU, reason="a GPU is here")
def test_device_gpu_without_one_is_named(capsys):
    assert parity_cli.main(["--device", "gpu"]) == 2
    assert "--device gpu" in capsys.readouterr().err
    assert bench_cli.main(["--device", "gpu", "--frameworks", "torch,flax"]) == 2
    assert "sees a GPU" in capsys.readouterr().err


def _broken(*_, **__):
    raise IndexError("index 3 is out of bounds for axis 0 with size 3")  # what a bug looks like


@pytest.mark.parametrize(
    "command, target, argv",
    [
        (parity_cli, "run_parity", ["--models", "resnet18", "--frameworks", "torch"]),
        (port_cli, "port", ["a.pth", "b.safetensors"]),
        (bench_cli, "run_bench", ["--models", "resnet18"]),
        (explain_cli, "explain", ["resnext26_8x16d"]),
        (export_cli, "export", ["resnet18", "--framework", "torch", "--out", "m.onnx"]),
    ],
    ids=["parity", "port", "bench", "explain", "export"],
)
def test_a_bug_exits_3_with_its_traceback(command, target, argv, monkeypatch, capsys):
    monkeypatch.setattr(command, target, _broken)
    assert command.main(argv) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "IndexError: index 3 is out of bounds" in err
    assert "a bug, not bad input" in err


def test_a_bug_in_training_exits_3_with_its_traceback(tmp_path, monkeypatch, capsys):
    import resnext_train.loop

    monkeypatch.setattr(resnext_train.loop, "train", _broken)
    argv = [
        "--framework",
        "torch",
        "--model",
        "resnet18",
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    assert train_cli.main(argv) == 3
    assert "IndexError" in capsys.readouterr().err


def test_a_bug_inside_a_reader_is_not_called_a_damaged_file(tmp_path, monkeypatch, capsys):
    """The readers catch what a library raises on damaged bytes; an error of the code itself
    (here in the shape inference every .pth goes through) surfaces as the bug it is."""
    import sys

    import resnext_torch as rt

    src = tmp_path / "m.pth"
    torch.save(rt.create_model("resnet18").state_dict(), src)
    monkeypatch.setattr(sys.modules["resnext_formats.read"], "infer_config", _broken)
    assert port_cli.main([str(src), str(tmp_path / "m.safetensors")]) == 3
    assert "IndexError" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_the_error_base_class_is_not_a_value_error():
    assert not issubclass(ResNeXtError, ValueError) and issubclass(ConfigError, ResNeXtError)


def test_resnext_lists_its_verbs_and_runs_each_as_its_own_command(capsys):
    assert resnext_cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {verb}" in listed for verb in ("parity", "port", "train", "bench", "explain"))
    for verb, command in [("port", port_cli), ("train", train_cli), ("explain", explain_cli)]:
        with pytest.raises(SystemExit) as own:
            command.parser().parse_args(["--help"])
        own_help = capsys.readouterr().out
        assert resnext_cli.main([verb, "--help"]) == 0
        assert capsys.readouterr().out == own_help and own.value.code == 0
    assert resnext_cli.main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_resnext_version_names_the_package_and_its_frameworks():
    import subprocess
    import sys
    from importlib import metadata

    run = subprocess.run(
        [sys.executable, "-c", "import resnext_cli, sys; sys.exit(resnext_cli.main(['--version']))"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.count("\n") == 1
    assert f"resnext-three-ways {metadata.version('resnext-three-ways')}" in run.stdout
    for dist in ("torch", "keras", "jax", "flax"):
        assert f"{dist} {metadata.version(dist)}" in run.stdout, dist


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--framework", "torch", "--model", "resnxt50_32x4d"],
        ["export", "resnxt50_32x4d", "--framework", "torch", "--out", "x.onnx"],
        ["bench", "--models", "resnxt50_32x4d"],
        ["parity", "--models", "resnxt50_32x4d"],
    ],
    ids=lambda a: a[0],
)
def test_a_misspelt_preset_gets_the_closest_names_in_one_short_line(argv, tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    code = f"import resnext_cli, sys; sys.exit(resnext_cli.main({argv!r}))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert "did you mean 'resnext50_32x4d'" in last and len(last) < 300, last  # not all 89 names
    assert not list(tmp_path.iterdir())
