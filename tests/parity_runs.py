"""The full parity runs several test files read, each run once per pytest session.

A full run (all nine builds, every check) of a real preset costs minutes on 2
CPU cores, and the torch, Keras, Flax and harness tests all ask questions of
the same run, so it is made once and shared. RESNEXT_TEST_FRAMEWORKS narrows
the frameworks (the Makefile's second, Keras-on-JAX pass uses "torch,keras").
"""

from __future__ import annotations

import functools
import os

from parity import ParityResult, run_parity
from parity.runners import FRAMEWORKS

# preset -> input size: CIFAR models at their native 32, ImageNet ones small enough for CI.
FULL_MODELS = {"resnext29_8x64d": 32, "resnext26_32x4d": 32, "resnext50_32x4d": 64}


def frameworks() -> tuple[str, ...]:
    wanted = os.environ.get("RESNEXT_TEST_FRAMEWORKS")
    return tuple(wanted.split(",")) if wanted else FRAMEWORKS


@functools.cache
def full_run(name: str) -> ParityResult:
    return run_parity([name], frameworks=frameworks(), image_size=FULL_MODELS[name], batch=4)


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
