"""The training loop, written once for every framework.

Each epoch: the learning rate of the recipe, the seeded training batches of
``resnext_data`` through the framework's step, the test split in eval mode, one
line of metrics, the curves, and a checkpoint. A checkpoint is a folder written
beside the old one and swapped in by renames, holding the framework's own files
(model and optimizer), the canonical ``model.safetensors`` any build can load, and
``state.json`` (where in training it was taken, and the metrics so far).

Data-parallel runs (torchrun processes, or ``devices`` for Keras and Flax) see the
same global batches as one process; the process of rank 0 alone writes the outputs,
and a checkpoint resumes on any number of workers.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from resnext_data import Dataset, Pipeline, channel_stats, load_dataset
from resnext_formats import read_source
from resnext_spec import (
    ArchConfig,
    atomic_write,
    check_form_for,
    init_weights,
    resolve_config,
    save_checkpoint,
)
from resnext_spec.checkpoint import atomic_write_bytes
from resnext_spec.errors import ConfigError, ResNeXtError
from resnext_spec.forms import to_form
from resnext_spec.frameworks import PACKAGES, check_framework
from resnext_spec.grouped import check_conv_impl
from resnext_spec.layout import HEAD_TENSORS
from resnext_spec.sources import PREPROCESSING, caffe_to_rgb, recorded_image_size
from resnext_spec.training import Engine, Recipe

from .engines import make_engine

CHECKPOINT = "checkpoint"
# What config.json must agree on for --resume to continue a run.
RESUME_KEYS = ("framework", "keras_backend", "arch", "form", "recipe", "conv_impl", "dataset", "init_from")


class TrainError(ResNeXtError):
    """A run that cannot start as asked (bad output folder, resume that does not fit)."""


def eval_metrics(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Summed softmax cross-entropy (float64) and correct predictions of one batch of logits."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].sum()), int((logits.argmax(1) == labels).sum())


def _write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _write_metrics(out: str, metrics: list[dict]) -> None:
    atomic_write_bytes(
        os.path.join(out, "metrics.jsonl"), "".join(json.dumps(m) + "\n" for m in metrics).encode()
    )


def curves_figure(metrics: list[dict], title: str = "", test_split: str = "test"):
    """Loss and accuracy, train and the held-out split (labelled by its own name), against whole
    epochs: a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, key, style in (("train", "train", "-"), (test_split, "test", "--")):
        ax_loss.plot(epochs, [m[f"{key}_loss"] for m in metrics], style, marker="o", label=split)
        ax_acc.plot(epochs, [m[f"{key}_acc"] for m in metrics], style, marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(metrics: list[dict], path: str, title: str = "", test_split: str = "test") -> None:
    """:func:`curves_figure`, written to ``path`` as a PNG."""
    import matplotlib.pyplot as plt

    fig = curves_figure(metrics, title, test_split)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def _save_checkpoint(out: str, engine: Engine, config: ArchConfig, form: str, state: dict) -> None:
    """Write the new checkpoint folder whole, then swap it in; a crash leaves the old or the new."""
    new = tempfile.mkdtemp(prefix=".checkpoint-", dir=out)
    try:
        engine.save(new)
        save_checkpoint(os.path.join(new, "model.safetensors"), engine.weights(), config, form)
        _write_json(os.path.join(new, "state.json"), state)
        current, old = os.path.join(out, CHECKPOINT), os.path.join(out, f".{CHECKPOINT}-old")
        shutil.rmtree(old, ignore_errors=True)
        if os.path.isdir(current):
            os.replace(current, old)
        os.replace(new, current)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def describe_checkpoint(out: str) -> str:
    """What an interrupted run leaves to resume from, in words (the Ctrl-C message)."""
    folder = _latest_checkpoint(out)
    if folder is None:
        return f"no checkpoint was written in {out} (none before the first epoch ends)"
    with open(os.path.join(folder, "state.json")) as f:
        state = json.load(f)
    epoch, step = state["epoch"], state["step"]
    where = f"after epoch {epoch}" if step == 0 else f"at step {step} of epoch {epoch + 1}"
    return f"the checkpoint in {folder} stands {where}; --resume continues from it"


def _latest_checkpoint(out: str) -> str | None:
    for name in (CHECKPOINT, f".{CHECKPOINT}-old"):  # the old one survives a crash between the renames
        folder = os.path.join(out, name)
        if os.path.isfile(os.path.join(folder, "state.json")):
            return folder
    return None


class _Progress:
    """What a run says while it works: a rich bar per epoch on a terminal (``"bar"``), or plain lines
    for logs and pipes (``"lines"``: the compile and each epoch), or nothing (False)."""

    def __init__(self, mode: bool | str) -> None:
        import sys

        if mode is True:
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.bar = mode, None
        self.waiting = False  # a compile was announced and the step that does it has not ended
        if mode == "bar":
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )
            except ImportError:
                self.mode = "lines"
                return
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
            )
            self.bar.start()

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.console.print(line)
        elif self.mode == "lines":
            import sys

            print(line, file=sys.stderr, flush=True)

    def compiling(self, line: str) -> None:
        """Say that the next step compiles; :meth:`first_step` then says how long it took."""
        self.say(line)
        self.waiting = True

    def first_step(self, seconds: float) -> None:
        if self.waiting:
            self.say(f"compiled; the first step took {seconds:.0f} s")
            self.waiting = False

    def epoch(self, description: str, total: int, done: int) -> None:
        if self.bar is not None:
            self.task = self.bar.add_task(description, total=total, completed=done, stats="")

    def update(self, stats: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, stats=stats)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train(
    framework: str,
    data: str | os.PathLike | Dataset,
    *,
    model: str | None = None,
    config: ArchConfig | None = None,
    form: str = "c",
    recipe: Recipe | None = None,
    out: str | os.PathLike = "runs/train",
    resume: bool = False,
    conv_impl: str = "auto",
    image_size: int | None = None,
    progress: bool | str = True,
    on_step: Callable[[int, int], None] | None = None,
    weights: dict[str, np.ndarray] | None = None,
    devices: int | str | None = None,
    sync_bn: bool = False,
    stop_after: int | None = None,
    init_from: str | os.PathLike | None = None,
    on_note: Callable[[str], None] | None = None,
    device: str = "auto",
    stride_on: str | None = None,
) -> list[dict]:
    """Train one build with the recipe; returns the metrics of every epoch (also in metrics.jsonl).

    ``data`` is a dataset path (see :func:`resnext_data.load_dataset`) or a loaded
    :class:`~resnext_data.Dataset`. The model's head is sized to the dataset's classes.
    ``on_step(epoch, step)`` is called after every training step. On Ctrl-C a
    checkpoint of the exact position is written before the interrupt goes on.
    ``weights`` (canonical, of ``form``) replaces the recipe's initialisation: to
    fine-tune a ported checkpoint, or to start a run from slightly moved weights.

    ``init_from`` starts from any checkpoint ``resnext-port`` reads (``resnext_spec.sources``):
    its architecture is the run's (``config``, if given, must be the same network; ``model`` names
    the preset the file holds where its tensors cannot say, and ``stride_on`` where it strides),
    its weights are converted to ``form``, and where its classes are not the data's (or it
    has no head) the head is replaced by a freshly initialised one. The images are
    normalised as the source expects (ImageNet statistics for torchvision, timm,
    transformers and keras-hub networks). ``on_note`` is told what was done, in words;
    the notes are in ``config.json`` too. ``recipe.freeze`` and ``recipe.head_lr`` set
    what a fine-tune trains.

    ``image_size`` is an image folder's crop (None: the size the run being resumed or the checkpoint
    started from was trained at, else one that fits the images); it is recorded in ``config.json``
    and ``state.json``. ``progress``: ``"bar"`` (a progress bar), ``"lines"`` (a line when the first
    step compiles and one an epoch, for logs and pipes), False (silent); True picks the bar on a
    terminal and lines otherwise.

    Data parallelism: launched by torchrun (a ``torch.distributed`` process group is
    initialised), torch trains with DistributedDataParallel, each process on its shard
    of every global batch (``recipe.batch_size``), ``sync_bn`` normalising over the
    global batch; ``devices`` (a count or ``"all"``) splits each batch over devices in
    Flax and in Keras on JAX. ``stop_after`` ends this call after that epoch (counted
    from 1) with its checkpoint; ``resume`` goes on from there, on any number of workers.
    """
    if init_from is not None and weights is not None:
        raise ConfigError("give weights= or init_from=, not both")
    out = os.fspath(out)
    if image_size is None:
        image_size = recorded_image_size(out if resume else init_from)
    dataset, config, recipe, record, source = _settle(
        framework, data, model, config, form, recipe, conv_impl, image_size, stop_after, init_from, stride_on
    )
    found = _check_out_folder(out, record, resume)
    if recipe.batch_size > len(dataset.train):
        fits = 2 ** (len(dataset.train).bit_length() - 1)
        raise TrainError(
            f"--batch-size {recipe.batch_size}: the training split has {len(dataset.train)} images, fewer "
            f"than one batch; pass --batch-size {fits} (or less)"
        )
    if source is not None:
        weights = _weights_from(source, config, form, recipe, record)
    for note in record["notes"]:
        (on_note or (lambda _: None))(note)
    if weights is None:
        weights = init_weights(config, form, recipe.seed, recipe.zero_init_residual)
    device = _device(framework, device)
    engine = make_engine(
        framework, config, form, weights, recipe, conv_impl, devices=devices, sync_bn=sync_bn, device=device
    )
    main = engine.rank == 0  # writes every output; the others train their shards
    record |= {"processes": engine.world, "mesh_devices": engine.mesh_devices, "sync_bn": sync_bn}
    mean, std = np.asarray(record["mean"]), np.asarray(record["std"])
    train_pipe = Pipeline(
        dataset.train,
        recipe.batch_size,
        train=True,
        mean=mean,
        std=std,
        crop=dataset.crop,
        pad=dataset.pad,
        seed=recipe.seed,
        shard=(engine.rank, engine.world),
    )
    test_pipe = Pipeline(dataset.test, recipe.batch_size, train=False, mean=mean, std=std, crop=dataset.crop)
    if main:  # every check has passed: the first thing written
        os.makedirs(out, exist_ok=True)
        _write_json(os.path.join(out, "config.json"), record)
    state = {"epoch": 0, "step": 0, "sums": [0.0, 0, 0, 0.0], "metrics": []}
    if resume:
        with open(os.path.join(found, "state.json")) as f:
            state = json.load(f)
        engine.restore(found)
    metrics = state["metrics"]
    title = f"{run_name(model, init_from)}, form ({form}), {framework}"
    position = {"image_size": dataset.crop}

    def save_position(at: dict) -> None:  # on Ctrl-C: the checkpoint of that very step
        if main:
            _save_checkpoint(out, engine, config, form, at | position | {"metrics": metrics})

    bar = _Progress(progress if main else False)
    # Flax and Keras on TensorFlow or JAX trace and compile their step on its first call (Keras on
    # torch runs eagerly), in this process whether it starts or resumes a run
    compiles = framework == "flax" or (framework == "keras" and record["keras_backend"] != "torch")
    try:
        for epoch in range(state["epoch"], recipe.epochs):
            start = state["step"] if epoch == state["epoch"] else 0
            t_epoch = time.perf_counter()
            bar.epoch(f"epoch {epoch + 1}/{recipe.epochs}", len(train_pipe), start)
            if compiles and epoch == state["epoch"]:
                bar.compiling(
                    f"{framework}: the first step traces and compiles the training step (a minute or two)"
                )
            carried = state["sums"] if start else (0.0, 0, 0, 0.0)  # across a resume in mid-epoch
            loss_sum, correct, seen, train_s = _train_epoch(
                engine, train_pipe, recipe.lr_at(epoch), epoch, start, carried, bar, on_step, save_position
            )
            test_loss, test_ok = _evaluate(engine, test_pipe)
            n_test = len(dataset.test)
            metrics.append(
                {
                    "epoch": epoch + 1,
                    "lr": recipe.lr_at(epoch),
                    "train_loss": loss_sum / seen,
                    "train_acc": correct / seen,
                    "test_loss": test_loss / n_test,
                    "test_acc": test_ok / n_test,
                    "seconds": time.perf_counter() - t_epoch,
                    "img_s": seen / train_s,
                }
            )
            bar.say(epoch_line(metrics[-1], recipe.epochs, dataset.test_split))
            state = {"epoch": epoch + 1, "step": 0, "sums": [0.0, 0, 0, 0.0], "metrics": metrics}
            if main:
                _save_checkpoint(out, engine, config, form, state | position)
                _write_metrics(out, metrics)
                plot_curves(metrics, os.path.join(out, "curves.png"), title, dataset.test_split)
            if stop_after is not None and epoch + 1 >= stop_after:
                break
    finally:
        bar.stop()
    return metrics


