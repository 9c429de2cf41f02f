"""The figures of docs/forms.md, drawn from the code (resnext_spec), not by hand.

    python docs/figures.py [--out docs/figures]

- forms.png: one block of resnext50_32x4d in forms (a), (b), (c), with the shapes the
  spec gives it (the paper's figure 3);
- block_diagonal.png: form (c)'s grouped 3x3 weight written as the dense 3x3 conv it
  is, block-diagonal: C blocks, one per path;
- cardinality.png: the paper's Table 2 (ResNeXt-50 as C grows at fixed complexity):
  parameters and multiply-adds from the spec's formula, and the per-block template;
- form_cost.png: what forms (a) and (b) cost against (c) in each framework, from
  docs/results/forms_cost.json (written by resnext-bench) when it is there.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from resnext_spec import count_flops, count_params, get_config, random_weights  # noqa: E402
from resnext_spec.layout import plan  # noqa: E402

HERE = Path(__file__).resolve().parent
TABLE2 = ["resnet50", "resnext50_2x40d", "resnext50_4x24d", "resnext50_8x14d", "resnext50_32x4d"]
FIGURES = ("forms.png", "block_diagonal.png", "cardinality.png", "form_cost.png")


def box(ax, x: float, y: float, text: str, w: float = 1.5, color: str = "#dbe9f6", size: float = 7.5) -> None:
    h = 0.42
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03", fc=color, ec="#345"))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def arrow(ax, x0: float, y0: float, x1: float, y1: float) -> None:
    ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "lw": 0.8, "color": "#345"})


def draw_forms(path: Path, preset: str = "resnext50_32x4d") -> None:
    """Figure 3 of the paper, with the spec's shapes for the first block of ``preset``."""
    b = plan(get_config(preset)).blocks[1]  # layer1.1: identity shortcut, 256 in and out
    c_in, d, c, w, out = b.in_channels, b.path_width, b.cardinality, b.width, b.out_channels
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6))
    titles = ["(a) aggregated paths", "(b) early concatenation", "(c) grouped convolution"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlim(-2.6, 2.6)
        ax.set_ylim(-0.4, 5.6)
        ax.axis("off")
        ax.set_title(title, fontsize=10)
        box(ax, 0, 5.2, f"input, {c_in} ch", w=1.8, color="#eee")
    shown = [-2.05, -1.0, 1.95]  # paths 1, 2 ... C, as in the paper
    labels = ["path 1", "path 2", f"path {c}"]
    for ax, with_conv3 in ((axes[0], True), (axes[1], False)):
        for x, label in zip(shown, labels, strict=True):
            arrow(ax, 0, 4.95, x, 4.55)
            box(ax, x, 4.3, f"1x1, {c_in}->{d}", w=0.95, size=6.5)
            box(ax, x, 3.5, f"3x3, {d}->{d}", w=0.95, size=6.5)
            arrow(ax, x, 4.08, x, 3.72)
            if with_conv3:
                box(ax, x, 2.7, f"1x1, {d}->{out}", w=0.95, size=6.5)
                arrow(ax, x, 3.28, x, 2.92)
            ax.text(x, 4.75, label, ha="center", fontsize=6.5, color="#555")
        ax.text(0.45, 3.9, "...", fontsize=14, ha="center")
        ax.set_xlim(-2.7, 2.7)
    # (a): sum, then one BN
    for x in shown:
        arrow(axes[0], x, 2.48, 0, 1.95)
    box(axes[0], 0, 1.75, f"sum of {c} paths, {out} ch", w=2.2, color="#fbe3c6")
    box(axes[0], 0, 1.0, f"BN, {out}", w=1.4)
    arrow(axes[0], 0, 1.53, 0, 1.22)
    # (b): concatenate, then one 1x1
    for x in shown:
        arrow(axes[1], x, 3.28, 0, 2.72)
    box(axes[1], 0, 2.5, f"concatenate, {c} x {d} = {w} ch", w=2.4, color="#fbe3c6")
    box(axes[1], 0, 1.75, f"1x1, {w}->{out}", w=1.4)
    box(axes[1], 0, 1.0, f"BN, {out}", w=1.4)
    arrow(axes[1], 0, 2.28, 0, 1.97)
    arrow(axes[1], 0, 1.53, 0, 1.22)
    # (c): one grouped 3x3
    ax = axes[2]
    arrow(ax, 0, 4.95, 0, 4.52)
    box(ax, 0, 4.3, f"1x1, {c_in}->{w}", w=1.6)
    box(ax, 0, 3.5, f"3x3, {w}->{w}, {c} groups", w=2.2, color="#fbe3c6")
    box(ax, 0, 2.5, f"1x1, {w}->{out}", w=1.6)
    box(ax, 0, 1.0, f"BN, {out}", w=1.4)
    for y0, y1 in ((4.08, 3.72), (3.28, 2.72), (2.28, 1.22)):
        arrow(ax, 0, y0, 0, y1)
    for ax in axes:
        box(ax, 0, 0.15, "+ input, ReLU", w=1.6, color="#eee")
        arrow(ax, 0, 0.78, 0, 0.37)
    fig.suptitle(
        f"{preset} {b.name}: three forms, one function (the BN + ReLU after each inner conv not drawn)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def draw_block_diagonal(path: Path, preset: str = "resnext26_8x16d") -> None:
    """Form (c)'s grouped conv2 of ``preset``'s layer1.0 as a dense weight: C blocks on the diagonal."""
    config = get_config(preset)
    b = plan(config).blocks[0]
    grouped = random_weights(config, "c", seed=0)[f"{b.name}.conv2.weight"]  # (W, W/C, 3, 3)
    dense = np.zeros((b.width, b.width))
    for p in range(b.cardinality):
        s = b.path_slice(p)
        dense[s, s] = np.abs(grouped[s]).sum(axis=(2, 3))  # |kernel| summed over the 9 taps
    fig, ax = plt.subplots(figsize=(5.4, 5))
    ax.imshow(dense, cmap="Blues")
    ax.set_title(
        f"{preset} {b.name}.conv2 as a dense {b.width}x{b.width} conv:\n"
        f"{b.cardinality} groups = {b.cardinality} diagonal blocks of {b.path_width}x{b.path_width}"
        " (|w| summed over the 3x3)",
        fontsize=9,
    )
    ax.set_xlabel("input channel")
    ax.set_ylabel("output channel")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def table2_rows() -> list[dict[str, float]]:
    """The paper's Table 2 presets: C, d, template parameters, total parameters and GFLOPs."""
    rows = []
    for name in TABLE2:
        cfg = get_config(name)
        c, d = cfg.cardinality, cfg.base_width
        rows.append(
            {
                "preset": name,
                "C": c,
                "d": d,
                "group_width": c * d,
                "template_params": c * (256 * d + 9 * d * d + d * 256),
                "params_M": count_params(cfg) / 1e6,
                "gflops": count_flops(cfg) / 1e9,
            }
        )
    return rows


def draw_cardinality(path: Path) -> None:
    rows = table2_rows()
    labels = [f"{r['C']}x{r['d']}d" for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.bar(x, [r["params_M"] for r in rows], 0.5, label="parameters (M)")
    ax1.set_ylim(20, 27)
    ax1.set_ylabel("million parameters", fontsize=8)
    ax1b = ax1.twinx()
    ax1b.plot(x, [r["gflops"] for r in rows], "s-", color="tab:red", label="multiply-adds (G), 224 px")
    ax1b.set_ylim(3.8, 4.5)
    ax1b.set_ylabel("G multiply-adds", fontsize=8)
    for i, r in enumerate(rows):
        ax1.text(i, r["params_M"] + 0.1, f"{r['params_M']:.2f}M", ha="center", fontsize=6.5)
        ax1b.text(
            i,
            r["gflops"] + 0.03,
            f"{r['gflops']:.2f}G",
            ha="center",
            fontsize=6.5,
            color="tab:red",
            bbox={"fc": "white", "ec": "none", "pad": 0.5},
        )
    ax1.set_xticks(x, labels)
    ax1.set_title("ResNeXt-50 at fixed complexity (paper, Table 2)", fontsize=9)
    ax1.legend(fontsize=7, loc="lower left")
    ax1b.legend(fontsize=7, loc="lower right")
    ax2.plot(x, [r["template_params"] / 1e3 for r in rows], "o-", label="conv2-stage block params (k)")
    ax2.axhline(70, color="gray", ls=":", lw=0.8)
    ax2.text(0, 70.3, "paper: ~70k", fontsize=7, color="gray")
    ax2b = ax2.twinx()
    ax2b.plot(
        x, [r["group_width"] for r in rows], "s--", color="tab:orange", label="width of the 3x3 (C x d)"
    )
    ax2.set_xticks(x, labels)
    ax2.set_ylim(66, 74)
    ax2.set_ylabel("thousand parameters", fontsize=8)
    ax2b.set_ylabel("channels", fontsize=8)
    ax2.set_title("the block template: same cost, wider 3x3 as C grows", fontsize=9)
    ax2.legend(fontsize=7, loc="upper left")
    ax2b.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def draw_form_cost(path: Path, results: Path) -> None:
    """img/s of each form, per framework, from resnext-bench's JSON (or a note saying how to make it)."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    if not results.exists():
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"no {results.name}: run resnext-bench with --forms a,b,c (see docs/forms.md)",
            ha="center",
        )
    else:
        rows = [r for r in json.loads(results.read_text())["rows"] if "failed" not in r]
        builds = sorted({(r["spec"]["framework"], r["spec"]["backend"] or "") for r in rows})
        x = np.arange(len(builds))
        for i, form in enumerate("abc"):
            speeds = []
            for fw, backend in builds:
                hit = [
                    r for r in rows if (r["spec"]["framework"], r["spec"]["backend"] or "") == (fw, backend)
                ]
                hit = [r["img_s"] for r in hit if r["spec"]["form"] == form]
                speeds.append(hit[0] if hit else 0.0)
            ax.bar(x + (i - 1) * 0.27, speeds, 0.27, label=f"form ({form})")
        spec = rows[0]["spec"]
        ax.set_xticks(x, [f"{fw}-{be}" if be else fw for fw, be in builds])
        ax.set_ylabel("img/s (higher is faster)")
        ax.set_title(
            f"what the teaching forms cost: {spec['model']}, {spec['mode']}, batch {spec['batch']}, "
            f"{spec['image_size']} px, 2 CPU cores",
            fontsize=9,
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE / "figures"))
    p.add_argument("--results", default=str(HERE / "results" / "forms_cost.json"))
    args = p.parse_args(argv)
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    draw_forms(out / "forms.png")
    draw_block_diagonal(out / "block_diagonal.png")
    draw_cardinality(out / "cardinality.png")
    draw_form_cost(out / "form_cost.png", Path(args.results))
    written = [out / f for f in FIGURES]
    for f in written:
        print(f"wrote {f}")
    return written


if __name__ == "__main__":
    main()
