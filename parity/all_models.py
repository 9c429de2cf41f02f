"""`resnext-parity --models all`, one process per preset, resumable, merged into one report.

A full-check run of every preset takes hours on 2 CPU cores. One process per
preset keeps what finished if the machine stops, frees each model's memory, and
lets a second invocation skip the presets whose JSON is already there. At the
end the per-preset reports are merged (``parity.report.merge_results``) into
``all.json`` and ``all.png`` in the output folder, and a markdown table of the
per-preset wall times and worst errors is printed and written to ``all.md``.

Usage: python -m parity.all_models --out docs/results/cpu_all [--models a,b] [-- extra harness args]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from parity.report import NUMERIC_CHECKS, merge_results, plot_ratios, read_json, write_json
from resnext_spec import list_presets
from resnext_spec.checkpoint import atomic_write_bytes
from resnext_spec.config import PRESET_ALIASES


def run_one(model: str, out: Path, extra: list[str]) -> float:
    """Run the harness on one preset in a fresh process; returns its wall time (s)."""
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "parity", "--models", model, "--json", str(out), "--quiet", *extra]
    with open(out.with_suffix(".txt"), "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc not in (0, 1):  # 1 = some check failed: still a report worth keeping
        raise SystemExit(f"{model}: resnext-parity exited {rc}; see {out.with_suffix('.txt')}")
    return time.perf_counter() - t


def table(result) -> str:
    """Markdown: per preset, its time inside the harness and each numeric check's worst error / bound."""
    lines = [
        "| preset | harness time (s) | peak RSS (MiB) | " + " | ".join(NUMERIC_CHECKS) + " | passed |",
        "|---|---|---|" + "---|" * len(NUMERIC_CHECKS) + "---|",
    ]
    peaks = result.meta.get("model_peak_rss_mb", {})
    for model in result.meta["models"]:
        rows = [r for r in result.results if r.model == model]
        cells = []
        for check in NUMERIC_CHECKS:
            mine = [r for r in rows if r.check == check]
            worst = max(mine, key=lambda r: r.error / r.bound, default=None)
            cells.append(f"{worst.error:.1e} / {worst.bound:.0e}" if worst else "")
        ok = sum(r.passed for r in rows)
        lines.append(
            f"| {model} | {result.meta['model_time_s'][model]:.0f} | {peaks.get(model, '')} | "
            + " | ".join(cells)
            + f" | {ok}/{len(rows)} |"
        )
    return "\n".join(lines)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="folder for the per-preset and merged reports")
    p.add_argument("--models", default="all", help="comma-separated presets (default: all)")
    args = p.parse_args(argv)
    # an alias is another name for a preset already in the list
    every = [n for n in list_presets() if n not in PRESET_ALIASES]
    models = every if args.models == "all" else args.models.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, model in enumerate(models, 1):
        path = args.out / f"{model}.json"
        if path.exists():
            print(f"[{i}/{len(models)}] {model}: already there, skipped", flush=True)
            continue
        print(f"[{i}/{len(models)}] {model} ...", end=" ", flush=True)
        print(f"{run_one(model, path, extra):.0f} s", flush=True)
    merged = merge_results([read_json(args.out / f"{m}.json") for m in models])
    write_json(merged, args.out / "all.json")
    plot_ratios(merged, args.out / "all.png")
    text = table(merged)
    atomic_write_bytes(args.out / "all.md", (text + "\n").encode())
    print(text)
    bad = len(merged.failures)
    print(
        f"\n{len(merged.results) - bad} passed, {bad} failed; harness time summed over presets "
        f"{merged.meta['wall_time_s']:.0f} s (this invocation {time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
