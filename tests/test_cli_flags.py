"""The commands' flags: no prefixes, one spelling an idea, and no advice that names a flag the
command refuses.

Hints are collected as a user meets them: each command run in a subprocess, its output to a pipe,
on a file that draws a hint; every ``--flag`` it prints must be one the same command accepts, and
the hint followed must do what it says.
"""

import argparse
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from parity.cli import parser as parity_parser
from resnext_bench.cli import parser as bench_parser
from resnext_explain.cli import parser as explain_parser
from resnext_export.cli import parser as export_parser
from resnext_port.cli import parser as port_parser
from resnext_spec import ArchConfig, random_weights
from resnext_spec.cli_args import DEPRECATED, option_strings
from resnext_train.cli import parser as train_parser

PARSERS = {
    "parity": parity_parser,
    "port": port_parser,
    "train": train_parser,
    "bench": bench_parser,
    "explain": explain_parser,
    "export": export_parser,
}
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
# Spellings of one idea: at most one of each family may appear in all the commands' --help.
FAMILIES = [
    {"--batch", "--batch-size", "--bs"},
    {"--keras-backend", "--keras-backends", "--backend"},
    {"--device", "--devices-kind", "--platform"},
    {"--num-devices", "--devices", "--n-devices"},
    {"--quiet", "--silent"},
    {"--image-size", "--size", "--resolution"},
]


def run(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnext_cli", *argv], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def flags_in(text: str) -> set[str]:
    return set(FLAG.findall(text))


def minimal_argv(p) -> list[str]:
    """What ``p`` requires, filled in: each positional, and each required flag with a value it takes."""
    argv = []
    for a in p._actions:
        if not a.option_strings:
            argv.append("x")
        elif a.required:
            argv += [a.option_strings[0], str(a.choices[0]) if a.choices else "x"]
    return argv


@pytest.mark.parametrize("verb", PARSERS)
def test_no_command_takes_a_prefix_of_a_flag(verb, capsys):
    p = PARSERS[verb]()
    assert p.allow_abbrev is False
    # a flag that takes any value ("1" parses as int, float or str), cut short: with prefix matching
    # on, this argv would parse
    takes_value = [
        a
        for a in p._actions
        if a.option_strings and a.nargs is None and not a.choices and a.const is None
        and a.type in (None, int, float, str) and a.help != argparse.SUPPRESS
    ]  # fmt: skip
    flag = max((s for a in takes_value for s in a.option_strings if s.startswith("--")), key=len)
    with pytest.raises(SystemExit) as e:
        p.parse_args([*minimal_argv(p), flag[:-2], "1"])
    assert e.value.code == 2 and f"unrecognized arguments: {flag[:-2]}" in capsys.readouterr().err


def test_a_prefix_is_refused_by_the_command_as_a_user_types_it(tmp_path):
    """`resnext train --epoch 1` once ran as --epochs; now argparse names it."""
    done = run(
        "train", "--framework", "torch", "--model", "resnet18", "--data", str(tmp_path), "--epoch", "1"
    )
    assert done.returncode == 2 and "unrecognized arguments: --epoch" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_each_idea_has_one_spelling_across_the_commands():
    shown = {verb: flags_in(make().format_help()) for verb, make in PARSERS.items()}
    every = set().union(*shown.values())
    for family in FAMILIES:
        used = family & every
        assert len(used) <= 1, f"one idea, several spellings: {sorted(used)}"
    # and one meaning: the same choices wherever a shared flag takes choices
    choices: dict[str, set] = {}
    for make in PARSERS.values():
        for action in make()._actions:
            for s in action.option_strings:
                if s in ("--device", "--keras-backend", "--stride-on") and action.choices:
                    choices.setdefault(s, set()).add(tuple(action.choices))
    assert all(len(c) == 1 for c in choices.values()), choices


@pytest.mark.parametrize("verb", ["parity", "train", "bench", "port", "explain", "export"])
def test_every_command_that_builds_keras_takes_its_backend_by_the_same_flag(verb):
    assert "--keras-backend" in option_strings(PARSERS[verb]())


OTHER_PROGRAMS = re.compile(r"torchrun (--[a-z-]+ \S+ )*")  # `torchrun --nproc-per-node N resnext-train`


@pytest.mark.parametrize("verb", PARSERS)
def test_every_flag_a_help_text_names_is_one_the_command_takes(verb):
    p = PARSERS[verb]()
    named = flags_in(OTHER_PROGRAMS.sub("", p.format_help()))
    assert named, "a help text names flags"
    assert named <= set(option_strings(p, shown_only=False)), sorted(named - set(option_strings(p, False)))


def test_the_old_spellings_still_work_for_one_release_and_say_the_new_one(capsys):
    assert parity_parser().parse_args(["--batch", "3"]).batch_size == 3
    assert bench_parser().parse_args(["--keras-backends", "jax"]).keras_backend == ["jax"]
    args = train_parser().parse_args(["--framework", "flax", "--data", "x", "--devices", "2"])
    assert args.num_devices == "2"
    err = capsys.readouterr().err
    shown = set().union(*(flags_in(make().format_help()) for make in PARSERS.values()))
    for old, new in DEPRECATED.items():
        assert f"{old} is deprecated; use {new}" in err
        assert old not in shown and new in shown


# ---- hints, as the commands print them --------------------------------------------------------

# A bottleneck on the ImageNet stem: a bare state_dict of it cannot say where it strides.
BOTTLENECK = ArchConfig(
    layers=(1, 1), cardinality=2, base_width=8, stem="imagenet", num_classes=7, stem_width=16
)


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "model.pth"
    weights = random_weights(BOTTLENECK, "c", seed=3)
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}, path)
    return path


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    from resnext_data.synthetic import write_cifar

    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), "cifar10-bin", n_train=8, n_test=8, learnable=True)
    return str(root)


