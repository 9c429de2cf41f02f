"""`resnext-train`: one build, the paper's CIFAR recipe by default, the same in torch, Keras and Flax.

Writes into --out: config.json, metrics.jsonl (one line an epoch), curves.png and
checkpoint/ (the framework's own files, the canonical model.safetensors any build
loads, state.json). --resume continues from the checkpoint and ends where an
uninterrupted run ends (a checkpoint is written at the end of every epoch).
Exit codes: 0 done, 2 bad input (one line), 3 a bug (its traceback), 130 interrupted.

Fine-tuning: --init-from FILE starts from any checkpoint resnext-port reads (a timm,
torchvision, transformers, keras.applications or keras-hub file, or ours), in any
framework and form; a head of other classes is replaced by a fresh one. --freeze keeps
the stem, stages 1..K or the whole backbone exactly as loaded; --head-lr gives the
classifier its own learning rate.

Data-parallel: `torchrun --nproc-per-node N resnext-train --framework torch ...`
(DistributedDataParallel; --sync-bn for BN over the global batch), or `--num-devices
N|all` for Flax and Keras on JAX (a device mesh; BN over the global batch). The
batch size is the global batch; rank 0 writes every output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from resnext_spec import FORMS, ArchConfig, ConfigError, list_presets
from resnext_spec.cli_args import (
    add_device,
    add_keras_backend,
    add_stride_on,
    deprecated_alias,
    new_parser,
    set_keras_backend,
)
from resnext_spec.config import unknown_preset
from resnext_spec.errors import run_command
from resnext_spec.frameworks import FRAMEWORKS
from resnext_spec.grouped import CONV_IMPLS

BASE_LR, BASE_BATCH = 0.1, 128  # the ResNeXt paper's CIFAR rate and batch (Xie et al. 2017, 5.3)


def _milestones(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of fractions: {value!r}") from None


def _preset(value: str) -> str:
    if value not in list_presets():
        raise argparse.ArgumentTypeError(unknown_preset(value))
    return value


def parser() -> argparse.ArgumentParser:
    p = new_parser("resnext-train", __doc__)
    p.add_argument("--framework", required=True, choices=FRAMEWORKS)
    arch = p.add_mutually_exclusive_group()
    arch.add_argument("--model", type=_preset, metavar="PRESET", help="a preset name")
    arch.add_argument("--config", metavar="FILE.json", help="an ArchConfig as JSON (its to_dict keys)")
    p.add_argument(
        "--init-from",
        metavar="FILE",
        help="start from this checkpoint (any file resnext-port reads); its network is the run's "
        "(--model names it where the file cannot, as in resnext port)",
    )
    add_stride_on(p)
    p.add_argument(
        "--freeze",
        default="none",
        metavar="{none,stem,stages-K,backbone}",
        help="keep these exactly as loaded, BN statistics included (backbone: a linear probe)",
    )
    p.add_argument(
        "--head-lr", type=float, default=None, help="the classifier's learning rate (default --lr)"
    )
    p.add_argument(
        "--data", required=True, help="CIFAR-10/100 folder or .tar.gz, or a folder with train/ and val/"
    )
    p.add_argument("--form", default="c", choices=FORMS)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"learning rate (default: {BASE_LR} x batch size / {BASE_BATCH}: the paper's {BASE_LR} at batch "
        f"{BASE_BATCH}, scaled linearly, for fine-tuning too)",
    )
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4, help="torch-coupled: added to the gradient")
    p.add_argument("--milestones", type=_milestones, default=(0.5, 0.75), help="lr /10 at these fractions")
    p.add_argument("--seed", type=int, default=0, help="initial weights and the data order")
    p.add_argument("--zero-init-residual", action="store_true", help="each block's last BN gamma starts at 0")
    p.add_argument("--out", default=None, help="output folder (default runs/MODEL-FRAMEWORK-FORM)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_keras_backend(p)
    p.add_argument("--conv-impl", choices=CONV_IMPLS, default="auto", help="grouped convs in Keras and Flax")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="crop size for image-folder datasets (default: the size the resumed run or the --init-from "
        "run was trained at, else 224, or 7/8 of the images' shorter side where they are under 256 px)",
    )
    add_device(
        p, "auto", "where the run trains; auto: a GPU if the framework sees one (default: %(default)s)"
    )
    p.add_argument(
        "--num-devices",
        default=None,
        metavar="N|all",
        help="Flax / Keras-JAX: split each batch over N devices, or 'all'",
    )
    deprecated_alias(p, "--devices", "num_devices")
    p.add_argument("--sync-bn", action="store_true", help="torch under torchrun: BN over the global batch")
    p.add_argument(
        "--stop-after", type=int, default=None, metavar="EPOCH", help="end after this epoch; --resume goes on"
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress (by default a bar on a terminal, a line an epoch in a log or pipe)",
    )
    return p


def _config_flag(path: str) -> ArchConfig:
    try:
        return ArchConfig.from_file(path)
    except ConfigError as e:
        raise ConfigError(f"--config {e}") from e


def main(argv: list[str] | None = None) -> int:
    """``resnext-train``: 0 trained, 2 bad input (one line), 3 a bug (its traceback), 130 interrupted."""
    return run_command("resnext-train", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # no TensorFlow C++ INFO lines (CPU flags, oneDNN)
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not (args.model or args.config or args.init_from):
        raise ConfigError("give the network: --model PRESET, --config FILE.json or --init-from CHECKPOINT")
    config = _config_flag(args.config) if args.config else None
    if args.keras_backend:
        if args.framework != "keras":
            raise ConfigError("--keras-backend applies to --framework keras only")
        set_keras_backend(args.keras_backend)

    devices = args.num_devices
    if devices is not None and devices != "all":
        if not devices.isdigit() or int(devices) < 1:
            raise ConfigError(f"--num-devices takes a count >= 1 or 'all', got {devices!r}")
        devices = int(devices)

    from resnext_spec.training import Recipe

    from .loop import describe_checkpoint, epoch_line, run_name, train
    from .parallel import init_process_group

    lr = args.lr
    if lr is None:
        lr = BASE_LR * args.batch_size / BASE_BATCH
        print(
            f"note: lr {lr:g}: {BASE_LR} x batch {args.batch_size} / {BASE_BATCH} (the linear scaling rule); "
            "pass --lr to set it"
        )
    recipe = Recipe(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        milestones=args.milestones,
        seed=args.seed,
        zero_init_residual=args.zero_init_residual,
        freeze=args.freeze,
        head_lr=args.head_lr,
    )
    name = run_name(args.model, args.init_from, args.config)
    out = args.out or os.path.join("runs", f"{name}-{args.framework}-{args.form}")
    try:
        rank = init_process_group(args.framework)
    except (RuntimeError, ValueError) as e:  # what torch.distributed raises on a bad rendezvous
        raise ConfigError(f"cannot join the other processes: {e}") from e
    try:
        metrics = train(
            args.framework,
            args.data,
            model=args.model,
            config=config,
            form=args.form,
            recipe=recipe,
            out=out,
            resume=args.resume,
            conv_impl=args.conv_impl,
            image_size=args.image_size,
            progress=not args.quiet,
            devices=devices,
            sync_bn=args.sync_bn,
            stop_after=args.stop_after,
            init_from=args.init_from,
            device=args.device,
            stride_on=args.stride_on,
            on_note=(lambda note: print(f"note: {note}")) if rank == 0 else None,
        )
    except KeyboardInterrupt:
        if rank == 0:
            print(f"resnext-train: interrupted; {describe_checkpoint(out)}", file=sys.stderr)
        return 130
    finally:
        from .parallel import leave_process_group

        leave_process_group()
    if rank != 0:
        return 0
    with open(os.path.join(out, "config.json")) as f:
        split = json.load(f).get("test_split", "test")
    print(f"{epoch_line(metrics[-1], args.epochs, split)}; results in {out}")
    return 0
