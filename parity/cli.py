"""`resnext-parity`: the nine builds of each model against torch form (c), as a table and JSON.

Exit codes: 0 all checks passed, 1 some check failed, 2 bad input, 3 a bug (with its traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from resnext_spec import FORMS, ConfigError, get_config
from resnext_spec.cli_args import add_batch_size, add_device, add_keras_backend, add_wide, new_parser
from resnext_spec.errors import run_command
from resnext_spec.frameworks import FRAMEWORKS
from resnext_spec.grouped import CONV_IMPLS

from .harness import CHECKS, DEFAULT_MODELS, OPTIONAL_CHECKS, Settings, run_parity
from .runner_base import COMPILE_MODES, MAX_COMPILED_PATHS
from .runners import available_frameworks


def _list(value: str, allowed: list[str] | tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad or value!r}; choose from {', '.join(allowed)}")
    return items


def parser() -> argparse.ArgumentParser:
    p = new_parser("resnext-parity", __doc__)
    p.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="comma-separated presets, or 'all' (default: %(default)s)",
    )
    p.add_argument("--forms", default="a,b,c", type=lambda v: _list(v, FORMS, "form"))
    p.add_argument(
        "--frameworks",
        default=None,
        type=lambda v: _list(v, FRAMEWORKS, "framework"),
        help="comma-separated (default: every installed one of torch, keras, flax)",
    )
    p.add_argument(
        "--checks",
        default=",".join(CHECKS),
        type=lambda v: _list(v, CHECKS + OPTIONAL_CHECKS, "check"),
        help="comma-separated (default: %(default)s); 'trajectory' (K training steps in every build, "
        "lr drop half-way) runs only when named",
    )
    add_batch_size(p, 4, "images a check runs on (default: %(default)s)")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input size (default: 32 for CIFAR stems, 64 for ImageNet stems)",
    )
    p.add_argument("--seed", type=int, default=0)
    add_device(p, "cpu", "where every build runs; auto: a GPU if torch sees one (default: %(default)s)")
    p.add_argument(
        "--precision",
        choices=["float32", "float64", "bfloat16", "bf16"],
        default="float32",
        help="float32: the checks, floor measured against float64; float64: all nine builds in "
        "float64, bounds near 1e-12, for faults fp32's noise hides; bfloat16 (bf16): each "
        "framework's reduced precision against fp32, shown, never failed (default: %(default)s)",
    )
    add_keras_backend(p, "Keras backend (default: KERAS_BACKEND, else tensorflow; jax on --device gpu)")
    p.add_argument(
        "--compile",
        choices=list(COMPILE_MODES),
        default="auto",
        help="which Keras and Flax builds run compiled (tf.function / jax.jit); auto = all but "
        f"those with more than {MAX_COMPILED_PATHS} explicit paths, which compile for minutes "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--eager",
        action="store_const",
        const="never",
        dest="compile",
        help="run every build op by op, for debugging (same as --compile never)",
    )
    p.add_argument(
        "--conv-impl",
        choices=list(CONV_IMPLS),
        default="auto",
        help="how Keras and Flax compute grouped convs: auto = the fast one for the backend and "
        "device, native = the framework's own, patches = im2col per group (default: %(default)s)",
    )
    p.add_argument("--json", metavar="PATH", help="write every figure, with library versions, to PATH")
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="draw every error as a fraction of its bound to PATH (.png or .svg; needs matplotlib)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="every copy direction on its own row (by default, one per form)",
    )
    add_wide(p)
    return p


def _check_gpu() -> None:
    """--device gpu on a machine without one: refused before any work (torch is the reference)."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("--device gpu: torch sees no CUDA GPU on this machine; use --device cpu")


def _auto_device() -> str:
    try:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def main(argv: list[str] | None = None) -> int:
    """``resnext-parity``: 0 every check passed, 1 a check failed, 2 bad input, 3 a bug."""
    return run_command("resnext-parity", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # no TensorFlow C++ INFO lines (CPU flags, oneDNN)
    # torch's OpenMP threads wait for work asleep, not spinning: the Flax builds compile and run in a
    # worker thread beside torch's (harness.Harness.run_model), and spinning threads take its core.
    # Read when torch loads its OpenMP runtime, so set before torch is imported. make demo on 2 cores,
    # one run each: 81.0 s spinning, 74.7 s asleep; torch alone took 15-20 s either way.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parser().parse_args(argv)
    models = "all" if args.models == "all" else _models(args.models)
    if args.batch_size < 2 or (args.image_size is not None and args.image_size < 8):
        raise ConfigError("--batch-size must be >= 2 (train-mode BN needs a batch) and --image-size >= 8")
    device = _auto_device() if args.device == "auto" else args.device
    if device == "gpu":
        _check_gpu()
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        if not args.quiet:
            # one write: two threads report progress, and print() writes the line end on its own
            sys.stderr.write(f"[{time.perf_counter() - t0:6.1f}s] {msg}\n")
            sys.stderr.flush()

    from .report import plot_ratios, plot_trajectories, print_table, write_json

    if args.plot:
        try:
            import matplotlib  # noqa: F401  (fail before minutes of work, not after)
        except ImportError:
            raise ConfigError("--plot needs matplotlib (pip install -e '.[plot]')") from None

    precision = "bfloat16" if args.precision == "bf16" else args.precision
    # combinations the harness refuses (e.g. trajectory in float64), before any work
    Settings(checks=tuple(args.checks), device=device, precision=precision, compile=args.compile)
    try:
        result = run_parity(
            models,
            forms=args.forms,
            frameworks=args.frameworks or available_frameworks(),
            checks=args.checks,
            batch=args.batch_size,
            image_size=args.image_size,
            seed=args.seed,
            device=device,
            precision=precision,
            keras_backend=args.keras_backend,
            compile=args.compile,
            conv_impl=args.conv_impl,
            progress=progress,
        )
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"{e}; install the extras for the frameworks you ask for (pip install -e '.[all]') "
            "or pass --frameworks"
        ) from e
    print_table(result, verbose=args.verbose, wide=args.wide)
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot_ratios(result, args.plot)
        print(f"wrote {args.plot}")
        if result.meta.get("trajectories"):
            path = plot_trajectories(result, args.plot)
            print(f"wrote {path}")
    return 0 if result.passed else 1


def _models(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise ConfigError("--models is empty")
    for n in names:
        get_config(n)  # an unknown name raises, with the presets it may have meant
    return names


if __name__ == "__main__":
    sys.exit(main())