def _device(framework: str, asked: str) -> str:
    """The device the engine trains on: torch's name for it (``cuda:N`` or ``cpu``); JAX's frameworks
    take every device of the platform ``asked`` (``auto``: JAX's default)."""
    if asked not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"--device {asked!r}: choose auto, cpu or gpu")
    if framework == "torch" or (framework == "keras" and _keras_backend() == "torch"):
        import torch

        if asked == "gpu" and not torch.cuda.is_available():
            raise ConfigError("--device gpu: torch sees no CUDA GPU on this machine; use --device cpu")
        if asked == "cpu" or not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{torch.cuda.current_device()}"
    if framework == "keras" and _keras_backend() == "tensorflow":
        import tensorflow as tf

        if asked == "gpu" and not tf.config.list_physical_devices("GPU"):
            raise ConfigError("--device gpu: TensorFlow sees no GPU on this machine; use --device cpu")
        return asked
    import jax

    if asked == "gpu" and jax.default_backend() != "gpu":
        raise ConfigError("--device gpu: JAX sees no GPU on this machine; use --device cpu")
    if asked == "cpu" and jax.default_backend() != "cpu":
        jax.config.update("jax_default_device", jax.devices("cpu")[0])
    return asked


def _keras_backend() -> str:
    import keras

    return keras.backend.backend()


