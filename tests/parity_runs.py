"""The full parity runs several test files read, each run once per pytest session.

A full run (all nine builds, every check) of a real preset costs minutes on 2
CPU cores, and the torch, Keras, Flax and harness tests all ask questions of
the same run, so it is made once and shared. RESNEXT_TEST_FRAMEWORKS narrows
the frameworks (the Makefile's second, Keras-on-JAX pass uses "torch,keras").
"""

from __future__ import annotations

import functools
import os

import pytest
from helpers import TINY, TINY_1X1

from parity import CHECKS, ParityResult, run_parity
from resnext_spec.frameworks import FRAMEWORKS

# preset -> what its shared full run covers, kept small enough for CI (under 45 minutes on 2
# cores) now that the sgd check takes three steps:
# - CIFAR models at 16 px (layer3 at 4x4): their structure, the point of these runs, does not
#   depend on the size;
# - resnext29_8x64d without the sgd check: the three optimizer steps doubled its cost (743 s of
#   the first pass, 259 s of the second), and what they prove does not depend on the network:
#   sgd runs on both tiny configs here, on resnext26_32x4d, and in float64 on the default model
#   (tests/test_precision.py), all nine builds; and in forms (a) and (c): (b), the half-way form,
#   runs in full on the default model (float64, every check), the tiny configs and test_explain,
#   and here cost about a third of the run's 430 s (2026-11-26, CI with data-parallel tests);
# - resnext26_32x4d in form (c) only: it is there for the fast grouped-conv lowering at 32
#   groups (forms a/b at 32 paths are resnext50_32x4d's, and cost 580 s here);
# - resnext50_32x4d at 32 px, the least its 7x7 stem and max-pool allow (1x1 for layer4), without
#   the sgd check: three fp32 steps there are chaotic (running-variance floor 5.1, shown and not
#   judged; resnext_spec.tolerances.CHAOTIC_FLOOR), so they cost 400 s and prove nothing; and in forms
#   (a) and (c): (b) is the half-way form (the paths of (a), the 1x1 of (c)), runs in full on
#   resnext29_8x64d and the tiny configs, and at 32 paths in test_explain; here its 512 paths
#   cost about a third of the run's 700-900 s.
FULL_MODELS = {
    "resnext29_8x64d": dict(image_size=16, forms=("a", "c"), checks=tuple(c for c in CHECKS if c != "sgd")),
    "resnext26_32x4d": dict(image_size=16, forms=("c",)),
    "resnext50_32x4d": dict(image_size=32, forms=("a", "c"), checks=tuple(c for c in CHECKS if c != "sgd")),
}


def frameworks() -> tuple[str, ...]:
    wanted = os.environ.get("RESNEXT_TEST_FRAMEWORKS")
    return tuple(wanted.split(",")) if wanted else FRAMEWORKS


@functools.cache
def full_run(name: str) -> ParityResult:
    return run_parity([name], frameworks=frameworks(), batch=4, **FULL_MODELS[name])


# The two tiny configs every framework's parity tests read: one shared run each, all frameworks
# (RESNEXT_TEST_FRAMEWORKS narrows them), all three forms, every check; the fast tier's proof
# that every framework x form x check holds (tests/test_tiers.py asserts the rows are all there).
TINY_RUNS = {"tiny": (TINY, 16), "tiny_1x1": (TINY_1X1, 32)}


@functools.cache
def tiny_run(name: str) -> ParityResult:
    config, size = TINY_RUNS[name]
    return run_parity([name], frameworks=frameworks(), configs={name: config}, image_size=size)


def shared(run: str):
    """Mark the tests that read one computed run, so `pytest -n 2 --dist loadgroup` runs them
    all on one worker and the run is made once (the Makefile runs the suite on 2 workers)."""
    return pytest.mark.xdist_group(run)


def full_run_group(name: str):
    return shared(f"full_{name}")


def cases() -> list:
    """The runs a framework's parity tests ask: the two tiny configs and two real presets, all shared.

    The real presets are the full tier's (marked slow); the tiny runs are in both tiers.
    """
    return [
        pytest.param(lambda: tiny_run("tiny"), id="tiny", marks=shared("tiny")),
        pytest.param(lambda: tiny_run("tiny_1x1"), id="tiny_stride_on_1x1", marks=shared("tiny_1x1")),
        pytest.param(
            lambda: full_run("resnext29_8x64d"),
            id="resnext29_8x64d",
            marks=[pytest.mark.slow, full_run_group("resnext29_8x64d")],
        ),
        # On the second Keras backend resnext29_8x64d covers the grouped stride-2 blocks and
        # tiny_stride_on_1x1 the ImageNet stem, so the resnext50 run is left to the first.
        pytest.param(
            lambda: full_run("resnext50_32x4d"),
            id="resnext50_32x4d",
            marks=[pytest.mark.slow, pytest.mark.first_backend_only, full_run_group("resnext50_32x4d")],
        ),
    ]


def rows(result: ParityResult, framework: str | None = None, check: str | None = None, quantity=None):
    """The result rows of one framework / check / quantity (None: any)."""
    out = [
        r
        for r in result.results
        if (framework is None or r.framework == framework)
        and (check is None or r.check == check)
        and (quantity is None or r.quantity == quantity)
    ]
    assert out, (framework, check, quantity)
    return out


def failures(result: ParityResult, framework: str) -> list[tuple]:
    """(form, check, quantity, tensor, error, bound) of each failed row of ``framework``."""
    return [
        (r.form, r.check, r.quantity, r.tensor, r.error, r.bound)
        for r in rows(result, framework)
        if not r.passed
    ]


def eval_logits_by_form(result: ParityResult, framework: str) -> dict[str, float]:
    """Each form's eval-logit error against torch (c); every form the run asked for is there
    (all three in the tiny runs; (a) and (c) in the real presets)."""
    forms = {r.form: r.error for r in rows(result, framework, "eval", "logits")}
    assert set(forms) == set(result.meta["forms"]), forms
    return forms
