"""`resnext-explain PRESET --block NAME`: why forms (a), (b) and (c) are one function, on one block.

Prints how form (c)'s weights split into the C paths of (b) and (a), then pushes one
seeded input through the block in all three forms, stage by stage, with the largest
difference at each stage, and the block's parameter count in each form.
Exit codes: 0 the forms agree (every error under 1e-5), 1 they do not, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from resnext_spec import atomic_write, list_presets
from resnext_spec.cli_args import add_batch_size, add_keras_backend, add_wide, new_parser, set_keras_backend
from resnext_spec.errors import ConfigError, run_command
from resnext_spec.frameworks import FRAMEWORKS
from resnext_spec.tables import terminal_width

from .lesson import Lesson, explain


def parser() -> argparse.ArgumentParser:
    p = new_parser("resnext-explain", __doc__.splitlines()[0])
    p.epilog = "Example: resnext-explain resnext50_32x4d --block layer2.0 --framework flax"
    p.add_argument("preset", help=f"a bottleneck preset, e.g. resnext50_32x4d ({len(list_presets())} in all)")
    p.add_argument("--block", default="layer1.0", help="block name as in the weights, e.g. layer2.0")
    p.add_argument("--framework", default="torch", choices=FRAMEWORKS)
    p.add_argument("--path", type=int, default=None, help="show this path's slices and error too")
    p.add_argument("--image-size", type=int, default=None, help="image size the block's input comes from")
    add_batch_size(p, 1, "images pushed through the block (default: %(default)s)")
    add_keras_backend(p)
    add_wide(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="write everything shown, as JSON, to PATH")
    return p


def shown_paths(lesson: Lesson, extra: int | None) -> list[int]:
    """The first two paths, the last, and ``extra``: enough to see the pattern."""
    c = lesson.spec["cardinality"]
    picks = {0, 1, c - 1} | ({extra} if extra is not None else set())
    return sorted(p for p in picks if 0 <= p < c)


def cut(pair: list[int]) -> str:
    return f"{pair[0]}:{pair[1]}"


def input_shape(lesson: Lesson) -> str:
    """The input's shape as the framework takes it: NCHW in torch, NHWC in Keras and Flax."""
    n, h, w, c = lesson.input_shape
    return f"({n}, {c}, {h}, {w}) NCHW" if lesson.framework == "torch" else f"({n}, {h}, {w}, {c}) NHWC"


SHORTCUT_WORDS = {
    "identity": "an identity shortcut",
    "pool": "a strided shortcut (every second pixel)",
    "conv": "a projection shortcut (1x1 conv + BN)",
    "conv_alone": "a projection shortcut (1x1 conv, on the pre-activated input)",
    "avg_conv": "a projection shortcut (2x2 average pool, 1x1 conv, norm)",
}


def render(lesson: Lesson, extra_path: int | None, console: Any) -> None:
    from rich.table import Table

    s = lesson.spec
    stride = f"stride {s['stride']}" if s["stride"] > 1 else "stride 1"
    shortcut = SHORTCUT_WORDS[s["shortcut"]]
    console.rule(f"[bold]{lesson.preset} · {lesson.block} · {lesson.framework}")
    console.print(
        f"{s['in_channels']} -> {s['out_channels']} channels, {stride}, {shortcut}.\n"
        f"Form (c): 1x1 to {s['width']} channels, a 3x3 with {s['cardinality']} groups, 1x1 to "
        f"{s['out_channels']}. Forms (a) and (b): {s['cardinality']} paths of width d = {s['path_width']}."
    )
    for part in s["parts"]:
        console.print(f"Around the paths, in every form: {part}.")
    for note in lesson.notes:
        console.print(f"[dim]({note})")

    table = Table(
        title=f"1. How form (c)'s weights split into {s['cardinality']} paths", title_justify="left"
    )
    for col in (
        "path",
        "conv1.weight rows",
        "conv2: group = rows",
        "bn1, bn2 channels",
        "conv3.weight columns (a)",
    ):
        table.add_column(col)
    picks = shown_paths(lesson, extra_path)
    for i, p in enumerate(picks):
        if i and p != picks[i - 1] + 1:
            table.add_row("...", "", "", "", "")
        row = lesson.split[p]
        table.add_row(
            str(p),
            f"[{cut(row['conv1']['rows'])}] -> {tuple(row['conv1']['shape'])}",
            f"group {p} = [{cut(row['conv2']['rows'])}] -> {tuple(row['conv2']['shape'])}",
            cut(row["bn1_bn2"]["channels"]),
            f"[:, {cut(row['conv3_in_a']['columns'])}] -> {tuple(row['conv3_in_a']['shape'])}",
        )
    console.print(table)
    for problem in lesson.split_problems:
        console.print(f"[red]{problem}")
    console.print(
        f"(b) keeps conv3 whole ({s['out_channels']} x {s['width']}) and applies it to the concatenated "
        "paths; (a) gives each path its columns and sums. "
        + ("Both add conv3's bias once, after the merge." if s["conv3_bias"] else "")
        + ("" if s["preact"] else "Both keep bn3 whole, after the merge.")
    )

    table = Table(
        title=f"2. One input {input_shape(lesson)} (seeded) through the three forms, eval mode",
        title_justify="left",
    )
    for col, just in (("stage", "left"), ("compared", "left"), ("shape", "left"), ("max error", "right")):
        table.add_column(col, justify=just)
    for st in lesson.stages:
        err = f"{st['error']:.1e}"
        if "per_path" in st and extra_path is not None and 0 <= extra_path < len(st["per_path"]):
            err += f" (path {extra_path}: {st['per_path'][extra_path]:.1e})"
        table.add_row(st["step"], st["compared"], str(tuple(st["shape"])), err)
    console.print(table)
    console.print("max error = max|x - x_c| / max|x_c| against form (c); 0 where no sum is reordered.")

    p = lesson.params
    same = len(set(p.values()) | {s["spec_params"]}) == 1
    console.print(
        f"3. Parameters of the block: (a) {p['a']:,} · (b) {p['b']:,} · (c) {p['c']:,} "
        f"· spec formula {s['spec_params']:,} -> {'the same' if same else '[red]DIFFERENT'}"
    )
    verdict = "[green]the same function" if lesson.agrees else "[red]NOT the same function"
    console.print(f"Forms (a), (b), (c): {verdict} (worst error {lesson.worst:.1e}; {lesson.seconds:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    """``resnext-explain``: 0 the forms agree, 1 they differ, 2 bad input, 3 a bug."""
    return run_command("resnext-explain", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    set_keras_backend(args.keras_backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    lesson = explain(
        args.preset,
        args.block,
        framework=args.framework,
        batch=args.batch_size,
        image_size=args.image_size,
        seed=args.seed,
    )
    if args.path is not None and not 0 <= args.path < lesson.spec["cardinality"]:
        raise ConfigError(f"--path {args.path}: this block has paths 0..{lesson.spec['cardinality'] - 1}")
    try:
        from rich.console import Console

        render(lesson, args.path, Console(width=terminal_width(args.wide)))
    except ImportError:  # rich is optional: the JSON form, then
        print(json.dumps(lesson.to_dict(), indent=1))
    if args.json:
        text = json.dumps(lesson.to_dict(), indent=1)
        atomic_write(args.json, lambda tmp: open(tmp, "w").write(text))
    return 0 if lesson.agrees else 1


if __name__ == "__main__":
    sys.exit(main())
