"""resnext-train as a newcomer runs it: in a subprocess, its output to a pipe (a log, CI, a notebook's
`!` cell), on a small folder of their own images.

It says what it is doing without a terminal, refuses a batch its data cannot fill before writing
anything, says how it resizes and records the size, scales its learning rate with the batch, stops
on a loss that is no longer finite, extends a finished run, and names runs and plots after what
they started from.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from resnext_data.synthetic import write_cifar, write_image_folder
from resnext_spec import ArchConfig
from resnext_train.loop import curves_figure

SMALL = ArchConfig(layers=(1, 1), cardinality=2, base_width=4, stem="cifar", num_classes=3)
# One worker for the tests sharing the folder's first run (its checkpoint is resumed and exported).
FOLDER_RUN = pytest.mark.xdist_group("train_cli_folder")


def train(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnext_cli", "train", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=900,
    )


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "small.json"
    path.write_text(SMALL.to_json())
    return str(path)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), "cifar10-bin", n_train=16, n_test=8, learnable=True)
    return str(root)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A user's folder: 20 photos of 64 px in two classes, and a few to validate on."""
    root = tmp_path_factory.mktemp("pictures")
    write_image_folder(str(root), classes=("cat", "dog"), per_class=10, size=(64, 64))
    return str(root)


@pytest.fixture(scope="module")
def folder_run(pictures, config_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "first"
    return small_run("torch", pictures, config_file, out, epochs=1), out


def small_run(framework: str, data: str, config_file: str, out, epochs: int) -> subprocess.CompletedProcess:
    """The small network on ``data``, batch 8, in a subprocess; it must succeed."""
    done = train(
        "--framework", framework, "--config", config_file, "--data", data, "--batch-size", "8",
        "--epochs", str(epochs), "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_in_a_pipe_each_epoch_is_a_line(cifar, config_file, tmp_path):
    done = small_run("torch", cifar, config_file, tmp_path / "run", epochs=2)
    lines = done.stderr.splitlines()
    assert any(line.startswith("epoch 1/2: train loss") for line in lines), done.stderr
    assert any(line.startswith("epoch 2/2: train loss") for line in lines), done.stderr


def test_flax_says_that_its_first_step_compiles_and_how_long_it_took(cifar, config_file, tmp_path):
    done = small_run("flax", cifar, config_file, tmp_path / "run", epochs=1)
    said = done.stderr.splitlines()
    compiling = next(i for i, line in enumerate(said) if "traces and compiles" in line)
    compiled = next(i for i, line in enumerate(said) if line.startswith("compiled; the first step took"))
    first_epoch = next(i for i, line in enumerate(said) if line.startswith("epoch 1/1"))
    assert compiling < compiled < first_epoch


def test_a_batch_larger_than_the_data_names_the_flag_and_writes_nothing(pictures, config_file, tmp_path):
    done = train(
        "--framework", "torch", "--config", config_file, "--data", pictures, "--out", str(tmp_path / "r")
    )
    assert done.returncode == 2
    assert "--batch-size 128: the training split has 20 images" in done.stderr
    assert "pass --batch-size 16" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@FOLDER_RUN
def test_a_folder_of_small_images_trains_at_their_size_says_so_and_records_it(folder_run):
    done, out = folder_run
    # 7/8 of the images' 64 px, as torchvision's 224 is of 256: not blown up to 256 first
    assert "cropped to 56x56" in done.stdout and "pass --image-size" in done.stdout
    assert json.loads((out / "config.json").read_text())["image_size"] == 56
    assert json.loads((out / "checkpoint" / "state.json").read_text())["image_size"] == 56


@FOLDER_RUN
def test_the_learning_rate_follows_the_batch_and_says_so(folder_run):
    done, out = folder_run
    assert "note: lr 0.00625: 0.1 x batch 8 / 128" in done.stdout
    assert json.loads((out / "config.json").read_text())["recipe"]["lr"] == pytest.approx(0.1 * 8 / 128)


@FOLDER_RUN
def test_a_folders_held_out_split_is_called_val(folder_run):
    done, out = folder_run
    assert "val loss" in done.stdout and "test loss" not in done.stdout
    assert json.loads((out / "config.json").read_text())["test_split"] == "val"


@FOLDER_RUN
def test_a_finished_run_extends_with_resume_and_more_epochs(folder_run, pictures, config_file, tmp_path):
    import shutil

    _, first = folder_run
    out = tmp_path / "run"
    shutil.copytree(first, out)
    before = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    done = train(
        "--framework", "torch", "--config", config_file, "--data", pictures, "--batch-size", "8",
        "--epochs", "2", "--out", str(out), "--resume",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert after[:1] == before and after[1]["epoch"] == 2  # the first epoch kept as it was
    # the recorded image size is taken without --image-size
    assert json.loads((out / "checkpoint" / "state.json").read_text())["image_size"] == 56
    assert json.loads((out / "config.json").read_text())["recipe"]["epochs"] == 2


@FOLDER_RUN
def test_a_resume_with_another_setting_names_it_with_both_values(folder_run, pictures, config_file):
    _, out = folder_run
    done = train(
        "--framework", "torch", "--config", config_file, "--data", pictures, "--batch-size", "8",
        "--epochs", "1", "--out", str(out), "--resume", "--lr", "0.5",
    )  # fmt: skip
    assert done.returncode == 2
    assert "recipe.lr 0.00625 (now 0.5)" in done.stderr


@FOLDER_RUN
def test_an_export_of_the_runs_checkpoint_takes_the_size_it_was_trained_at(folder_run, tmp_path):
    _, out = folder_run
    done = subprocess.run(
        [sys.executable, "-m", "resnext_cli", "export", str(out / "checkpoint" / "model.safetensors"),
         "--framework", "torch", "--out", str(tmp_path / "m.pt2")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "m.pt2.json").read_text())["input"]["shape"] == [None, 3, 56, 56]


def test_a_loss_that_is_no_longer_finite_stops_the_run_in_one_line(cifar, config_file, tmp_path):
    out = tmp_path / "run"
    done = train(
        "--framework", "torch", "--config", config_file, "--data", cifar, "--batch-size", "8",
        "--epochs", "2", "--lr", "1e30", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("resnext-train:")]
    assert "training loss is" in line and "of epoch 1" in line and "--lr" in line
    assert not (out / "checkpoint").exists() and not (out / "metrics.jsonl").exists()


def test_a_run_from_a_checkpoint_is_named_after_its_file(cifar, tmp_path):
    import torch

    from resnext_spec import random_weights

    config = ArchConfig(layers=(1, 1), cardinality=2, base_width=4, stem="cifar", num_classes=10)
    weights = random_weights(config, "c", seed=0)
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}, tmp_path / "my_model.pth")
    done = train(
        "--framework", "torch", "--init-from", "my_model.pth", "--data", cifar, "--batch-size", "8",
        "--epochs", "1", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "my_model-torch-c" / "curves.png").exists()


def test_the_plot_has_whole_epoch_ticks_the_splits_names_and_the_runs_name():
    metrics = [
        {"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "test_loss": 1.2 / e, "test_acc": 0.4}
        for e in (1, 2)
    ]
    fig = curves_figure(metrics, "my_model, form (c), torch", "val")
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val"]
    assert fig._suptitle.get_text().startswith("my_model")
