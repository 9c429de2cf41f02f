"""Fine-tuning: `resnext-train --init-from` starts from a checkpoint another library saved, in any
framework; --freeze keeps what it names bitwise as loaded; --head-lr moves the head at its own rate.

The source is a timm model saved by torch.save (BN randomised), with ten classes, so its head
is kept, or without a head (``num_classes=0``), so a fresh one is made. The data is a small
learnable CIFAR-10 written in its real layout; one training batch makes an epoch one step.
"""

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers import import_timm

from resnext_data import Pipeline, load_dataset
from resnext_data.synthetic import write_cifar
from resnext_formats.timm_resnetv2 import from_timm
from resnext_spec import ArchConfig, ConfigError, load_checkpoint, to_form
from resnext_spec.frameworks import FRAMEWORKS
from resnext_spec.sources import PREPROCESSING
from resnext_spec.tolerances import rel_error
from resnext_torch import randomise_batchnorm
from resnext_train import Recipe, train
from resnext_train.cli import main

SLOW = pytest.mark.slow


def each_framework_once(cases: list, fast: set) -> list:
    """``cases`` as params, those not in ``fast`` in the full tier: the fast tier fine-tunes in each
    framework, the full tier in every framework with every setting."""
    return [pytest.param(*c, marks=() if c in fast else SLOW) for c in cases]


SMALL = dict(layers=(1, 1, 1, 1), cardinality=2, base_width=4)  # timm's resnext50_32x4d builder, cut down
BATCH = 16
ONE_STEP = Recipe(epochs=1, batch_size=BATCH, lr=0.05, weight_decay=1e-3, milestones=(), seed=1)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), "cifar10-bin", n_train=BATCH, n_test=16, learnable=True)  # one batch an epoch
    return str(root)


@pytest.fixture(scope="module")
def timm_files(tmp_path_factory):
    """timm models with 10 classes and with none, saved as timm users save them."""
    timm = import_timm()
    folder = tmp_path_factory.mktemp("timm")
    models = {}
    for classes in (10, 0):
        torch.manual_seed(classes)
        model = randomise_batchnorm(timm.create_model("resnext50_32x4d", num_classes=classes, **SMALL))
        torch.save(model.state_dict(), folder / f"timm{classes}.pth")
        models[classes] = model
    return folder, models


