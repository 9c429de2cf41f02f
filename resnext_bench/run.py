"""The benchmark grid: which rows to measure, each in its own process, and their report.

``run_bench`` builds the rows (frameworks x Keras backends x models x forms x modes,
plus the peers: torchvision's models and ``keras.applications.ResNet50`` where
installed), measures each with ``python -m resnext_bench.measure`` and returns the rows.
``format_table``, ``write_json`` and ``plot`` turn them into what people read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib.util import find_spec
from typing import Any

from resnext_spec import ArchConfig, atomic_write, check_form_for, get_config
from resnext_spec.errors import ConfigError
from resnext_spec.frameworks import FRAMEWORKS, check_framework, installed_frameworks
from resnext_spec.grouped import check_conv_impl
from resnext_spec.layout import stem_spec
from resnext_spec.tables import print_table as fitted_table
from resnext_spec.versions import versions

from .measure import MARK, MODES, PEER_VARIANTS, PEERS, TORCH_ONLY_MODES, Spec

DEFAULT_MODELS = ("resnet50", "resnext50_32x4d")


def installed(framework: str) -> bool:
    return framework in installed_frameworks()


def peer_installed(framework: str) -> bool:
    """keras.applications comes with Keras; torchvision must be installed and import (a wheel
    built for another torch fails on import, with one of these three types)."""
    if framework == "keras":
        return True
    if find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def default_image_size(config: ArchConfig) -> int:
    """The input size a model is made for, as its stem says (224 px ImageNet, 32 px CIFAR)."""
    return stem_spec(config).image_size


def check_gpu(frameworks: Sequence[str]) -> None:
    """--device gpu: refused before any row unless a framework asked for sees a GPU."""
    for fw in frameworks:
        if fw == "torch":
            import torch

            if torch.cuda.is_available():
                return
        else:  # Flax, and Keras on GPU, run on JAX
            import jax

            try:
                jax.devices("gpu")
                return
            except RuntimeError:  # "Unknown backend: 'gpu' requested, but no platforms ..."
                pass
    raise ConfigError(f"--device gpu: none of {', '.join(frameworks)} sees a GPU on this machine")


def grid(
    frameworks: Sequence[str],
    keras_backends: Sequence[str],
    models: dict[str, ArchConfig],
    forms: Sequence[str],
    modes: Sequence[str],
    peers: bool,
    **common: Any,
) -> list[Spec]:
    """Every row to measure, ours then the peer, in a stable order."""
    specs = []
    with_peer = {
        fw: peers and peer_installed(fw) for fw in frameworks
    }  # one torchvision import, not one a model
    for name, config in models.items():
        each = common | {"image_size": common.get("image_size") or default_image_size(config)}
        for fw in frameworks:
            for backend in keras_backends if fw == "keras" else [None]:
                fw_modes = [m for m in modes if fw == "torch" or m not in TORCH_ONLY_MODES]
                for form in forms:
                    if config.block == "basic" and form != "c":
                        continue
                    for mode in fw_modes:
                        specs.append(Spec(fw, name, config.to_dict(), mode, form, "ours", backend, **each))
                if not with_peer[fw]:
                    continue
                for peer_name, (base, changes) in PEER_VARIANTS.items():
                    # Our build of the peer's own architecture, then the peer.
                    if base == name and peer_name in PEERS.get(fw, {}):
                        variant = dataclasses.replace(config, **changes).to_dict()
                        for impl in ("ours", "peer"):
                            for mode in fw_modes:
                                specs.append(Spec(fw, peer_name, variant, mode, "c", impl, backend, **each))
                if name in PEERS.get(fw, {}):
                    for mode in fw_modes:
                        specs.append(Spec(fw, name, config.to_dict(), mode, "c", "peer", backend, **each))
    return specs


def measure_in_subprocess(spec: Spec, timeout: float | None = None) -> dict[str, Any]:
    """One row, measured in a fresh process; a row that fails carries the reason instead."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if spec.backend:
        env["KERAS_BACKEND"] = spec.backend
    cmd = [sys.executable, "-m", "resnext_bench.measure", json.dumps(asdict(spec))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"spec": asdict(spec), "failed": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    if proc.returncode < 0:  # the kernel's OOM killer sends SIGKILL and leaves no message
        why = f"killed by signal {-proc.returncode}" + (" (out of memory?)" if proc.returncode == -9 else "")
        return {"spec": asdict(spec), "failed": why}
    errors = [s for s in proc.stderr.strip().splitlines() if s.strip() and "Warning" not in s]
    return {"spec": asdict(spec), "failed": (errors[-1:] or [f"exit {proc.returncode}"])[0][:300]}


def run_bench(
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    frameworks: Sequence[str] | None = None,
    keras_backends: Sequence[str] | None = None,
    forms: Sequence[str] = ("c",),
    modes: Sequence[str] = MODES,
    peers: bool = True,
    batch: int = 8,
    image_size: int | None = None,
    warmup: int = 2,
    repeats: int = 5,
    device: str = "cpu",
    conv_impl: str = "auto",
    configs: dict[str, ArchConfig] | None = None,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure img/s and peak memory for every row of the grid; returns one dict per row.

    ``models`` are preset names; ``configs`` adds named custom configs. Frameworks
    default to every installed one; Keras runs once per backend in
    ``keras_backends`` (default: tensorflow and jax on CPU, jax on GPU).
    ``image_size`` None takes each model's own (:func:`default_image_size`).
    """
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    if device not in ("cpu", "gpu"):
        raise ConfigError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if batch < 1 or (image_size is not None and image_size < 8) or warmup < 0 or repeats < 1:
        raise ConfigError("batch >= 1, image size >= 8, warmup >= 0 and repeats >= 1 are needed")
    check_conv_impl(conv_impl)
    frameworks = [fw for fw in FRAMEWORKS if installed(fw)] if frameworks is None else list(frameworks)
    for fw in frameworks:
        check_framework(fw)
    if device == "gpu":
        check_gpu(frameworks)
    if keras_backends is None:
        keras_backends = ["jax"] if device == "gpu" else ["tensorflow", "jax"]
    all_models = {n: get_config(n) for n in models if not (configs and n in configs)}
    all_models.update(configs or {})
    for config in all_models.values():
        for form in forms:
            if config.block == "bottleneck":
                check_form_for(config, form)
    common = dict(
        batch=batch, image_size=image_size, warmup=warmup, repeats=repeats, device=device, conv_impl=conv_impl
    )
    specs = grid(frameworks, keras_backends, all_models, forms, modes, peers, **common)
    progress = progress or (lambda msg: None)
    rows = []
    for i, spec in enumerate(specs, 1):
        progress(f"[{i}/{len(specs)}] {label(spec)} {spec.model} ({spec.form}) {spec.mode} ...")
        row = measure_in_subprocess(spec, timeout)
        rows.append(row)
        done = f"failed: {row['failed']}" if "failed" in row else f"{row['img_s']:.2f} img/s"
        progress(f"      {done}")
    return rows


def label(spec: Spec | dict[str, Any]) -> str:
    s = spec if isinstance(spec, dict) else asdict(spec)
    name = s["framework"] + (f"-{s['backend']}" if s["backend"] else "")
    if s.get("conv_impl", "auto") != "auto" and s["framework"] != "torch":
        name += f" [{s['conv_impl']}]"  # a lowering asked for by name, not the one auto picks
    return name + (" (peer)" if s["impl"] == "peer" else "")


def ratios(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per row index: its img/s over the peer's ("vs_peer") and over our ResNet-50's ("vs_resnet50").

    Both compare rows of one framework, backend and mode: the targets of the speed work.
    """

    def key(r):
        s = r["spec"]
        return (s["framework"], s["backend"], s["mode"])

    ok = [r for r in rows if "failed" not in r]
    peer = {(key(r), r["spec"]["model"]): r["img_s"] for r in ok if r["spec"]["impl"] == "peer"}
    resnet = {
        key(r): r["img_s"] for r in ok if r["spec"]["impl"] == "ours" and r["spec"]["model"] == "resnet50"
    }
    out: dict[int, dict[str, float]] = {}
    for i, r in enumerate(rows):
        if "failed" in r or r["spec"]["impl"] == "peer":
            continue
        got = {}
        if (key(r), r["spec"]["model"]) in peer and r["spec"]["form"] == "c":
            got["vs_peer"] = r["img_s"] / peer[(key(r), r["spec"]["model"])]
        if key(r) in resnet and r["spec"]["model"] not in ("resnet50", *PEER_VARIANTS):
            got["vs_resnet50"] = r["img_s"] / resnet[key(r)]
        out[i] = got
    return out


COLUMNS = [
    "build",
    "model",
    "form",
    "mode",
    "img/s",
    "ms/batch",
    "peak MiB",
    "err vs fp32",
    "vs peer",
    "vs resnet50",
    "note",
]


def table_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    rel = ratios(rows)
    out = []
    for i, r in enumerate(rows):
        s = r["spec"]
        head = [label(s), s["model"], s["form"], s["mode"]]
        if "failed" in r:
            out.append(head + ["-", "-", "-", "", "", "", "failed: " + r["failed"]])
            continue
        err = "" if r["error_vs_fp32"] is None else f"{r['error_vs_fp32']:.1e}"
        vs = rel.get(i, {})
        out.append(
            head
            + [
                f"{r['img_s']:.2f}",
                f"{r['ms']:.0f}",
                f"{r['peak_mib']:.0f}",
                err,
                f"{vs['vs_peer']:.2f}x" if "vs_peer" in vs else "",
                f"{vs['vs_resnet50']:.2f}x" if "vs_resnet50" in vs else "",
                r["note"],
            ]
        )
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c for c in cells) + " |" for cells in table_cells(rows)]
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict[str, Any]], title: str, wide: bool = False) -> None:
    """The rows, split to fit the terminal unless ``wide``; a ratio column with nothing to compare
    is left out, with a line that says why."""
    cells = table_cells(rows)
    empty = [c for i, c in enumerate(COLUMNS) if c in RATIO_WHY and not any(row[i] for row in cells)]
    keep = [i for i, c in enumerate(COLUMNS) if c not in empty]
    header = [COLUMNS[i] for i in keep]
    fitted_table(
        title,
        header,
        [[row[i] for i in keep] for row in cells],
        keep_left=4,
        right_aligned=("img/s", "ms/batch", "peak MiB"),
        wide=wide,
    )
    for c in empty:
        print(f"({c}: {RATIO_WHY[c]})")


