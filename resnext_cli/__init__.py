"""``resnext``: one command over the six tools, like ``git`` over its verbs.

``resnext parity ...`` is exactly ``resnext-parity ...`` (same flags, help and exit
codes), and so on for port, train, bench, explain and export. This package sits above the
tools and is the only one that names them all; it loads a tool only when its verb
is run, so ``resnext --help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys

# verb -> (the module whose main() runs it, its one line in `resnext --help`)
COMMANDS = {
    "parity": ("parity.cli", "prove the nine builds compute the same function (the report)"),
    "port": ("resnext_port.cli", "move weights between torch, timm, HF, Keras and Flax files, any form"),
    "train": ("resnext_train.cli", "train one build with the same recipe and batches in every framework"),
    "bench": ("resnext_bench.cli", "img/s and peak memory of every build beside the frameworks' own models"),
    "explain": ("resnext_explain.cli", "take one block apart and show forms (a), (b), (c) agree"),
    "export": ("resnext_export.cli", "one build as ONNX, LiteRT, SavedModel, StableHLO or .pt2, verified"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {verb:<{width}}  {summary}" for verb, (_, summary) in COMMANDS.items()]
    return (
        "usage: resnext COMMAND [ARGS...]\n\n"
        "ResNet and ResNeXt in PyTorch, Keras 3 and Flax NNX, in the paper's three block forms.\n\n"
        "commands:\n" + "\n".join(lines) + "\n\n"
        "`resnext COMMAND --help` shows a command's flags; each is also installed as resnext-COMMAND.\n"
        "`resnext --version` prints this package's version and its frameworks'.\n"
    )


FRAMEWORK_DISTS = ("torch", "keras", "tensorflow", "tensorflow-cpu", "jax", "flax")


def version() -> str:
    """This package's version and the frameworks' installed here, as the reports record them."""
    from importlib import metadata

    from resnext_spec.versions import versions

    found = versions()
    here = ", ".join(f"{d} {found[d]}" for d in FRAMEWORK_DISTS if d in found)
    return f"resnext-three-ways {metadata.version('resnext-three-ways')} ({here}; python {found['python']})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    if argv[0] in ("-V", "--version"):
        print(version())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in COMMANDS:
        print(f"resnext: unknown command {verb!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[verb][0])
    return module.main(rest)
