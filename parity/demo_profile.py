"""`make demo-profile`: what `make demo` costs on this machine, in time and memory, run by run.

Runs the default report and its parts (one framework beside torch at a time, and float64), each in a
fresh process as `make demo` does, and writes a table of wall time, the report's own time and the
process's peak resident set (from the kernel's accounting of the child, so the frameworks' own
allocations count), with the CPU class the figures came from. The biggest builds by time and by
memory come from the report's JSON (`meta.builds`).

    python -m parity.demo_profile --out docs/results    # demo_profile_<class>.md and .json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resnext_spec.checkpoint import atomic_write_bytes
from resnext_spec.machine import cpu_class

RUNS = {  # name -> the flags of `python -m parity` (the default model, every check)
    "make demo (all nine builds)": [],
    "--frameworks torch": ["--frameworks", "torch"],
    "--frameworks torch,keras": ["--frameworks", "torch,keras"],
    "--frameworks torch,flax": ["--frameworks", "torch,flax"],
    "--precision float64": ["--precision", "float64"],
}


def profile(flags: list[str]) -> dict:
    """One `python -m parity` process: its wall time, peak RSS (MiB) and report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "parity", *flags, "--json", str(report), "--quiet"]
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        stderr = child.stderr.read().decode() if child.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{stderr[-2000:]}")
        meta = json.loads(report.read_text())
    results = meta["results"]
    builds = meta["meta"].get("builds", {})
    return {
        "flags": flags,
        "wall_s": round(wall, 1),
        "report_s": meta["meta"]["wall_time_s"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux reports KiB
        "passed": sum(r["passed"] for r in results),
        "failed": sum(not r["passed"] for r in results),
        "builds": builds,
    }


def table(rows: dict[str, dict], cls: str) -> str:
    lines = [
        f"CPU class: {cls}, {os.cpu_count()} cores (`python -m parity.demo_profile`)",
        "",
        "| run | wall (s) | report (s) | peak RSS (GiB) | checks passed | slowest build | largest build |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        builds = r["builds"]
        slow = max(builds, key=lambda b: builds[b]["wall_s"], default=None)
        big = max(builds, key=lambda b: builds[b].get("peak_rss_mb") or 0, default=None)
        slow_text = f"{slow.split(': ')[1]} {builds[slow]['wall_s']:.0f} s" if slow else ""
        big_text = f"{big.split(': ')[1]} {builds[big]['peak_rss_mb'] / 1024:.1f} GiB" if big else ""
        lines.append(
            f"| {name} | {r['wall_s']:.0f} | {r['report_s']:.0f} | {r['peak_rss_mb'] / 1024:.1f} | "
            f"{r['passed']}/{r['passed'] + r['failed']} | {slow_text} | {big_text} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m parity.demo_profile", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="folder for the table and JSON")
    p.add_argument("--runs", default=",".join(str(i) for i in range(len(RUNS))), help="which rows, by index")
    args = p.parse_args(argv)
    cls = cpu_class()
    chosen = [list(RUNS)[int(i)] for i in args.runs.split(",")]
    rows = {}
    for i, name in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {name} ...", end=" ", flush=True)
        rows[name] = profile(RUNS[name])
        r = rows[name]
        print(f"{r['wall_s']:.0f} s, peak {r['peak_rss_mb'] / 1024:.1f} GiB", flush=True)
    stem = f"demo_profile_{cls.lower().replace('-', '')}"
    text = table(rows, cls)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / f"{stem}.md", text.encode())
    atomic_write_bytes(
        args.out / f"{stem}.json", (json.dumps({"cpu_class": cls, "rows": rows}, indent=1) + "\n").encode()
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