def _settle(
    framework,
    data,
    model,
    config,
    form,
    recipe,
    conv_impl,
    image_size,
    stop_after,
    init_from=None,
    stride_on=None,
):
    """Every setting checked and resolved before any work: (dataset, config, recipe, the run's record,
    the ``init_from`` checkpoint read, or None).

    The record is what ``config.json`` holds, and what ``--resume`` must agree with.
    """
    check_framework(framework)
    check_conv_impl(conv_impl)
    if stop_after is not None and not 1 <= stop_after:
        raise TrainError(f"stop after epoch {stop_after}: epochs count from 1")
    recipe = recipe or Recipe()
    dataset = data if isinstance(data, Dataset) else load_dataset(data, image_size=image_size)
    source = None
    if init_from is None:
        config = resolve_config(model, config)
    else:
        native = lambda fw: importlib.import_module(PACKAGES[fw])  # noqa: E731
        source = read_source(init_from, native=native, stride_on=stride_on)
        if model is not None or config is not None:
            asked = resolve_config(model, config)
            unseen = _same_network(asked, source.config, init_from)
            if unseen and model is not None:  # what the tensors cannot show, from the preset named
                source = read_source(  # the head is the file's, which the first read found
                    init_from, native, model, num_classes=source.config.num_classes, stride_on=stride_on
                )
            elif unseen:  # or from the config given
                source.config = dataclasses.replace(asked, num_classes=source.config.num_classes)
        config = source.config
    if config.num_classes != dataset.num_classes:  # the head fits the data
        config = dataclasses.replace(config, num_classes=dataset.num_classes)
    check_form_for(config, form)
    recipe.frozen_prefixes(len(config.layers))  # a freeze past the last stage is refused now
    keras_backend = None
    if framework == "keras":
        import keras

        keras_backend = keras.backend.backend()
    if source is not None and source.preprocessing is not None:
        mean, std = (np.asarray(v) for v in PREPROCESSING[source.preprocessing])
    else:
        mean, std = channel_stats(dataset.train)
    record = {
        "framework": framework,
        "keras_backend": keras_backend,
        "model": model,
        "arch": config.to_dict(),
        "form": form,
        "recipe": recipe.to_dict(),
        "conv_impl": conv_impl,
        "dataset": dataset.name,
        "data": dataset.name if isinstance(data, Dataset) else os.fspath(data),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "init_from": None if init_from is None else os.fspath(init_from),
        "preprocessing": None if source is None else source.preprocessing,
        "image_size": dataset.crop,
        "test_split": dataset.test_split,
        "notes": [] if dataset.note is None else [dataset.note],
    }
    return dataset, config, recipe, record, source


