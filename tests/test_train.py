"""resnext-train: the recipe is the same in torch, Keras and Flax, step for step; a resumed run
ends where an uninterrupted one does; every output is written; bad input exits 2."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from helpers import TINY as TINY5

from resnext_data.synthetic import write_cifar
from resnext_spec import init_weights, load_checkpoint, plan
from resnext_spec.errors import ResNeXtError
from resnext_spec.tolerances import K_FLOOR, l2_error, rel_error
from resnext_train import Recipe, train
from resnext_train.cli import main
from resnext_train.loop import describe_checkpoint

TINY = dataclasses.replace(TINY5, num_classes=10)  # CIFAR-10's head
RECIPE = Recipe(epochs=2, batch_size=8, lr=0.02, milestones=(0.5,), seed=3)  # lr drops after epoch 1


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), "cifar10-bin", n_train=80, n_test=32, learnable=True)
    return str(root)


# The tests reading `runs` share one worker, so its three trainings are made once, not once a worker.
RUNS = pytest.mark.xdist_group("train_runs")


@pytest.fixture(scope="module")
def runs(cifar, tmp_path_factory):
    """The same two epochs in each framework (Keras on the backend the suite runs)."""
    out = {}
    for fw in ("torch", "keras", "flax"):
        folder = tmp_path_factory.mktemp(fw)
        out[fw] = (train(fw, cifar, config=TINY, recipe=RECIPE, out=folder, progress=False), str(folder))
    return out


def test_recipe_defaults_are_the_papers_cifar_schedule():
    r = Recipe()
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.weight_decay) == (300, 128, 0.1, 0.9, 5e-4)
    assert [r.lr_at(e) for e in (0, 149, 150, 224, 225, 299)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"epochs": 0}, "epochs must be a whole number >= 1, got 0"),
        ({"batch_size": 1}, "batch size must be a whole number >= 2"),
        ({"lr": 0}, "lr must be > 0, got 0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"milestones": (0.75, 0.5)}, r"milestones must be increasing .* got \(0.75, 0.5\)"),
    ],
)
def test_bad_recipe_values_are_refused_by_name(bad, message):
    with pytest.raises(ResNeXtError, match=message):
        Recipe(**bad)


def test_init_is_torchvisions_and_zero_init_residual_zeroes_each_blocks_last_bn():
    w = init_weights(TINY, seed=0)
    model = torch.nn.Conv2d(16, 64, 3, bias=False)  # torchvision: kaiming_normal_(fan_out, relu)
    torch.nn.init.kaiming_normal_(model.weight, mode="fan_out", nonlinearity="relu")
    big = init_weights(TINY.__class__(layers=(1,), stem="cifar", stem_width=64), seed=1)["conv1.weight"]
    assert abs(big.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.1  # the formula torch uses, 1728 draws
    assert all(np.all(w[k] == 1) for k in w if k.endswith("bn3.weight"))
    z = init_weights(TINY, seed=0, zero_init_residual=True)
    zeroed = sorted(k for k in z if k.endswith(".weight") and not np.any(z[k]))
    assert zeroed == sorted(f"{b.name}.bn3.weight" for b in plan(TINY).blocks)
    assert all(np.array_equal(z[k], w[k]) for k in w if k not in zeroed)


def test_keras_torch_sgd_steps_like_torch_across_a_learning_rate_drop():
    import keras

    from resnext_keras import TorchSGD

    w0, grads = np.array([1.0, -2.0, 0.5]), [np.array([0.3, 0.1, -0.2]), np.array([-0.1, 0.4, 0.2])] * 2
    lrs = [0.1, 0.1, 0.01, 0.01]
    p = torch.nn.Parameter(torch.tensor(w0))
    ref = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=5e-4)
    v = keras.Variable(w0.astype("float32"))
    ours = TorchSGD(0.1, 0.9, 5e-4)
    plain = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=5e-4)
    v_plain = keras.Variable(w0.astype("float32"))
    for g, lr in zip(grads, lrs, strict=True):
        ref.param_groups[0]["lr"] = lr
        p.grad = torch.tensor(g)
        ref.step()
        ours.learning_rate = plain.learning_rate = lr
        ours.apply([g.astype("float32")], [v])
        plain.apply([g.astype("float32")], [v_plain])
    want = p.detach().numpy()
    assert rel_error(keras.ops.convert_to_numpy(v), want) < 1e-6
    assert rel_error(keras.ops.convert_to_numpy(v_plain), want) > 1e-4  # Keras's own SGD is another recipe


@pytest.mark.slow
@RUNS
def test_three_frameworks_train_the_same_trajectory(runs, cifar, tmp_path):
    """Keras and Flax losses and final weights within K_FLOOR times what fp32 rounding alone moves torch."""
    torch_metrics, torch_out = runs["torch"]
    ref = load_checkpoint(os.path.join(torch_out, "checkpoint", "model.safetensors"))[0]
    # The floor: torch again, from initial weights moved by about one fp32 rounding step (2**-22).
    w0 = init_weights(TINY, "c", RECIPE.seed)
    rng = np.random.default_rng(0)
    moved = {k: (v * (1 + 2.0**-22 * rng.choice([-1, 1], v.shape))).astype(np.float32) for k, v in w0.items()}
    nudged = train("torch", cifar, config=TINY, recipe=RECIPE, out=tmp_path, progress=False, weights=moved)
    floor = l2_error(load_checkpoint(tmp_path / "checkpoint" / "model.safetensors")[0], ref)
    assert floor > 0  # the nudge reached the result: the floor is a measurement, not zero
    keys = ("train_loss", "test_loss")
    loss_floor = max(
        abs(n[k] - t[k]) / abs(t[k]) for n, t in zip(nudged, torch_metrics, strict=True) for k in keys
    )
    for fw in ("keras", "flax"):
        metrics, out = runs[fw]
        assert [m["lr"] for m in metrics] == [t["lr"] for t in torch_metrics]
        loss_error = max(
            abs(m[k] - t[k]) / abs(t[k]) for m, t in zip(metrics, torch_metrics, strict=True) for k in keys
        )
        weights = load_checkpoint(os.path.join(out, "checkpoint", "model.safetensors"))[0]
        error = l2_error(weights, ref)
        print(
            f"{fw}: losses {loss_error:.1e} (floor {loss_floor:.1e}), weights {error:.1e} (floor {floor:.1e})"
        )
        assert loss_error <= max(1e-6, K_FLOOR * loss_floor), (fw, loss_error, loss_floor)
        assert error <= K_FLOOR * floor, (fw, error, floor)


@RUNS
@pytest.mark.parametrize("framework", ["torch", "keras", "flax"])
def test_a_tiny_resnext_learns_the_colour_task(framework, runs):
    """Four noisy colour classes (chance: 1/4): 20 steps are enough to learn them."""
    metrics, _ = runs[framework]
    first, last = metrics[0], metrics[-1]
    assert last["train_loss"] < 0.5 * first["train_loss"], (first, last)
    assert last["test_acc"] >= 0.75, last


@RUNS
def test_outputs_metrics_curves_config_and_checkpoint(runs):
    metrics, out = runs["torch"]
    lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert lines == json.loads(json.dumps(metrics)) and [m["epoch"] for m in lines] == [1, 2]
    keys = {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "img_s"}
    assert all(set(m) == keys for m in lines)
    assert all(0 <= m["train_acc"] <= 1 and 0 <= m["test_acc"] <= 1 and m["img_s"] > 0 for m in lines)
    assert [m["lr"] for m in lines] == [0.02, 0.002]
    assert open(os.path.join(out, "curves.png"), "rb").read(4) == b"\x89PNG"
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["recipe"] == RECIPE.to_dict() and config["arch"] == TINY.to_dict()
    assert sorted(os.listdir(os.path.join(out, "checkpoint"))) == [
        "model.safetensors",
        "state.json",
        "torch.pt",
    ]


# one resume in the fast tier; the other engines' in the full tier
@RUNS
@pytest.mark.parametrize(
    "framework",
    ["torch", pytest.param("flax", marks=pytest.mark.slow), pytest.param("keras", marks=pytest.mark.slow)],
)
def test_interrupted_then_resumed_run_ends_where_an_uninterrupted_run_ends(framework, runs, cifar, tmp_path):
    def interrupt(epoch, step):
        if (epoch, step) == (0, 3):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(framework, cifar, config=TINY, recipe=RECIPE, out=tmp_path, progress=False, on_step=interrupt)
    state = json.load(open(tmp_path / "checkpoint" / "state.json"))
    assert (state["epoch"], state["step"]) == (0, 3)
    assert "stands at step 3 of epoch 1; --resume continues" in describe_checkpoint(str(tmp_path))
    resumed = train(framework, cifar, config=TINY, recipe=RECIPE, out=tmp_path, resume=True, progress=False)
    whole, whole_out = runs[framework]
    drop = ("seconds", "img_s")
    assert [{k: v for k, v in m.items() if k not in drop} for m in resumed] == pytest.approx(
        [{k: v for k, v in m.items() if k not in drop} for m in whole], rel=1e-6
    )
    a = load_checkpoint(tmp_path / "checkpoint" / "model.safetensors")[0]
    b = load_checkpoint(os.path.join(whole_out, "checkpoint", "model.safetensors"))[0]
    if framework == "torch":  # the same operations on the same numbers: bit for bit
        assert all(np.array_equal(a[k], b[k]) for k in a)
    else:
        assert max(rel_error(a[k], b[k]) for k in a) < 1e-6


@RUNS
def test_an_existing_run_is_not_overwritten_and_resume_must_match(runs, cifar):
    _, out = runs["torch"]
    with pytest.raises(ResNeXtError, match="already holds a run"):
        train("torch", cifar, config=TINY, recipe=RECIPE, out=out, progress=False)
    with pytest.raises(ResNeXtError, match=r"other settings .*recipe"):
        train("torch", cifar, config=TINY, recipe=Recipe(epochs=3), out=out, resume=True, progress=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--framework", "torch", "--model", "resnet18"], "--data"),
        (["--framework", "mxnet", "--model", "resnet18", "--data", "x"], "invalid choice"),
        (["--framework", "torch", "--model", "resnet18", "--config", "c.json", "--data", "x"], "not allowed"),
        (["--framework", "torch", "--model", "resnet18", "--data", "/nowhere"], "/nowhere: no such file"),
        (
            ["--framework", "torch", "--model", "resnet18", "--data", "x", "--milestones", "0.9,0.2"],
            "milestones",
        ),
        (
            ["--framework", "torch", "--model", "resnet18", "--data", "x", "--keras-backend", "jax"],
            "keras only",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_trains_and_reports(cifar, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY.to_dict()))
    argv = [
        "--framework",
        "torch",
        "--config",
        str(config),
        "--data",
        cifar,
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ]
    assert main([*argv, "--out", str(tmp_path / "run"), "-q"]) == 0
    assert "epoch 1/1: train loss" in capsys.readouterr().out
    assert len(open(tmp_path / "run" / "metrics.jsonl").readlines()) == 1


def test_unknown_framework_or_lowering_is_refused_before_anything_is_written(cifar, tmp_path):
    with pytest.raises(ResNeXtError, match="unknown framework 'mxnet'"):
        train("mxnet", cifar, config=TINY, recipe=RECIPE, out=tmp_path / "a", progress=False)
    with pytest.raises(ResNeXtError, match="conv_impl"):
        train("flax", cifar, config=TINY, recipe=RECIPE, out=tmp_path / "b", conv_impl="fast", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_the_ctrl_c_message_names_the_checkpoint_or_says_there_is_none(cifar, tmp_path):
    """resnext-train's message after Ctrl-C says what there is to resume, read from the folder:
    the checkpoint the interrupt wrote, or that none was written (an interrupt before the first
    step, or a folder that never held a run)."""

    def interrupt(epoch, step):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("torch", cifar, config=TINY, recipe=RECIPE, out=tmp_path, progress=False, on_step=interrupt)
    assert "at step 1 of epoch 1" in describe_checkpoint(str(tmp_path))
    assert "no checkpoint was written" in describe_checkpoint(str(tmp_path / "elsewhere"))
