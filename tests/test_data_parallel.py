"""Data-parallel training on each framework's own engine steps like one worker with the whole batch.

torch: two gloo processes under torchrun (DistributedDataParallel); Flax: a mesh of two
host devices; Keras: ``keras.distribution.DataParallel`` on two host devices (JAX).
Each is held to one torch process's step under the harness's noise-floor rule (the
floor: how far that fp32 step lands from the same step in float64). Without --sync-bn,
torch's two processes take the step that per-shard BN statistics predict.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import TINY as TINY5

from resnext_data import Pipeline, channel_stats, load_dataset
from resnext_data.synthetic import write_cifar
from resnext_spec import init_weights, is_running_stat, load_checkpoint
from resnext_spec.tolerances import K_FLOOR, TOL, TOL64, compare, rel_error, worst_error
from resnext_torch import TorchEngine
from resnext_train import Recipe, train
from resnext_train.cli import main

pytestmark = pytest.mark.xdist_group("data_parallel")  # one worker makes the shared runs once

TINY = dataclasses.replace(TINY5, num_classes=10)
# Eight training images, a global batch of eight: an epoch is one step. The rate drops /10 for epoch 2.
RECIPE = Recipe(epochs=2, batch_size=8, lr=0.1, milestones=(0.5,), seed=1)
CLI_RECIPE = ["--epochs", "2", "--batch-size", "8", "--lr", "0.1", "--milestones", "0.5", "--seed", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    # nine test images: the last evaluation batch of one is padded to split over two devices
    write_cifar(str(root / "data"), "cifar10-bin", n_train=8, n_test=9, learnable=True)
    (root / "tiny.json").write_text(json.dumps(TINY.to_dict()))
    return root


def cli(setup, framework: str, out: str, *extra: str, launcher=(), env=None) -> subprocess.CompletedProcess:
    """``resnext-train`` in its own process(es), with the recipe above."""
    args = [*launcher, "--framework", framework, "--config", str(setup / "tiny.json")]
    args += ["--data", str(setup / "data"), "--out", out, "-q", *CLI_RECIPE, *extra]
    done = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def torchrun(setup, out: str, *extra: str) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return cli(setup, "torch", out, *extra, launcher=[*launcher, "-m", "resnext_train"])


def batches(setup) -> list[tuple[np.ndarray, np.ndarray]]:
    """The global batches of the two epochs, as resnext-train draws them (one an epoch)."""
    data = load_dataset(str(setup / "data"))
    mean, std = channel_stats(data.train)
    pipe = Pipeline(
        data.train, 8, train=True, mean=mean, std=std, crop=data.crop, pad=data.pad, seed=RECIPE.seed
    )
    return [next(pipe.epoch(e)) for e in range(RECIPE.epochs)]


@pytest.fixture(scope="module")
def reference(setup):
    """One torch process with the whole batch, fp32 and float64: {epochs: (fp32, fp64, (loss, correct))}."""
    out = {}
    engines = [
        TorchEngine(TINY, "c", init_weights(TINY, "c", RECIPE.seed), RECIPE, float64=f64) for f64 in (0, 1)
    ]
    for epoch, (x, y) in enumerate(batches(setup)):
        loss = [e.train_step(x, y, RECIPE.lr_at(epoch)) for e in engines][0]
        w32 = engines[0].weights()  # float64 unrounded below: export_weights gives float32 copies
        w64 = {k: v.detach().numpy().copy() for k, v in engines[1].model.state_dict().items() if k in w32}
        out[epoch + 1] = (w32, w64, loss)
    return out


def stepped(folder: str) -> tuple[dict, list[dict]]:
    weights = load_checkpoint(os.path.join(folder, "checkpoint", "model.safetensors"))[0]
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return weights, [json.loads(line) for line in f]


def assert_reports(metrics: list[dict], loss: float, correct: int) -> None:
    """The last epoch's reported loss (a mean of 8: well-conditioned) and accuracy are the step's."""
    assert rel_error(metrics[-1]["train_loss"], loss) <= TOL
    assert metrics[-1]["train_acc"] * RECIPE.batch_size == correct


def assert_steps_like(weights: dict, metrics: list[dict], reference, epochs: int) -> None:
    w32, w64, (loss, correct) = reference[epochs]
    result = compare(weights, w32, w64)
    assert result.passed and not result.chaotic, result
    assert_reports(metrics, loss, correct)


@pytest.fixture(scope="module")
def synced(setup):
    """Two gloo processes with --sync-bn, stopped after the first epoch (one step)."""
    out = str(setup / "torch-sync")
    torchrun(setup, out, "--sync-bn", "--stop-after", "1")
    return out


def engine_in_two_processes(setup, precision: str) -> dict[str, np.ndarray]:
    """The first step of TorchEngine with synchronised BN in two torchrun processes (tests/dp_step.py)."""
    x, y = batches(setup)[0]
    np.savez(setup / "batch.npz", x=x, y=y, lr=RECIPE.lr_at(0))
    (setup / "recipe.json").write_text(json.dumps(dataclasses.asdict(RECIPE)))
    out = setup / f"two-{precision}.npz"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    script = os.path.join(os.path.dirname(__file__), "dp_step.py")
    files = [str(setup / n) for n in ("batch.npz", "tiny.json", "recipe.json")]
    done = subprocess.run(
        [*launcher, script, *files, str(out), precision], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


def test_torch_two_processes_with_sync_bn_step_like_one_process_with_the_whole_batch(
    setup, synced, reference
):
    """Two processes with synchronised BN take the step one process takes with the whole batch.

    In fp32 the two reduce in a different order (the batch statistics, the gradients) and
    train-mode gradients amplify that rounding unevenly: a BN bias that starts at 0 is one
    gradient sum that nearly cancels, and landed 4.2e-4 (layer2.0.bn3.bias, AMD EPYC with
    AVX-512) from one process's value while every tensor of that process was within 4.9e-7
    of float64. So the fp32 difference is this comparison's own noise, and float64 judges
    it: the same two-process step in float64 must land on one float64 process, to within
    that noise scaled by the ratio of the two precisions' roundoff (2**-29). A real
    difference (per-shard statistics, a gradient averaged wrongly) is as large in float64
    as in fp32 and fails by a factor of ~1e8.
    """
    weights, metrics = stepped(synced)
    w32, w64, (loss, correct) = reference[1]
    two32 = engine_in_two_processes(setup, "float32")
    # resnext-train's two processes take exactly the engine's two-process step
    assert all(np.array_equal(weights[k], two32[k].astype(np.float32)) for k in w32)
    noise32, _ = worst_error(two32, w32)
    two64 = engine_in_two_processes(setup, "float64")
    error64, tensor = worst_error(two64, w64)
    assert error64 <= max(TOL64, K_FLOOR * 2.0**-29 * noise32), (tensor, error64, noise32)
    assert_reports(metrics, loss, correct)
    with open(os.path.join(synced, "config.json")) as f:
        assert json.load(f)["processes"] == 2


def test_two_processes_write_one_set_of_outputs_and_resume_on_one(setup, synced, tmp_path):
    """A two-process run resumed in one process takes the step the recipe gives from its checkpoint.

    The expected second step is built without the checkpoint's optimizer state: from zero
    momentum, SGD's first step leaves the buffer at (w0 - w1) / lr0, so one process given
    the checkpoint's weights and that buffer must take the resumed run's step (same
    process, same kernels: only the buffer's rounding differs; measured 1.2e-7). A resume that
    lost the momentum, the learning-rate schedule or the data position takes another step.
    """
    assert sorted(os.listdir(synced)) == ["checkpoint", "config.json", "curves.png", "metrics.jsonl"]
    assert sorted(os.listdir(os.path.join(synced, "checkpoint"))) == [
        "model.safetensors",
        "state.json",
        "torch.pt",
    ]
    assert len(stepped(synced)[1]) == 1  # one line: only rank 0 wrote
    folder = str(tmp_path / "resumed")
    shutil.copytree(synced, folder)
    metrics = train(
        "torch", str(setup / "data"), config=TINY, recipe=RECIPE, out=folder, resume=True, progress=False
    )
    assert [m["epoch"] for m in metrics] == [1, 2]
    weights, written = stepped(folder)
    assert written == metrics

    w0, w1 = init_weights(TINY, "c", RECIPE.seed), stepped(synced)[0]
    engine = TorchEngine(TINY, "c", w1, RECIPE)
    for name, p in engine.model.named_parameters():
        buffer = (w0[name].astype(np.float64) - w1[name]) / RECIPE.lr_at(0)
        engine.optimizer.state[p]["momentum_buffer"] = torch.from_numpy(buffer.astype(np.float32))
    x, y = batches(setup)[1]
    loss, correct = engine.train_step(x, y, RECIPE.lr_at(1))
    expected = engine.weights()
    error, tensor = worst_error(weights, expected)
    assert error <= TOL, (tensor, error)
    assert max(rel_error(weights[k], w1[k]) for k in w1) > 1e-3  # the second step moved the weights
    assert_reports(metrics, loss, correct)


def per_shard_step(x: np.ndarray, y: np.ndarray, dtype: torch.dtype) -> dict[str, np.ndarray]:
    """What DDP without SyncBN computes: each half normalised by its own statistics, the gradients
    averaged, and rank 0's running statistics (its buffers are the ones broadcast and saved)."""
    from resnext_torch import create_model, export_weights, import_weights

    model = create_model(config=TINY, form="c")
    import_weights(model, init_weights(TINY, "c", RECIPE.seed))
    model.to(dtype).train()
    sgd = torch.optim.SGD(
        model.parameters(), lr=RECIPE.lr_at(0), momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay
    )
    losses, rank0_stats = [], None
    for half in (slice(0, 4), slice(4, 8)):
        xs = torch.from_numpy(np.ascontiguousarray(x[half].transpose(0, 3, 1, 2))).to(dtype)
        losses.append(torch.nn.functional.cross_entropy(model(xs), torch.from_numpy(y[half])))
        if rank0_stats is None:
            rank0_stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    (sum(losses) / 2).backward()
    sgd.step()
    model.load_state_dict(rank0_stats, strict=False)
    return {k: v.astype(np.float64) for k, v in export_weights(model.double()).items()}


def test_torch_without_sync_bn_each_process_normalises_by_its_own_shard(setup, reference):
    out = str(setup / "torch-per-shard")
    torchrun(setup, out, "--stop-after", "1")
    weights, _ = stepped(out)
    x, y = batches(setup)[0]
    predicted = compare(weights, per_shard_step(x, y, torch.float32), per_shard_step(x, y, torch.float64))
    assert predicted.passed and not predicted.chaotic, predicted
    # and that is not the whole-batch step: the difference is real, not noise
    w32, w64, _ = reference[1]
    whole = compare(weights, w32, w64)
    assert not whole.passed
    stats = [k for k in w32 if is_running_stat(k)]
    assert (
        rel_error(np.concatenate([weights[k] for k in stats]), np.concatenate([w32[k] for k in stats])) > 1e-2
    )


TWO_HOST_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def on_two_host_devices(setup, framework: str, **env: str) -> tuple[str, dict]:
    """One step of ``framework`` split over two XLA host devices; the run folder and its config."""
    out = str(setup / f"{framework}-2")
    launcher = [sys.executable, "-m", "resnext_train"]
    cli(
        setup,
        framework,
        out,
        "--num-devices",
        "2",
        "--stop-after",
        "1",
        launcher=launcher,
        env=TWO_HOST_DEVICES | env,
    )
    with open(os.path.join(out, "config.json")) as f:
        return out, json.load(f)


def assert_evaluates_like(out: str, synced: str) -> None:
    """The padded, device-split evaluation scores the nine test images as torch's processes do."""
    ours, theirs = stepped(out)[1][-1], stepped(synced)[1][-1]
    assert ours["test_acc"] == theirs["test_acc"]
    assert rel_error(ours["test_loss"], theirs["test_loss"]) <= 1e-3  # the weights agree to ~4e-4


def test_flax_on_a_mesh_of_two_devices_steps_like_one_torch_process(setup, reference, synced):
    out, run = on_two_host_devices(setup, "flax")
    assert len(run["mesh_devices"]) == 2
    assert_steps_like(*stepped(out), reference, epochs=1)
    assert_evaluates_like(out, synced)


def test_keras_data_parallel_on_two_devices_steps_like_one_torch_process(setup, reference, synced):
    out, run = on_two_host_devices(setup, "keras", KERAS_BACKEND="jax")
    assert (run["keras_backend"], len(run["mesh_devices"])) == ("jax", 2)
    assert_steps_like(*stepped(out), reference, epochs=1)
    assert_evaluates_like(out, synced)


@pytest.mark.parametrize(
    ("framework", "flags", "message"),
    [
        ("torch", ["--num-devices", "2"], "torchrun --nproc-per-node"),
        ("flax", ["--sync-bn"], "normalise over the global batch"),
        ("flax", ["--num-devices", "3"], "sees 1 device"),
        ("flax", ["--num-devices", "two"], "a count >= 1 or 'all'"),
        ("keras", ["--num-devices", "2"], "runs on the JAX backend"),
    ],
)
def test_parallel_settings_that_cannot_run_exit_2_and_write_nothing(
    setup, tmp_path, capsys, framework, flags, message
):
    if framework == "keras":
        import keras

        if keras.backend.backend() == "jax":
            pytest.skip("on JAX, Keras runs data-parallel (the subprocess test above)")
    out = tmp_path / "run"
    argv = ["--framework", framework, "--config", str(setup / "tiny.json"), "--data", str(setup / "data")]
    assert main([*argv, "--out", str(out), "-q", *CLI_RECIPE, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