# Fields a bare state_dict's tensors cannot show, which --model names (timm's anti-aliased networks,
# BiT's standardised convs, the stride's place, a zero-padded stem pool, keras.applications' V2 stride).
UNSEEN = frozenset({"aa_layer", "std_conv", "stride_on", "stem_type", "stride_at"})


def _same_network(asked: ArchConfig, found: ArchConfig, path) -> bool:
    """Refuse a checkpoint of another network than ``--model``/``--config`` names (the head aside);
    True where they differ only in what the tensors cannot show (the asked network is then read)."""
    names = [
        f.name
        for f in dataclasses.fields(ArchConfig)
        if f.name != "num_classes" and getattr(found, f.name) != getattr(asked, f.name)
    ]
    if set(names) <= UNSEEN:
        return bool(names)
    differ = [f"{n} {getattr(found, n)!r} (asked {getattr(asked, n)!r})" for n in names]
    raise TrainError(
        f"--init-from {os.fspath(path)}: another network than the one asked for: {', '.join(differ)}"
    )


def _weights_from(
    source, config: ArchConfig, form: str, recipe: Recipe, record: dict
) -> dict[str, np.ndarray]:
    """The checkpoint's weights for the run: in ``form``, with a fresh head where the classes differ,
    and (keras.applications) conv1 taking RGB; every change written into ``record["notes"]``."""
    notes = record["notes"]
    notes.extend(source.notes)
    weights = to_form(source.weights, source.config, source.form, form)
    if source.form != form:
        notes.append(f"converted the weights from form ({source.form}) to ({form})")
    if source.config.num_classes != config.num_classes:
        fresh = init_weights(config, form, recipe.seed, recipe.zero_init_residual)
        weights = {k: v for k, v in weights.items() if k not in HEAD_TENSORS}
        weights |= {k: fresh[k] for k in HEAD_TENSORS}
        had = f"{source.config.num_classes} classes" if source.config.num_classes else "no head (headless)"
        notes.append(
            f"replaced the head: the checkpoint has {had}, the data {config.num_classes}; "
            f"fc is freshly initialised (seed {recipe.seed})"
        )
    if source.preprocessing == "caffe":
        weights = caffe_to_rgb(weights)
        notes.append(
            "conv1's input channels reversed, so the network takes RGB where the checkpoint took BGR"
        )
    if source.preprocessing is not None:
        notes.append(f"images normalised as the checkpoint expects ({source.preprocessing} statistics)")
    return weights


