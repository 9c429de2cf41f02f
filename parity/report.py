"""Terminal table, JSON file and plot for a ParityResult."""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections import defaultdict
from pathlib import Path

from resnext_spec import atomic_write
from resnext_spec.errors import ResNeXtError
from resnext_spec.frameworks import FRAMEWORKS
from resnext_spec.tables import print_table as fitted_table
from resnext_spec.tables import terminal_width

from .harness import CHECKS, INFO_CHECKS, OPTIONAL_CHECKS, REFERENCE_CHECK, CheckResult, ParityResult

# Checks judged against a measured bound, in the order the plot shows them.
NUMERIC_CHECKS = [c for c in CHECKS + OPTIONAL_CHECKS if c not in ("counts", "roundtrip", "copy")]


def _cell(rows: list[CheckResult]) -> tuple[str, bool]:
    """The worst quantity of a check for one build, as 'error (floor)' or 'exact'."""
    check, ok = rows[0].check, all(r.passed for r in rows)  # one check, one build
    if check in ("roundtrip", "copy"):
        return ("bitwise" if ok else "DIFFERS"), ok
    if check == "counts":  # a single row
        return (rows[0].detail.split(" ")[0] if ok else rows[0].detail), ok
    if check == REFERENCE_CHECK:
        return "ODD ONE OUT", ok
    judged = [r for r in rows if not r.chaotic]
    if not judged:
        return "chaotic", ok
    worst = max(judged, key=lambda r: (r.error / r.bound) if r.bound else r.error)
    text = f"{worst.error:.1e}"
    if worst.check in INFO_CHECKS:
        return text, ok
    if worst.floor is not None and worst.bound > 1e-5:
        text += f" (floor {worst.floor:.0e})"
    return text, ok


