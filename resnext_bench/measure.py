"""One benchmark row, measured in this process: build, warm up, time, report.

Each row runs in a process of its own (``python -m resnext_bench.measure SPEC_JSON``), so
the Keras backend can differ from row to row and the peak memory is that row's.
The per-framework part is only how a model is built and what one call of the
timed function does; timing, memory and the reduced-precision error are shared.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from resnext_spec import ArchConfig
from resnext_spec.tolerances import rel_error

MODES = ("infer", "infer_bf16", "infer_channels_last", "infer_compile", "train")
# Modes that exist in one framework only: channels_last and torch.compile are torch's.
TORCH_ONLY_MODES = ("infer_channels_last", "infer_compile")
# Peers: the same network from the framework's own model zoo, measured beside ours, keyed
# by the model they equal. keras.applications' ResNet50 is ResNet v1: the stride sits on
# the first 1x1 conv (3.86 G multiply-adds at 224 px, against 4.09 with the stride on the
# 3x3), so it is compared with our resnet50 built with stride_on="1x1", run as "resnet50_v1".
PEERS = {
    "torch": {
        "resnet50": "torchvision.models.resnet50",
        "resnext50_32x4d": "torchvision.models.resnext50_32x4d",
    },
    "keras": {"resnet50_v1": "keras.applications.ResNet50"},
}
# Peer-only model names: the preset each is built from, and what changes.
PEER_VARIANTS = {"resnet50_v1": ("resnet50", {"stride_on": "1x1"})}


@dataclass
class Spec:
    """What one row measures. ``impl`` is "ours" or "peer"; ``backend`` is Keras's."""

    framework: str
    model: str
    config: dict[str, Any]
    mode: str
    form: str = "c"
    impl: str = "ours"
    backend: str | None = None
    batch: int = 8
    image_size: int = 224
    warmup: int = 2
    repeats: int = 5
    device: str = "cpu"
    conv_impl: str = "auto"
    seed: int = 0