def _check_out_folder(out: str, record: dict, resume: bool) -> str | None:
    """The checkpoint to resume from (None for a new run); refuses a folder that does not fit."""
    found = _latest_checkpoint(out) if os.path.isdir(out) else None
    if resume:
        if found is None:
            raise TrainError(f"{out}: no checkpoint to resume from")
        with open(os.path.join(out, "config.json")) as f:
            before = json.load(f)
        with open(os.path.join(found, "state.json")) as f:
            done = json.load(f)["epoch"]
        differ = [
            f"{key} {old!r} (now {new!r})"
            for key, old, new in _differences(
                {k: before.get(k) for k in (*RESUME_KEYS, "image_size") if k in before},
                {k: record[k] for k in (*RESUME_KEYS, "image_size") if k in before},
            )
            if key != "recipe.epochs"  # extending a run: its schedule goes on over the new length
        ]
        if differ:
            raise TrainError(f"{out}: --resume with other settings than the run there: {'; '.join(differ)}")
        if record["recipe"]["epochs"] < done:
            raise TrainError(
                f"{out}: --epochs {record['recipe']['epochs']}, but the run there has done {done} epochs "
                "already"
            )
    elif found is not None:
        raise TrainError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    return found


def _differences(before: Any, now: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """Every leaf where two JSON records differ, as (dotted key, before, now)."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [
            d
            for k in sorted(set(before) | set(now))
            for d in _differences(before.get(k), now.get(k), f"{key}.{k}" if key else k)
        ]
    return [] if before == now else [(key, before, now)]


def run_name(model: str | None, init_from: str | os.PathLike | None, config_file: str | None = None) -> str:
    """What a run is called in its folder's and its plot's name: the preset, the checkpoint it started
    from (its file's name without the suffix) or the config file's name."""
    if model is not None:
        return model
    source = init_from or config_file
    if source is None:
        return "custom"
    name = os.path.basename(os.path.normpath(os.fspath(source)))
    return name.split(".")[0] or "custom"


def epoch_line(m: dict, epochs: int, test_split: str = "test") -> str:
    """One epoch's figures as one line (the log line, and the command's last line)."""
    return (
        f"epoch {m['epoch']}/{epochs}: train loss {m['train_loss']:.4f} acc {m['train_acc']:.4f}, "
        f"{test_split} loss {m['test_loss']:.4f} acc {m['test_acc']:.4f} ({m['seconds']:.0f} s)"
    )


def _train_epoch(engine, pipe, lr, epoch, start, sums, bar, on_step, save_position):
    """One epoch's steps from ``start``, adding to ``sums``: (loss sum, correct, images, training
    seconds) at its end. On Ctrl-C, ``save_position`` gets the exact position, then the interrupt goes on."""
    loss_sum, correct, seen, train_s = sums
    step = start
    for x, y in pipe.epoch(epoch, start=start):
        t = time.perf_counter()
        try:
            loss, ok = engine.train_step(x, y, lr)
            if not np.isfinite(loss):
                raise TrainError(
                    f"the training loss is {loss} at step {step + 1} of epoch {epoch + 1} (lr {lr:g}): "
                    "the run stopped, its last checkpoint kept; pass a smaller --lr"
                )
            train_s += time.perf_counter() - t
            if step == start:
                bar.first_step(time.perf_counter() - t)
            n = pipe.batch_size  # the global batch: loss and ok are the engine's, over it
            loss_sum, correct, seen, step = loss_sum + loss * n, correct + ok, seen + n, step + 1
            bar.update(f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f} {seen / train_s:.1f} img/s")
            if on_step is not None:
                on_step(epoch, step)
        except KeyboardInterrupt:
            save_position({"epoch": epoch, "step": step, "sums": [loss_sum, correct, seen, train_s]})
            raise
    return loss_sum, correct, seen, train_s


def _evaluate(engine, pipe) -> tuple[float, int]:
    """Summed loss and correct predictions over the test split.

    Every worker evaluates the whole split: no uneven shards, and it is small beside training.
    """
    total, right = 0.0, 0
    for x, y in pipe.epoch(0):
        batch_loss, ok = eval_metrics(engine.predict(x), y)
        total, right = total + batch_loss, right + ok
    return total, right