def _fold_copies(grouped: dict, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The copy rows of each form as one row ("6 copies"), unless one of them failed."""
    out = []
    for form in dict.fromkeys(form for _, form in keys):
        mine = [k for k in keys if k[1] == form]
        rows = [r for k in mine for rs in grouped[k].values() for r in rs]
        if rows and all(r.passed for r in rows):
            name = f"{len(mine)} copies"
            grouped[name, form] = {"copy": rows}
            out.append((name, form))
        else:
            out.extend(mine)
    return out


def table_rows(
    result: ParityResult, model: str, verbose: bool = False
) -> tuple[list[str], list[tuple[list[str], list[bool]]]]:
    """Rows of builds x checks for one model, each cell the worst error of that check.

    The six copy directions of a form fold into one row when all are bitwise
    (``verbose`` shows every direction).
    """
    every = CHECKS + OPTIONAL_CHECKS + INFO_CHECKS + (REFERENCE_CHECK,)
    checks = [c for c in every if any(r.check == c for r in result.results)]
    grouped: dict[tuple[str, str], dict[str, list[CheckResult]]] = defaultdict(lambda: defaultdict(list))
    for r in result.results:
        if r.model == model:
            grouped[r.framework, r.form][r.check].append(r)
    # Builds framework by framework (the harness makes them form by form), then the copies.
    order = {fw: i for i, fw in enumerate(FRAMEWORKS)}
    builds = sorted((k for k in grouped if k[0] in order), key=lambda k: (order[k[0]], k[1]))
    copies = [k for k in grouped if k[0] not in order]
    keys = builds + (copies if verbose else _fold_copies(grouped, copies))
    ran = result.meta.get("builds", {})
    rows = []
    for fw, form in keys:
        by_check = grouped[fw, form]
        timing = ran.get(f"{model}: {fw} ({form})")
        how = "" if timing is None else "compiled" if timing["compiled"] else "eager"
        cells, oks = [fw, form, how], []
        for c in checks:
            text, ok = _cell(by_check[c]) if by_check.get(c) else ("", True)
            cells.append(text)
            oks.append(ok)
        cells.append("PASS" if all(oks) else "FAIL")
        rows.append((cells, oks))
    return ["build", "form", "ran", *checks, "result"], rows


# What the table's words mean, printed under it (and in docs/parity.md).
LEGEND = (
    "legend: a number is the worst relative error of that check, max|y - y_ref| / max|y_ref|, against "
    'torch form (c); "(floor F)": the check\'s bound is 10 x F, F being how far fp32 rounding alone moves '
    "that quantity (measured against float64 in this run), so an error above 1e-5 passes where the floor "
    'is wide (gradients through train-mode BN); "chaotic": fp32 keeps no correct digit of it (the '
    'floor is of its own size), shown but not judged (--precision float64 judges it); "bitwise": '
    'copied and read back bit for bit; "N copies": a form\'s weight copies from and into every other '
    'build, all bitwise; "ran": compiled (tf.function / jax.jit) or eager.'
)


def print_table(result: ParityResult, verbose: bool = False, wide: bool = False) -> None:
    """One table per model, split into parts that fit the terminal (``wide``: one table); an error shows
    its float64 floor where the floor sets the bound, and a legend follows.

    ``verbose``: every copy direction on its own row (by default a form's six fold into one).
    """
    for model in result.meta.get("models", []):
        header, rows = table_rows(result, model, verbose)
        precision = result.meta.get("precision", "float32")
        title = f"{model}: every build against torch form (c), {precision}"
        if precision == "bfloat16":
            title = f"{model}: every build in bfloat16 against torch form (c) fp32 (shown, never failed)"
        styled = []
        for cells, oks in rows:
            marked = cells[:3] + [
                c if ok else f"[red]{c}[/red]" for c, ok in zip(cells[3:-1], oks, strict=True)
            ]
            marked.append("[green]PASS[/green]" if cells[-1] == "PASS" else "[bold red]FAIL[/bold red]")
            styled.append(marked)
        right = [h for h in header if h not in ("build", "form", "ran")]
        fitted_table(title, header, styled, keep_left=3, keep_right=1, right_aligned=right, wide=wide)
    print(textwrap.fill(LEGEND, width=min(terminal_width(wide), 100)))
    print_summary(result)


def print_summary(result: ParityResult) -> None:
    for r in result.failures:
        where = f" at {r.tensor}" if r.tensor else ""
        print(
            f"FAIL {r.model} {r.framework} ({r.form}) {r.check}/{r.quantity}: "
            f"error {r.error:.3e}{where} > bound {r.bound:.1e} {r.detail}".rstrip()
        )
    n, bad = len(result.results), len(result.failures)
    ratios = ", ".join(f"{c} {_ratio(result, c)}" for c in CHECKS if result.worst(c))
    peak = result.meta.get("peak_rss_mb")
    memory = (
        "" if peak is None else f", peak memory {peak / 1024:.1f} GiB ({result.meta.get('cpu_class')} CPU)"
    )
    print(
        f"{n - bad} passed, {bad} failed in {result.meta.get('wall_time_s', 0):.1f} s{memory}"
        + (f" (worst error over bound per check: {ratios})" if ratios else "")
    )
    builds = result.meta.get("builds", {})
    compiled = [t for t in builds.values() if t["compiled"]]
    if compiled:
        seconds = sum(t["compile_s"] for t in compiled)
        print(
            f"{len(compiled)} of {len(builds)} builds ran compiled, {seconds:.1f} s of it tracing and "
            "compiling (the rest ran eagerly; --eager runs all eagerly)"
        )
    tf32 = result.worst("tf32")
    if tf32:
        print(f"TF32 (shown, not judged): torch (c) eval logits off full fp32 by {tf32.error:.1e}")
    for fw in FRAMEWORKS:
        rows = [r for r in result.results if r.check == "bf16" and r.framework == fw]
        if rows:
            worst = {
                q: max(r.error for r in rows if r.quantity == q)
                for q in dict.fromkeys(r.quantity for r in rows)
            }
            print(
                f"bfloat16 (shown, not judged), {fw}: " + ", ".join(f"{q} {e:.1e}" for q, e in worst.items())
            )
    for r in result.results:
        if r.check == REFERENCE_CHECK:
            print(f"REFERENCE {r.model}: {r.detail}")


def _ratio(result: ParityResult, check: str) -> str:
    w = result.worst(check)
    if w is not None and w.chaotic:
        return "chaotic"
    if w is None or not w.bound:
        return "exact" if w and w.passed else "FAIL"
    return f"{w.error:.1e}/{w.bound:.0e}"


def _finite(x):
    return x if not isinstance(x, float) or math.isfinite(x) else str(x)


def write_json(result: ParityResult, path: str | os.PathLike) -> None:
    """Every figure of the run, with versions and settings, written atomically."""
    data = result.to_dict()
    data["results"] = [{k: _finite(v) for k, v in row.items()} for row in data["results"]]
    text = json.dumps(data, indent=1, sort_keys=False)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text + "\n")

    atomic_write(path, write)


def read_json(path: str | os.PathLike) -> ParityResult:
    """A result written by :func:`write_json`, back as a ParityResult (to re-plot or merge runs)."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "results" not in data or "meta" not in data:
        raise ResNeXtError(f"{path}: not a resnext-parity JSON report (no 'results' and 'meta')")
    rows = [
        CheckResult(**{k: float(v) if v in ("inf", "nan", "-inf") else v for k, v in row.items()})
        for row in data["results"]
    ]
    return ParityResult(results=rows, meta=data["meta"])


# Settings every run being merged must share, or their figures are not one report.
SAME_SETTINGS = ("forms", "frameworks", "checks", "batch", "image_size", "seed", "device", "keras_backend")


def merge_results(results: list[ParityResult]) -> ParityResult:
    """Runs of different models with the same settings, as one report (e.g. one process per model).

    Wall times add up; library versions and settings must agree, or a ValueError names the first
    that differs.
    """
    if not results:
        raise ResNeXtError("nothing to merge")
    first = results[0].meta
    for r in results[1:]:
        for key in (*SAME_SETTINGS, "versions"):
            if r.meta.get(key) != first.get(key):
                raise ResNeXtError(
                    f"cannot merge runs with different {key}: {first.get(key)!r} vs {r.meta.get(key)!r}"
                )
    models = [m for r in results for m in r.meta["models"]]
    if len(set(models)) != len(models):
        raise ResNeXtError(f"a model appears in more than one run: {models}")
    per_run = ("models", "configs", "model_time_s", "wall_time_s", "argv", "model_peak_rss_mb", "peak_rss_mb")
    meta = {k: first[k] for k in first if k not in per_run}
    meta.update(
        models=models,
        configs={k: v for r in results for k, v in r.meta["configs"].items()},
        model_time_s={k: v for r in results for k, v in r.meta["model_time_s"].items()},
        model_peak_rss_mb={k: v for r in results for k, v in r.meta.get("model_peak_rss_mb", {}).items()},
        wall_time_s=round(sum(r.meta["wall_time_s"] for r in results), 2),
        merged_from=len(results),
    )
    peaks = [r.meta["peak_rss_mb"] for r in results if r.meta.get("peak_rss_mb") is not None]
    if peaks:  # one process per run: the largest process
        meta["peak_rss_mb"] = max(peaks)
    return ParityResult(results=[row for r in results for row in r.results], meta=meta)


# How far below the bound the plot reaches; smaller ratios (and exact zeros) sit on this line.
PLOT_FLOOR = 1e-4


def plot_points(result: ParityResult) -> list[tuple[str, str, str, float]]:
    """(check, framework, form, error/bound) of every judged numeric row, clipped at PLOT_FLOOR.

    Chaotic rows (no correct digit at this precision) have no meaningful ratio and are left out.
    """
    return [
        (r.check, r.framework, r.form, max(r.error / r.bound, PLOT_FLOOR))
        for r in result.results
        if r.check in NUMERIC_CHECKS and r.bound and math.isfinite(r.bound) and not r.chaotic
    ]


def plot_ratios(result: ParityResult, path: str | os.PathLike):
    """Every numeric quantity's error as a fraction of its bound, one column per check.

    A point above 1 failed. Frameworks sit side by side in each column, forms
    differ by marker; every model of the run is pooled. Written atomically (PNG,
    or SVG/PDF by suffix); returns the matplotlib Figure.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install -e '.[plot]'") from e
    points = plot_points(result)
    # The default checks always have a column; an optional one only where it ran.
    columns = [c for c in NUMERIC_CHECKS if c in CHECKS or any(r.check == c for r in result.results)]
    frameworks = list(dict.fromkeys(fw for _, fw, _, _ in points))
    colors = {"torch": "tab:red", "keras": "tab:blue", "flax": "tab:green"}
    markers = {"a": "o", "b": "s", "c": "^"}
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for fw_index, fw in enumerate(frameworks):
        for form, marker in markers.items():
            mine = [(c, y) for c, f, fo, y in points if f == fw and fo == form]
            if not mine:
                continue
            xs = [columns.index(c) + (fw_index - (len(frameworks) - 1) / 2) * 0.25 for c, _ in mine]
            ax.scatter(
                xs,
                [y for _, y in mine],
                marker=marker,
                color=colors.get(fw, "tab:gray"),
                alpha=0.6,
                label=f"{fw} ({form})",
            )
    ax.axhline(1.0, color="black", linewidth=1)
    ax.text(len(columns) - 0.5, 1.15, "bound", ha="right", va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(PLOT_FLOOR / 2, 10)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylabel("error / bound  (above 1 fails)")
    models = result.meta.get("models", [])
    what = models[0] if len(models) == 1 else f"{len(models)} models"
    ax.set_title(f"{what}: every build against torch (c), {result.meta.get('device', 'cpu')}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120))
    return fig


def plot_trajectories(result: ParityResult, path: str | os.PathLike) -> Path:
    """The training loss of every build, step by step, over each other and the float64 torch run.

    Written next to ``path`` as ``<stem>-trajectory<suffix>``; returns that path.
    """
    from matplotlib.figure import Figure

    curves = result.meta["trajectories"]
    fig = Figure(figsize=(5 * len(curves), 4), layout="constrained")
    colors = {"torch": "tab:red", "keras": "tab:blue", "flax": "tab:green"}
    styles = {"a": ":", "b": "--", "c": "-"}
    for i, (model, builds) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), i + 1)
        for build, losses in builds.items():
            fw, form = build.split(" (")[0], build.split("(")[1][0]
            truth = build.endswith("float64")
            ax.plot(
                range(1, len(losses) + 1),
                losses,
                color="black" if truth else colors.get(fw, "tab:gray"),
                linestyle=styles.get(form, "-"),
                linewidth=3 if truth else 1.2,
                alpha=0.35 if truth else 0.9,
                label=build,
            )
        ax.set(xlabel="step", ylabel="training loss", title=f"{model}: every build, same batches")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    path = Path(path)
    out = path.with_name(f"{path.stem}-trajectory{path.suffix or '.png'}")
    fmt = out.suffix.lstrip(".").lower()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120))
    return out
