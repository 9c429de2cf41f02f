"""Build and forward times of each form of a preset in Keras and Flax, on this machine.

Prints a markdown table: build time, first call (for Flax: jit compile + run, and
eager), steady-state forward (median of ``--repeats``), one image batch in eval mode.
Usage: python -m resnext_bench.forward_times [--model resnext50_32x4d] [--batch 1] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), seconds it took)."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def steady(fn, *args, repeats: int) -> float:
    return statistics.median(timed(fn, *args)[1] for _ in range(repeats))


def keras_rows(name: str, x: np.ndarray, repeats: int) -> list[str]:
    import keras

    import resnext_keras as rk

    def forward(m):
        return keras.ops.convert_to_numpy(m(x, training=False))

    rows = []
    for form in "abc":
        model, build = timed(rk.create_model, name, form=form)
        _, first = timed(forward, model)
        run = steady(forward, model, repeats=repeats)
        rows.append(
            f"| keras ({keras.backend.backend()}) | {form} | {build:.1f} | {first:.1f} | | {run:.3f} |"
        )
        keras.backend.clear_session()
    return rows


def flax_rows(name: str, x: np.ndarray, repeats: int, jit_forms: str) -> list[str]:
    import jax
    import jax.numpy as jnp

    import resnext_flax as rf
    from resnext_flax import train

    rows = []
    xj = jnp.asarray(x)
    for form in "abc":
        model, build = timed(rf.create_model, name, form=form)
        model.eval()

        def eager(m):
            return jax.block_until_ready(m(xj))

        def jitted(m):
            return jax.block_until_ready(train.forward(m, xj))

        _, first_eager = timed(eager, model)
        if form in jit_forms:
            _, first = timed(jitted, model)
            run = steady(jitted, model, repeats=repeats)
            rows.append(
                f"| flax (jit) | {form} | {build:.1f} | {first:.1f} | {first_eager:.1f} | {run:.3f} |"
            )
        else:
            run = steady(eager, model, repeats=repeats)
            rows.append(f"| flax (eager) | {form} | {build:.1f} | | {first_eager:.1f} | {run:.3f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="resnext50_32x4d")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frameworks", default="keras,flax")
    p.add_argument(
        "--flax-jit-forms", default="abc", help="forms to jit-compile (compiling a/b takes minutes)"
    )
    args = p.parse_args()
    x = np.random.default_rng(0).standard_normal((args.batch, args.size, args.size, 3)).astype(np.float32)
    print(f"{args.model}, batch {args.batch}, {args.size}x{args.size}, eval mode; seconds")
    print("| build | form | build | first call (jit: compile + run) | eager first call | steady forward |")
    print("|---|---|---|---|---|---|")
    if "keras" in args.frameworks:
        for row in keras_rows(args.model, x, args.repeats):
            print(row, flush=True)
    if "flax" in args.frameworks:
        for row in flax_rows(args.model, x, args.repeats, args.flax_jit_forms):
            print(row, flush=True)


if __name__ == "__main__":
    main()