def assert_hints_are_flags_of(verb: str, text: str) -> set[str]:
    hinted = {f for f in flags_in(text)}
    accepted = set(option_strings(PARSERS[verb](), shown_only=False))
    assert hinted <= accepted, (
        f"resnext {verb} advises {sorted(hinted - accepted)}, which it refuses:\n{text}"
    )
    return hinted


def test_the_stride_hint_names_a_flag_of_each_command_that_reads_a_checkpoint(
    torchvision_pth, tmp_path, cifar
):
    pth = str(torchvision_pth)
    said = {
        "port": run("port", pth, str(tmp_path / "w.safetensors")),
        "export": run("export", pth, "--framework", "torch", "--out", str(tmp_path / "a.pt2")),
        "train": run(
            "train", "--framework", "torch", "--init-from", pth, "--data", cifar,
            "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "run"), "--image-size", "32",
        ),
    }  # fmt: skip
    for verb, done in said.items():
        assert done.returncode == 0, done.stderr
        assert "--stride-on 1x1" in done.stdout, f"{verb}: {done.stdout}"
        assert "--stride-on" in assert_hints_are_flags_of(verb, done.stdout + done.stderr)


def test_following_the_stride_hint_reads_the_file_as_resnet_v1(torchvision_pth, tmp_path):
    out = tmp_path / "v1.pt2"
    done = run(
        "export", str(torchvision_pth), "--framework", "torch", "--out", str(out), "--stride-on", "1x1"
    )
    assert done.returncode == 0, done.stderr
    assert "stride's place" not in done.stdout
    import json

    assert json.loads((tmp_path / "v1.pt2.json").read_text())["config"]["stride_on"] == "1x1"


def test_the_refusals_name_flags_the_command_takes(tmp_path, cifar):
    (tmp_path / "there.onnx").write_bytes(b"x")
    done = run("export", "resnet18", "--framework", "torch", "--out", str(tmp_path / "there.onnx"))
    assert done.returncode == 2 and "--force" in assert_hints_are_flags_of("export", done.stderr)
    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint" / "state.json").write_text('{"epoch": 1}')
    done = run(
        "train", "--framework", "torch", "--model", "resnet18", "--data", cifar,
        "--out", str(tmp_path / "run"), "--batch-size", "8",
    )  # fmt: skip
    assert done.returncode == 2 and "--resume" in assert_hints_are_flags_of("train", done.stderr)
    done = run("export", "resnet18", "--framework", "torch", "--out", str(tmp_path / "m"))
    assert done.returncode == 2 and "--framework" in assert_hints_are_flags_of("export", done.stderr)
    done = run("export", "resnet18", "--framework", "torch", "--out", str(tmp_path / "m.xyz"))
    assert done.returncode == 2 and "--format" in assert_hints_are_flags_of("export", done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "there.onnx"]
