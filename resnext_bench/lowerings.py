"""Each JAX lowering of each distinct grouped 3x3 conv of a preset, one layer at a time.

The table behind ``resnext_spec.grouped``'s choice of taps, split or patches on XLA:CPU: for every
distinct (input size, channels, stride) of the preset's grouped convs, the forward alone and
the forward with both gradients, best of ``--repeats`` after one compiling call, and how far
taps' and split's values and gradients are from patches'. Taps is differentiated as split, so its
column with gradients times split's forward and gradients. Layer timings alone mislead (a
lowering can win its layer and lose in the network, where XLA fuses it with its neighbours), so
the choice was then checked whole: ``resnext-bench --frameworks flax --conv-impl patches|split``
against ``auto``.

    python -m resnext_bench.lowerings                              # resnext50_32x4d, batch 8
    python -m resnext_bench.lowerings --model resnext101_64x4d --markdown taps.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from resnext_spec import get_config, plan
from resnext_spec.grouped import TAPS_MAX_GROUP_CHANNELS
from resnext_spec.layout import conv_output_size
from resnext_spec.tolerances import rel_error

LOWERINGS = ("patches", "taps", "split")


def grouped_layers(model: str, image_size: int) -> list[tuple[int, int, int, int]]:
    """(input height, channels, groups, stride) of each distinct grouped 3x3 conv of ``model``."""
    p = plan(get_config(model))
    size = image_size
    for step in p.stem.steps:
        size = conv_output_size(size, step.conv.shape[-1], step.conv.stride, step.conv.padding)
    if p.stem.pool == "max":
        size = conv_output_size(size, 3, 2, 1)
    layers = []
    for stage in p.stages:
        for b in stage:
            if b.block == "bottleneck" and b.cardinality > 1:  # conv1 may carry the stride ("1x1")
                h = conv_output_size(size, 1, b.conv1_stride, 0)
                layers.append((h, b.width, b.cardinality, b.conv2_stride))
            size = conv_output_size(size, 3, b.stride, 1)
    return list(dict.fromkeys(layers))


def best_ms(fn, args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return round(min(times) * 1e3, 1)


def measure_layer(h: int, channels: int, groups: int, stride: int, batch: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from resnext_jax import patches_conv, split_conv, taps_conv

    conv = {"patches": patches_conv, "taps": taps_conv, "split": split_conv}
    rng = np.random.default_rng(h + channels + stride)
    x = jnp.asarray(rng.standard_normal((batch, h, h, channels)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, channels // groups, channels)), jnp.float32)
    ho = conv_output_size(h, 3, stride, 1)
    dy = jnp.asarray(rng.standard_normal((batch, ho, ho, channels)), jnp.float32)
    row: dict = {"height": h, "channels": channels, "groups": groups, "stride": stride}
    row["group_channels"] = channels // groups
    results = {}
    for name in LOWERINGS:

        def forward(a, b, f=conv[name]):
            return f(a, b, groups, stride, 1)

        def both_gradients(a, b, g, f=forward):
            y, vjp = jax.vjp(f, a, b)
            return (y, *vjp(g))

        fwd, train = jax.jit(forward), jax.jit(both_gradients)  # compiled once: timed, then compared
        row[f"{name}_forward_ms"] = best_ms(fwd, (x, w), repeats)
        row[f"{name}_train_ms"] = best_ms(train, (x, w, dy), repeats)
        # the forward alone too: taps computes it itself only where it is not differentiated
        results[name] = [np.asarray(t) for t in (fwd(x, w), *train(x, w, dy))]
    for name in ("taps", "split"):
        pairs = zip(results[name], results["patches"], strict=True)
        row[f"{name}_error"] = max(rel_error(t, p) for t, p in pairs)
    return row


def markdown(model: str, batch: int, rows: list[dict]) -> str:
    lines = [
        f"{model}, batch {batch}, fp32, one grouped 3x3 conv at a time, best of the repeats (ms):",
        "",
        "| input | channels a group | stride | forward: patches | taps | split "
        "| fwd + grads: patches | taps | split | taps, split vs patches |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['height']}×{r['height']}, {r['channels']} ch | {r['group_channels']} | {r['stride']} "
            f"| {r['patches_forward_ms']} | {r['taps_forward_ms']} | {r['split_forward_ms']} "
            f"| {r['patches_train_ms']} | {r['taps_train_ms']} | {r['split_train_ms']} "
            f"| {r['taps_error']:.1e}, {r['split_error']:.1e} |"
        )
    lines += [
        "",
        f"`auto` takes taps up to {TAPS_MAX_GROUP_CHANNELS} channels a group and split above "
        "(`resnext_spec.grouped`).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m resnext_bench.lowerings", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnext50_32x4d")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args(argv)
    rows = []
    for layer in grouped_layers(args.model, args.image_size):
        print(f"layer {layer} ...", flush=True)
        rows.append(measure_layer(*layer, args.batch, args.repeats))
    text = markdown(args.model, args.batch, rows)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        from resnext_spec.versions import versions

        meta = {
            "model": args.model,
            "batch": args.batch,
            "image_size": args.image_size,
            "repeats": args.repeats,
        }
        args.json.write_text(
            json.dumps({"meta": meta | {"versions": versions()}, "rows": rows}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
