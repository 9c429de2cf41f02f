"""Terminal table and JSON file for a ParityResult."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

from resnext_spec import atomic_write

from .harness import CHECKS, INFO_CHECKS, CheckResult, ParityResult


def _cell(rows: list[CheckResult]) -> tuple[str, bool]:
    """The worst quantity of a check for one build, as 'error (floor)' or 'exact'."""
    worst = max(rows, key=lambda r: (r.error / r.bound) if r.bound else r.error)
    ok = all(r.passed for r in rows)
    if worst.check in ("roundtrip", "copy"):
        return ("bitwise" if ok else "DIFFERS"), ok
    if worst.check == "counts":
        return (worst.detail.split(" ")[0] if ok else worst.detail), ok
    text = f"{worst.error:.1e}"
    if worst.check in INFO_CHECKS:
        return text, ok
    if worst.floor is not None and worst.bound > 1e-5:
        text += f" (floor {worst.floor:.0e})"
    return text, ok


def table_rows(result: ParityResult, model: str) -> tuple[list[str], list[tuple[list[str], list[bool]]]]:
    """Rows of builds x checks for one model, each cell the worst error of that check."""
    checks = [c for c in CHECKS + INFO_CHECKS if any(r.check == c for r in result.results)]
    grouped: dict[tuple[str, str], dict[str, list[CheckResult]]] = defaultdict(lambda: defaultdict(list))
    for r in result.results:
        if r.model == model:
            grouped[r.framework, r.form][r.check].append(r)
    rows = []
    for (fw, form), by_check in grouped.items():
        cells, oks = [fw, form], []
        for c in checks:
            text, ok = _cell(by_check[c]) if by_check.get(c) else ("", True)
            cells.append(text)
            oks.append(ok)
        cells.append("PASS" if all(oks) else "FAIL")
        rows.append((cells, oks))
    return ["build", "form", *checks, "result"], rows


def print_table(result: ParityResult) -> None:
    """One table per model; an error shows its float64 floor where the floor sets the bound."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text when rich is not installed
        Console = None
    for model in result.meta.get("models", []):
        header, rows = table_rows(result, model)
        title = f"{model}: every build against torch form (c), fp32"
        if Console is None:
            print(title)
            print(" | ".join(header))
            for cells, _ in rows:
                print(" | ".join(cells))
            continue
        table = Table(title=title)
        for h in header:
            table.add_column(h, justify="left" if h in ("build", "form") else "right")
        for cells, oks in rows:
            styled = cells[:2] + [
                c if ok else f"[red]{c}[/red]" for c, ok in zip(cells[2:-1], oks, strict=True)
            ]
            styled.append("[green]PASS[/green]" if cells[-1] == "PASS" else "[bold red]FAIL[/bold red]")
            table.add_row(*styled)
        console = Console()
        console.width = max(console.width, 170)
        console.print(table)
    print_summary(result)


def print_summary(result: ParityResult) -> None:
    for r in result.failures:
        where = f" at {r.tensor}" if r.tensor else ""
        print(
            f"FAIL {r.model} {r.framework} ({r.form}) {r.check}/{r.quantity}: "
            f"error {r.error:.3e}{where} > bound {r.bound:.1e} {r.detail}".rstrip()
        )
    n, bad = len(result.results), len(result.failures)
    print(
        f"{n - bad} passed, {bad} failed in {result.meta.get('wall_time_s', 0):.1f} s "
        f"(worst error over bound per check: "
        + ", ".join(f"{c} {_ratio(result, c)}" for c in CHECKS if result.worst(c))
        + ")"
    )
    tf32 = result.worst("tf32")
    if tf32:
        print(f"TF32 (shown, not judged): torch (c) eval logits off full fp32 by {tf32.error:.1e}")


def _ratio(result: ParityResult, check: str) -> str:
    w = result.worst(check)
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
