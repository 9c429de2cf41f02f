"""`resnext-bench`: img/s and peak memory per framework, model, form and mode, with the peers.

Each row runs in a process of its own: the median of --repeats timed calls after
--warmup untimed ones (compilation included there). Reduced-precision rows report
their logits' error against fp32, so speed is never shown without its cost.
Exit codes: 0 every row measured, 1 some row failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from resnext_spec import FORMS, ArchConfig, ConfigError, list_presets
from resnext_spec.cli_args import add_batch_size, add_device, add_keras_backend, add_wide, new_parser
from resnext_spec.config import unknown_preset
from resnext_spec.errors import run_command
from resnext_spec.frameworks import FRAMEWORKS
from resnext_spec.grouped import CONV_IMPLS

from .measure import MODES
from .run import DEFAULT_MODELS, markdown_table, meta, plot, print_table, run_bench, write_json


def _list(allowed, what: str):
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if bad and what == "preset":
            raise argparse.ArgumentTypeError(unknown_preset(bad[0]))
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {bad or value!r}; choose from {', '.join(allowed)}"
            )
        return items

    return parse


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def parser() -> argparse.ArgumentParser:
    p = new_parser("resnext-bench", __doc__)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), type=_list(list_presets(), "preset"))
    p.add_argument(
        "--config", metavar="FILE.json", help="an ArchConfig as JSON (to_dict keys), benchmarked as 'custom'"
    )
    p.add_argument(
        "--frameworks",
        default=None,
        type=_list(FRAMEWORKS, "framework"),
        help="comma-separated (default: every installed one)",
    )
    add_keras_backend(
        p,
        "comma-separated: Keras runs once per backend (default: tensorflow,jax on CPU, jax on GPU)",
        type=_list(("tensorflow", "jax"), "Keras backend"),
    )
    p.add_argument("--forms", default="c", type=_list(FORMS, "form"))
    p.add_argument("--modes", default=",".join(MODES), type=_list(MODES, "mode"))
    p.add_argument("--no-peers", action="store_true", help="skip torchvision / keras.applications models")
    add_batch_size(p, 8, "images a timed call runs on (default: %(default)s)", type=_positive)
    p.add_argument(
        "--image-size", type=_positive, default=None, help="default: 32 px for CIFAR stems, 224 px otherwise"
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=_positive, default=5)
    add_device(p, "cpu", "where every build runs; auto: a GPU if torch sees one (default: %(default)s)")
    p.add_argument(
        "--conv-impl",
        choices=list(CONV_IMPLS),
        default="auto",
        help="how Keras and Flax compute grouped convs (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds one row may take")
    p.add_argument("--json", metavar="PATH", help="every row, raw timings and versions, to PATH")
    p.add_argument("--markdown", metavar="PATH", help="the table as markdown, to PATH")
    p.add_argument("--plot", metavar="PATH", help="img/s per build, peers marked (.png/.svg; matplotlib)")
    add_wide(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    """``resnext-bench``: 0 every row measured, 1 a row failed, 2 bad input, 3 a bug."""
    return run_command("resnext-bench", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # no TensorFlow C++ INFO lines (CPU flags, oneDNN)
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    configs = None
    models = args.models
    if args.config:
        try:
            configs = {"custom": ArchConfig.from_file(args.config)}
        except ConfigError as e:
            raise ConfigError(f"--config {e}") from e
        models = ["custom"] if "--models" not in " ".join(argv) else [*models, "custom"]
    progress = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    if args.device == "auto":
        import torch

        args.device = "gpu" if torch.cuda.is_available() else "cpu"
    settings = dict(
        frameworks=args.frameworks,
        keras_backends=args.keras_backend,
        forms=args.forms,
        modes=args.modes,
        peers=not args.no_peers,
        batch=args.batch_size,
        image_size=args.image_size,
        warmup=args.warmup,
        repeats=args.repeats,
        device=args.device,
        conv_impl=args.conv_impl,
    )
    rows = run_bench(models, configs=configs, timeout=args.timeout, progress=progress, **settings)
    info = meta(argv, models=list(models), wall_time_s=round(time.perf_counter() - t0, 1), **settings)
    title = (
        f"resnext-bench: batch {args.batch_size}, {args.image_size or 'by stem: 32 or 224'} px, "
        f"{args.device}, median of {args.repeats}"
    )
    print_table(rows, title, wide=args.wide)
    if args.json:
        write_json(rows, info, args.json)
    if args.markdown:
        from resnext_spec import atomic_write

        text = f"{title}\n\n{markdown_table(rows)}"
        atomic_write(args.markdown, lambda tmp: open(tmp, "w").write(text))
    if args.plot:
        plot(rows, args.plot, title)
    failed = [r for r in rows if "failed" in r]
    print(
        f"{len(rows) - len(failed)} rows measured, {len(failed)} failed in {time.perf_counter() - t0:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