@dataclass
class Row:
    spec: Spec
    seconds: list[float] = field(default_factory=list)
    img_s: float = 0.0
    ms: float = 0.0
    peak_mib: float = 0.0
    error_vs_fp32: float | None = None  # reduced-precision rows: their logits against fp32
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def timed(fn: Callable[[], Any], sync: Callable[[Any], Any], warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (compiles included)."""
    for _ in range(warmup):
        sync(fn())
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        sync(fn())
        out.append(time.perf_counter() - t)
    return out


def inputs(spec: Spec, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded NHWC batch and integer labels."""
    rng = np.random.default_rng(spec.seed)
    x = rng.standard_normal((spec.batch, spec.image_size, spec.image_size, channels)).astype(np.float32)
    labels = rng.integers(0, ArchConfig.from_dict(spec.config).num_classes, spec.batch)
    return x, labels


def peak_host_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- torch -----------------------------------------------------------------------------------


def torch_row(spec: Spec, row: Row) -> None:
    import torch

    cfg = ArchConfig.from_dict(spec.config)
    device = torch.device("cuda" if spec.device == "gpu" else "cpu")
    if spec.impl == "peer":
        import importlib

        module, name = PEERS["torch"][spec.model].rsplit(".", 1)
        model = getattr(importlib.import_module(module), name)(num_classes=cfg.num_classes)
    else:
        import resnext_torch as rt

        model = rt.build(cfg, spec.form)
    model = model.to(device)
    x_np, y_np = inputs(spec, cfg.in_channels)
    x = torch.from_numpy(x_np.transpose(0, 3, 1, 2).copy()).to(device)
    y = torch.from_numpy(y_np).to(device)

    def sync(out):
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    if spec.mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        row.seconds = timed(step, sync, spec.warmup, spec.repeats)
    else:
        model.eval()
        with torch.no_grad():
            reference = model(x).float().cpu().numpy()
            run = model
            if spec.mode in ("infer_channels_last", "infer_bf16"):
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
                run = model
            if spec.mode == "infer_compile":
                run = torch.compile(model)
            if spec.mode == "infer_bf16":

                def call():
                    with torch.autocast(device.type, dtype=torch.bfloat16):
                        return run(x)
            else:

                def call():
                    return run(x)

            row.seconds = timed(call, sync, spec.warmup, spec.repeats)
            if spec.mode == "infer_bf16":
                row.error_vs_fp32 = rel_error(call().float().cpu().numpy(), reference)
    if device.type == "cuda":
        row.peak_mib = torch.cuda.max_memory_allocated() / 2**20


# --- Keras -------------------------------------------------------------------------------------


def keras_row(spec: Spec, row: Row) -> None:
    import keras

    cfg = ArchConfig.from_dict(spec.config)
    x, y = inputs(spec, cfg.in_channels)

    def build():
        if spec.impl == "peer":
            return keras.applications.ResNet50(
                weights=None,
                input_shape=(spec.image_size, spec.image_size, cfg.in_channels),
                classes=cfg.num_classes,
                classifier_activation=None,
            )
        import resnext_keras as rk

        return rk.build(cfg, spec.form, conv_impl=spec.conv_impl)

    model = build()
    if spec.mode == "train":
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        row.seconds = timed(lambda: model.train_on_batch(x, y), lambda out: out, spec.warmup, spec.repeats)
        row.note = f"jit_compile={model.jit_compile}"
    else:
        model.compile()
        if spec.mode == "infer_bf16":
            reference = np.asarray(model.predict_on_batch(x), np.float32)
            weights = model.get_weights()
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
            model = build()
            model.set_weights(weights)
            model.compile()
        row.seconds = timed(lambda: model.predict_on_batch(x), np.asarray, spec.warmup, spec.repeats)
        row.note = f"jit_compile={model.jit_compile}"
        if spec.mode == "infer_bf16":
            row.error_vs_fp32 = rel_error(np.asarray(model.predict_on_batch(x), np.float32), reference)
    if keras.backend.backend() == "jax":
        row.peak_mib = jax_peak_mib(spec)


# --- Flax --------------------------------------------------------------------------------------


def jax_peak_mib(spec: Spec) -> float:
    if spec.device != "gpu":
        return 0.0
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use", 0) / 2**20


def flax_row(spec: Spec, row: Row) -> None:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import resnext_flax as rf
    from resnext_flax import train

    cfg = ArchConfig.from_dict(spec.config)
    model = rf.build(cfg, spec.form, conv_impl=spec.conv_impl)
    x_np, y_np = inputs(spec, cfg.in_channels)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    # XLA takes minutes to compile the hundreds of paths of forms (a)/(b): those run eagerly.
    jit = spec.form == "c"
    row.note = "jit" if jit else "eager (forms a/b: XLA compile time)"
    if spec.mode == "train":
        model.train()
        opt = train.make_optimizer(model)
        if jit:  # as FlaxEngine steps: the module graph flattened once, not walked every call
            partial = nnx.jit_partial(train.train_step.fun, model, opt, graph=False)
            call = lambda: partial(x, y)  # noqa: E731
        else:
            call = lambda: train.train_step.fun(model, opt, x, y)  # noqa: E731
        row.seconds = timed(call, jax.block_until_ready, spec.warmup, spec.repeats)
    else:
        model.eval()
        forward = train.forward if jit else (lambda m, a: m(a))
        if spec.mode == "infer_bf16":
            reference = np.asarray(forward(model, x), np.float32)
            # bf16 compute: parameters and input cast to bfloat16, BN statistics included.
            graph, state = nnx.split(model)
            state = jax.tree.map(
                lambda a: a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a, state
            )
            model, x = nnx.merge(graph, state), x.astype(jnp.bfloat16)
            row.note += "; parameters and input in bfloat16"
        row.seconds = timed(lambda: forward(model, x), jax.block_until_ready, spec.warmup, spec.repeats)
        if spec.mode == "infer_bf16":
            row.error_vs_fp32 = rel_error(np.asarray(forward(model, x), np.float32), reference)
    row.peak_mib = jax_peak_mib(spec)


MEASURE = {"torch": torch_row, "keras": keras_row, "flax": flax_row}


def measure(spec: Spec) -> Row:
    """Measure one row in this process (the Keras backend is whatever this process has)."""
    row = Row(spec)
    MEASURE[spec.framework](spec, row)
    median = statistics.median(row.seconds)
    row.ms = median * 1000
    row.img_s = spec.batch / median
    if spec.device != "gpu":
        row.peak_mib = peak_host_mib()
    return row


MARK = "BENCH_ROW "


def main(argv: list[str] | None = None) -> int:
    """``python -m resnext_bench.measure SPEC_JSON``: print the row as one marked JSON line."""
    argv = sys.argv[1:] if argv is None else argv
    spec = Spec(**json.loads(argv[0]))
    if spec.backend:
        os.environ["KERAS_BACKEND"] = spec.backend
    row = measure(spec)
    print(MARK + json.dumps(row.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
