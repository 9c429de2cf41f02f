"""The flags the commands share, each spelled once, with one meaning, wherever it appears.

Every command builds its parser with :func:`new_parser`, which turns argparse's prefix matching off:
with it on, ``resnext train --device gpu`` was taken as ``--devices`` and ``--epoch`` as
``--epochs``, so a typo ran something else. Each idea that several commands share has one helper
here, and the spellings the commands used before are kept, for one release, as hidden aliases that
say what to write instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .config import STRIDE_ON
from .frameworks import KERAS_BACKENDS

DEVICES = ("auto", "cpu", "gpu")
# old spelling -> the flag that replaced it (kept one release; `--help` shows only the new one)
DEPRECATED = {"--batch": "--batch-size", "--keras-backends": "--keras-backend", "--devices": "--num-devices"}


def new_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )


class _Deprecated(argparse.Action):
    """Store the value as the new flag would, and say on stderr which flag to use."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        new = DEPRECATED[option_string]
        print(f"{parser.prog}: {option_string} is deprecated; use {new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(p: argparse.ArgumentParser, old: str, dest: str, **kwargs: Any) -> None:
    p.add_argument(
        old, dest=dest, action=_Deprecated, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs
    )


def add_batch_size(p: argparse.ArgumentParser, default: int, help: str, type=int) -> None:
    p.add_argument("--batch-size", type=type, default=default, help=help)
    deprecated_alias(p, "--batch", "batch_size", type=type)


def add_device(p: argparse.ArgumentParser, default: str, help: str) -> None:
    p.add_argument("--device", choices=DEVICES, default=default, help=help)


def add_keras_backend(p: argparse.ArgumentParser, help: str | None = None, type=None) -> None:
    """``--keras-backend``: the backend Keras runs on in this command (default ``KERAS_BACKEND``, else
    TensorFlow). ``type`` lets bench take a comma-separated list of them."""
    kwargs: dict[str, Any] = {"type": type} if type is not None else {"choices": KERAS_BACKENDS}
    p.add_argument(
        "--keras-backend",
        default=None,
        help=help or "the backend of --framework keras (default: KERAS_BACKEND, else tensorflow)",
        **kwargs,
    )
    if type is not None:
        deprecated_alias(p, "--keras-backends", "keras_backend", type=type)


def set_keras_backend(backend: str | None) -> None:
    """Make ``backend`` the one Keras loads with; refused once Keras is loaded on another."""
    from .errors import ConfigError

    if backend is None:
        return
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise ConfigError(f"Keras is already loaded on another backend; cannot switch to {backend}")
    os.environ["KERAS_BACKEND"] = backend


def add_source_options(p: argparse.ArgumentParser) -> None:
    """How to read a checkpoint whose file does not say everything: the flags `resnext port` has
    always had, and every command that reads "any checkpoint" (export, train's --init-from) has too,
    so the hints a read prints name flags that exist."""
    p.add_argument(
        "--model",
        help="preset of the checkpoint's network (default: from the file, else inferred from shapes)",
    )
    p.add_argument(
        "--num-classes", type=int, help="classes of the checkpoint's head, with --model (0: headless)"
    )
    add_stride_on(p)


def add_stride_on(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stride-on",
        choices=sorted(STRIDE_ON),
        help="where a bottleneck checkpoint strides, when its file does not say "
        "(default 3x3: torchvision's ResNet v1.5; 1x1: ResNet v1)",
    )


def add_wide(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wide",
        action="store_true",
        help="one wide table (by default a table wider than the terminal is split into parts that fit)",
    )


def option_strings(p: argparse.ArgumentParser, shown_only: bool = True) -> Sequence[str]:
    """Every flag ``p`` accepts (``shown_only``: those its --help shows, not the deprecated aliases)."""
    return [
        s for a in p._actions for s in a.option_strings if not (shown_only and a.help == argparse.SUPPRESS)
    ]
