"""`resnext-port SRC DST`: weights from one framework's file into another's, any block form.

Formats by suffix: .pth/.pt (torch state_dict or a checkpoint holding one),
.safetensors, .weights.h5 (Keras), .msgpack (Flax); a folder (or a new path with
no suffix) is a Hugging Face transformers ResNet model directory. Exit codes: 0 ported
(and verified, with --verify), 1 --verify found the two apart (it says at which stage),
2 bad input (nothing is written).
"""

from __future__ import annotations

import argparse
import os
import sys

from resnext_spec import FORMS
from resnext_spec.cli_args import add_keras_backend, add_source_options, new_parser, set_keras_backend
from resnext_spec.errors import run_command
from resnext_spec.tolerances import TOL

from .port import describe, port


def parser() -> argparse.ArgumentParser:
    p = new_parser("resnext-port", __doc__)
    p.add_argument("src", help="the file to read")
    p.add_argument("dst", help="the file to write (its suffix picks the format)")
    add_source_options(p)
    p.add_argument("--form", choices=FORMS, help="block form of SRC (default: from the file or its names)")
    p.add_argument("--to-form", choices=FORMS, help="block form to write (default: SRC's)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="compare SRC and DST as written at every stage (stem, stages, pooled features, logits)",
    )
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    add_keras_backend(
        p, "the backend Keras reads and writes .weights.h5 on (default: KERAS_BACKEND, else tensorflow)"
    )
    p.add_argument(
        "--layout",
        choices=("keras.applications", "keras-hub"),
        help="write DST for another library to load: a .weights.h5 for keras.applications' ResNet50/101/152 "
        "or V2, a folder for keras-hub's from_preset",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``resnext-port``: 0 ported, 1 --verify found the logits apart, 2 bad input, 3 a bug."""
    return run_command("resnext-port", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # no TensorFlow C++ INFO lines (CPU flags, oneDNN)
    args = parser().parse_args(argv)
    set_keras_backend(args.keras_backend)
    result = port(
        args.src,
        args.dst,
        model=args.model,
        form=args.form,
        to_form=args.to_form,
        num_classes=args.num_classes,
        stride_on=args.stride_on,
        verify=args.verify,
        force=args.force,
        layout=args.layout,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    for note in result.notes:
        print(f"note: {note}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"ported {result.src} -> {result.dst}: {describe(result.config)}, "
        f"form ({result.src_form}) -> ({result.dst_form}) in {result.seconds:.1f} s"
    )
    if result.verify_stages is not None:
        output = "logit" if "logits" in result.verify_stages else "pooled feature"
        verdict = "ok" if result.verified else f"FAILED: they part at {result.parted_at}"
        print(
            f"verify: max relative {output} error {result.verify_error:.2e} (tolerance {TOL:.0e}): {verdict}"
        )
        print("verify, per stage: " + ", ".join(f"{k} {e:.1e}" for k, e in result.verify_stages.items()))
        return 0 if result.verified else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
