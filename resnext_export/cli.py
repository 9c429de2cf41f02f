"""`resnext-export SOURCE --framework F --out PATH`: one build as a deployable artifact.

SOURCE is a preset (seeded random weights, BN randomised), a config .json, or any checkpoint
resnext-port reads. The format comes from --format or OUT's suffix: .onnx, .tflite, .stablehlo,
.pt2, or no suffix for a TensorFlow SavedModel folder. The batch is dynamic; the image size is
fixed (--image-size). Beside the artifact, OUT.json says the input's layout, shape and
preprocessing. Exit codes: 0 exported (and verified, with --verify), 1 --verify found the
artifact apart from the reference, 2 bad input or an unsupported pair (nothing is written).

Pairs: torch -> onnx, pt2; keras -> onnx (TensorFlow, JAX or torch backend), saved_model
(TensorFlow, JAX), tflite (TensorFlow), stablehlo (JAX); flax -> onnx, stablehlo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from resnext_spec import FORMS
from resnext_spec.checkpoint import atomic_write_bytes
from resnext_spec.cli_args import add_keras_backend, add_source_options, new_parser, set_keras_backend
from resnext_spec.errors import run_command
from resnext_spec.frameworks import FRAMEWORKS

from .artifacts import quiet_tf
from .export import VERIFY_ROWS, ExportResult, export, sidecar_path
from .formats import FORMATS


def parser() -> argparse.ArgumentParser:
    p = new_parser("resnext-export", __doc__)
    p.add_argument("source", help="a preset, a config .json or a checkpoint file")
    p.add_argument("--framework", required=True, choices=FRAMEWORKS, help="the build to export")
    p.add_argument("--format", dest="fmt", choices=list(FORMATS), help="default: from OUT's suffix")
    p.add_argument("--out", required=True, help="the artifact to write")
    p.add_argument(
        "--form", choices=FORMS, help="block form of the build (default: the source's; c for a preset)"
    )
    p.add_argument(
        "--image-size",
        type=int,
        help="input height and width (default: what a run's checkpoint was trained at, else 224; "
        "32 for CIFAR stems)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="run the artifact in its runtime against torch form (c) and the source build; time it",
    )
    p.add_argument("--repeats", type=int, default=10, help="timed calls per latency figure (--verify)")
    p.add_argument("--seed", type=int, default=0, help="random weights of a preset, and the images")
    p.add_argument("--json", help="write the result, with every figure, to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    add_keras_backend(
        p, "the backend of --framework keras (default: KERAS_BACKEND, else the one the format needs)"
    )
    add_source_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``resnext-export``: 0 exported, 1 --verify found a difference, 2 bad input, 3 a bug."""
    return run_command("resnext-export", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    quiet_tf()
    args = parser().parse_args(argv)
    set_keras_backend(args.keras_backend)
    result = export(
        args.source,
        args.out,
        args.framework,
        fmt=args.fmt,
        form=args.form,
        image_size=args.image_size,
        verify=args.verify,
        force=args.force,
        seed=args.seed,
        repeats=args.repeats,
        read_as=dict(model=args.model, num_classes=args.num_classes, stride_on=args.stride_on),
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(report(result))
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    return 0 if result.verification is None or result.verification.passed else 1


def report(r: ExportResult) -> str:
    engine = f"keras on {r.keras_backend}" if r.keras_backend else r.framework
    lines = [f"note: {n}" for n in r.notes]
    lines.append(
        f"exported {r.source} -> {r.out} ({FORMATS[r.format].description}): {engine}, form ({r.form}), "
        f"input {r.layout} {r.input_shape}, {r.size_bytes / 2**20:.1f} MiB "
        f"(weights {r.weight_bytes / 2**20:.1f} MiB) in {r.export_seconds:.1f} s; "
        f"layout and preprocessing in {os.fspath(sidecar_path(r.out))}"
    )
    v = r.verification
    if v is not None:
        if v.failure is not None:
            lines.append(f"verify: FAILED: {v.failure}")
            return "\n".join(lines)
        verdict = "ok" if v.passed else "FAILED"
        lines.append(
            f"verify: max relative logit error {v.errors['reference']:.2e} (bound {v.bound:.0e}): {verdict}"
        )
        for key, text in VERIFY_ROWS.items():
            if key in v.errors:
                lines.append(f"  {key:<10} {v.errors[key]:.1e}  {text}")
        for batch, t in v.latency_ms.items():
            lines.append(
                f"  latency, batch {batch}: artifact {t['artifact']:.2f} ms, {engine} {t['source']:.2f} ms"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