# Why a ratio column can be empty, said under the table when it is.
RATIO_WHY = {
    "vs peer": "no peer row to compare with: the peers are "
    + "; ".join(f"{', '.join(models)} ({fw})" for fw, models in PEERS.items())
    + ", in form (c), when torchvision imports and --no-peers is not given",
    "vs resnet50": "no resnet50 row of the same build and mode to compare with (add resnet50 to --models)",
}


def meta(argv: list[str] | None = None, **settings: Any) -> dict[str, Any]:
    return {
        **settings,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "versions": versions(),
        "argv": argv if argv is not None else sys.argv,
    }


def write_json(rows: list[dict[str, Any]], info: dict[str, Any], path: str | os.PathLike) -> None:
    """Every row with its spec and raw timings, and the settings and versions, atomically."""
    text = json.dumps({"meta": info, "rows": rows}, indent=1)
    atomic_write(path, lambda tmp: open(tmp, "w").write(text))


def read_json(path: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with open(path) as f:
        data = json.load(f)
    return data["rows"], data["meta"]


def plot(rows: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """img/s per build, one panel per mode, peers hatched; reduced-precision bars carry their error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "failed" not in r]
    modes = [m for m in MODES if any(r["spec"]["mode"] == m for r in ok)]
    fig, axes = plt.subplots(len(modes), 1, figsize=(9, 1.2 + 0.32 * len(ok)), squeeze=False)
    for ax, mode in zip(axes[:, 0], modes, strict=True):
        sel = [r for r in ok if r["spec"]["mode"] == mode]
        names = [f"{label(r['spec'])} {r['spec']['model']} ({r['spec']['form']})" for r in sel]
        bars = ax.barh(range(len(sel)), [r["img_s"] for r in sel], color="tab:blue")
        for bar, r in zip(bars, sel, strict=True):
            if r["spec"]["impl"] == "peer":
                bar.set_color("tab:gray")
                bar.set_hatch("//")
            if r["error_vs_fp32"] is not None:
                ax.text(
                    bar.get_width(),
                    bar.get_y() + bar.get_height() / 2,
                    f" err {r['error_vs_fp32']:.0e}",
                    va="center",
                    fontsize=7,
                )
        ax.set_yticks(range(len(sel)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(mode, fontsize=9, loc="left")
        ax.set_xlabel("img/s", fontsize=8)
    fig.suptitle(title or "resnext-bench (gray hatched: peer model)", fontsize=10)
    fig.tight_layout()
    fmt = os.path.splitext(str(path))[1].lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=110))
    plt.close(fig)