def first_batch(cifar: str, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """The first training batch resnext-train feeds every framework (its seeded pipeline)."""
    data = load_dataset(cifar)
    pipe = Pipeline(
        data.train, BATCH, train=True, mean=np.asarray(mean), std=np.asarray(std), crop=data.crop,
        pad=data.pad, seed=ONE_STEP.seed,
    )  # fmt: skip
    return next(iter(pipe.epoch(0)))


@pytest.mark.parametrize(
    "framework", [pytest.param(f, marks=() if f == "keras" else SLOW) for f in FRAMEWORKS]
)
def test_the_first_step_loss_is_the_source_models_loss_on_that_batch(cifar, timm_files, tmp_path, framework):
    folder, models = timm_files
    metrics = train(
        framework, cifar, init_from=folder / "timm10.pth", recipe=ONE_STEP, out=tmp_path, progress=False
    )
    x, y = first_batch(cifar, *PREPROCESSING["imagenet"])  # what a timm ResNet expects
    source = copy.deepcopy(models[10]).train()  # a step's loss is from train-mode BN (which moves its stats)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(
            source(torch.from_numpy(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)
        )
    assert rel_error(np.float64(metrics[0]["train_loss"]), np.float64(loss)) <= 1e-5
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["preprocessing"] == "imagenet" and record["init_from"].endswith("timm10.pth")
    assert not any("replaced the head" in n for n in record["notes"])  # ten classes: its own head kept


@pytest.mark.parametrize(
    "framework, freeze",
    each_framework_once(
        [(f, z) for f in FRAMEWORKS for z in ("stem", "stages-2", "backbone")],
        fast={("torch", "stages-2"), ("flax", "stem"), ("keras", "backbone")},
    ),
)
def test_frozen_parts_are_bitwise_as_loaded_after_an_epoch(cifar, timm_files, tmp_path, framework, freeze):
    folder, models = timm_files
    recipe = dataclasses.replace(ONE_STEP, epochs=2, freeze=freeze)  # two steps: momentum at work too
    train(
        framework,
        cifar,
        init_from=folder / "timm10.pth",
        form="b",
        recipe=recipe,
        out=tmp_path,
        progress=False,
    )
    after, config, form = load_checkpoint(tmp_path / "checkpoint" / "model.safetensors")
    config10 = ArchConfig(**SMALL, num_classes=10)
    saved = torch.load(folder / "timm10.pth", weights_only=True)
    loaded = to_form(
        {k: v.numpy() for k, v in saved.items() if "num_batches" not in k},
        config10,
        "c",
        "b",
    )
    frozen = [k for k in loaded if recipe.is_frozen(k, 4)]
    moved = [k for k in loaded if not np.array_equal(loaded[k], after[k])]
    assert frozen and not set(frozen) & set(moved)  # parameters and BN statistics alike
    assert {"fc.weight", "fc.bias"} <= set(moved)
    if freeze != "backbone":
        assert "layer4.0.bn3.running_var" in moved and "layer4.0.conv3.weight" in moved


@pytest.mark.parametrize(
    "framework", [pytest.param(f, marks=() if f == "torch" else SLOW) for f in FRAMEWORKS]
)
def test_a_linear_probe_moves_the_head_by_head_lr_as_computed_by_hand(cifar, timm_files, tmp_path, framework):
    """Backbone frozen (BN in eval mode), so the head's first gradient is a formula of the features:
    (softmax(logits) - onehot)^T features / N; the first SGD step from zero momentum is then
    w - head_lr * (g + weight_decay * w)."""
    folder, models = timm_files
    recipe = dataclasses.replace(ONE_STEP, freeze="backbone", head_lr=0.3)
    train(framework, cifar, init_from=folder / "timm10.pth", recipe=recipe, out=tmp_path, progress=False)
    after, _, _ = load_checkpoint(tmp_path / "checkpoint" / "model.safetensors")
    x, y = first_batch(cifar, *PREPROCESSING["imagenet"])
    source = models[10].eval()
    with torch.no_grad():
        features = source.forward_head(
            source.forward_features(torch.from_numpy(x.transpose(0, 3, 1, 2))), pre_logits=True
        )
    f = features.double().numpy()
    w, b = (source.fc.weight.detach().double().numpy(), source.fc.bias.detach().double().numpy())
    z = f @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    grad_w, grad_b = p.T @ f / len(y), p.mean(0)
    lr, wd = recipe.head_lr, recipe.weight_decay
    assert rel_error(after["fc.weight"], w - lr * (grad_w + wd * w)) <= 1e-5
    assert rel_error(after["fc.bias"], b - lr * (grad_b + wd * b)) <= 1e-5


def test_a_headless_source_gets_a_fresh_head_and_says_so(cifar, timm_files, tmp_path, capsys):
    folder, _ = timm_files
    args = [
        "--framework",
        "torch",
        "--data",
        cifar,
        "--init-from",
        str(folder / "timm0.pth"),
        "--epochs",
        "1",
    ]
    assert main([*args, "--batch-size", str(BATCH), "--out", str(tmp_path / "run"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "note: replaced the head: the checkpoint has no head (headless), the data 10" in out
    _, config, _ = load_checkpoint(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert config.num_classes == 10 and config.cardinality == 2


def test_a_checkpoint_of_another_network_is_refused_and_nothing_is_written(
    cifar, timm_files, tmp_path, capsys
):
    folder, _ = timm_files
    out = tmp_path / "run"
    code = main(
        ["--framework", "torch", "--data", cifar, "--model", "resnext26_8x16d", "--init-from",
         str(folder / "timm10.pth"), "--out", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "another network than the one asked for" in err and "cardinality 2 (asked 8)" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_file_no_reader_takes_is_refused_and_nothing_is_written(cifar, tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    out = tmp_path / "run"
    assert (
        main(
            [
                "--framework",
                "torch",
                "--data",
                cifar,
                "--init-from",
                str(tmp_path / "junk.pth"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "junk.pth" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    "recipe, words",
    [
        (dict(freeze="stages-0"), "freeze must be none, stem, stages-K"),
        (dict(freeze="layer1"), "freeze must be"),
        (dict(head_lr=0.0), "head lr must be > 0"),
    ],
)
def test_bad_fine_tuning_settings_are_refused_by_name(recipe, words):
    with pytest.raises(ConfigError, match=words):
        Recipe(**recipe)


def test_freezing_past_the_last_stage_is_refused_before_any_work(cifar, timm_files, tmp_path):
    folder, _ = timm_files
    with pytest.raises(ConfigError, match="freeze stages-5: the network has 4 stages"):
        train(
            "torch",
            cifar,
            init_from=folder / "timm10.pth",
            recipe=Recipe(freeze="stages-5"),
            out=tmp_path / "r",
        )
    assert not (tmp_path / "r").exists()


def test_a_keras_applications_source_takes_rgb_through_its_flipped_conv1():
    """keras.applications ResNets take BGR, mean-subtracted on 0..255 (its own preprocess_input). The
    pipeline's normalisation with the "caffe" statistics, and conv1's input channels reversed, give
    the network the same function of the RGB image."""
    keras = pytest.importorskip("keras")
    import resnext_torch as rt
    from resnext_spec import random_weights
    from resnext_spec.sources import caffe_to_rgb

    config = ArchConfig(**SMALL, num_classes=3)
    weights = random_weights(config, "c", 0)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    as_keras_feeds_it = keras.applications.resnet.preprocess_input(rgb.copy())  # BGR, caffe
    mean, std = (np.asarray(v, np.float32) for v in PREPROCESSING["caffe"])
    as_we_feed_it = (rgb / np.float32(255.0) - mean) / std  # resnext_data.Pipeline's normalisation
    outputs = []
    for w, x in ((weights, as_keras_feeds_it), (caffe_to_rgb(weights), as_we_feed_it)):
        model = rt.create_model(config=config)
        rt.import_weights(model, w)
        with torch.no_grad():
            outputs.append(
                model.eval()(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
            )
    assert rel_error(outputs[1], outputs[0]) <= 1e-5


def test_a_timm_resnetv2_fine_tunes_with_its_backbone_and_final_norm_frozen(cifar, tmp_path):
    """A pre-activation source: --freeze backbone holds every block's input norm (bn0) and the final
    norm as loaded, statistics included, and moves only the head."""
    timm = import_timm()
    torch.manual_seed(3)
    model = randomise_batchnorm(timm.create_model("resnetv2_50", layers=(1, 1, 1, 1), num_classes=10))
    torch.save(model.state_dict(), tmp_path / "v2.pth")
    recipe = dataclasses.replace(ONE_STEP, freeze="backbone")
    train("torch", cifar, init_from=tmp_path / "v2.pth", recipe=recipe, out=tmp_path / "run", progress=False)
    after, config, _ = load_checkpoint(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert config.preact and "norm.running_var" in after and "layer1.0.bn0.weight" in after
    loaded = from_timm({k: v.numpy() for k, v in model.state_dict().items()})
    moved = {k for k in loaded if not np.array_equal(loaded[k], after[k])}
    assert moved == {"fc.weight", "fc.bias"}
