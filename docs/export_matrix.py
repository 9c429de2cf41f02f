"""The export matrix of docs/export.md: every supported (framework, Keras backend, format) pair and
block form, exported with `resnext-export --verify`, one process per row, into a table and JSON.

    python docs/export_matrix.py                      # what docs/results/export.md shows
    python docs/export_matrix.py --models resnext26_8x16d --forms c --repeats 3

Each row is the command it names, run as a user would run it (a Keras row sets KERAS_BACKEND).
A row that fails to export is kept in the table with its error: the matrix says what happened.
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

from resnext_export import FORMATS
from resnext_export.formats import EXPORTERS, KERAS_REFUSED, REFUSED
from resnext_spec.versions import versions

# (framework, Keras backend or "", format), in the order the table shows them
ROWS = [(fw, backend, fmt) for (fw, fmt), backends in EXPORTERS.items() for backend in sorted(backends)]


def run_row(model: str, fw: str, backend: str, fmt: str, form: str, repeats: int, folder: Path) -> dict:
    name = f"{model}_{fw}{'_' + backend if backend else ''}_{form}"
    out = folder / f"{name}{FORMATS[fmt].suffix or '_saved_model'}"
    report = folder / f"{name}.json"
    argv = [model, "--framework", fw, "--format", fmt, "--form", form, "--out", str(out)]
    argv += ["--verify", "--repeats", str(repeats), "--json", str(report)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if backend:
        env["KERAS_BACKEND"] = backend
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "resnext_export", *argv], env=env, capture_output=True, text=True
    )
    row = {"model": model, "framework": fw, "backend": backend or None, "format": fmt, "form": form}
    row |= {"command": " ".join(["resnext-export", *argv[:8]]), "exit": done.returncode}
    row["wall_s"] = round(time.perf_counter() - t, 1)
    if report.exists():
        row["result"] = json.loads(report.read_text())
    else:
        row["error"] = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    for path in (out, report):  # artifacts are large; the figures are what is kept
        if path.is_dir():
            subprocess.run(["rm", "-rf", str(path)], check=True)
        elif path.exists():
            path.unlink()
    return row


def table(rows: list[dict]) -> str:
    head = (
        "| model | build | format | form | s, export and verify | MiB | vs torch (c) | batch 1 | unfused "
        "| vs own build | ms, batch 1: artifact / own build | ms, batch 8 |\n|" + "---|" * 12
    )
    lines = [head]
    for r in rows:
        build = r["framework"] + (f" ({r['backend']})" if r["backend"] else "")
        first = f"| {r['model']} | {build} | {r['format']} | ({r['form']}) "
        failure = r.get("error") or r["result"]["verification"].get("failure")
        if failure:
            lines.append(first + f"| failed: {failure} |" + " |" * 7)
            continue
        res = r["result"]
        v, lat = res["verification"]["errors"], res["verification"]["latency_ms"]
        unfused = f"{v['unfused']:.1e}" if "unfused" in v else "–"
        lines.append(
            first + f"| {res['seconds']:.1f} | {res['size_bytes'] / 2**20:.1f} | {v['reference']:.1e} "
            f"| {v['batch 1']:.1e} | {unfused} | {v['source']:.1e} "
            f"| {lat['1']['artifact']:.1f} / {lat['1']['source']:.1f} "
            f"| {lat['8']['artifact']:.1f} / {lat['8']['source']:.1f} |"
        )
    return "\n".join(lines)


def refusals() -> str:
    lines = ["| build | format | why not |", "|---|---|---|"]
    lines += [f"| {fw} | {fmt} | {why} |" for (fw, fmt), why in sorted(REFUSED.items())]
    for fmt, why in sorted(KERAS_REFUSED.items()):
        others = sorted({"tensorflow", "jax", "torch"} - set(EXPORTERS["keras", fmt]))
        lines.append(f"| keras ({', '.join(others)}) | {fmt} | {why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models",
        default="resnext26_8x16d:abc,resnext50_32x4d:c",
        help="MODEL:FORMS, comma-separated (default: every form of resnext26_8x16d, (c) of resnext50_32x4d)",
    )
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    runs = [(m.split(":")[0], m.split(":")[1] if ":" in m else "c") for m in args.models.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, forms in runs:
            for form in forms:
                for fw, backend, fmt in ROWS:
                    rows.append(run_row(model, fw, backend, fmt, form, args.repeats, Path(tmp)))
                    r = rows[-1]
                    v = r.get("result", {}).get("verification", {})
                    got = r.get("error") or v.get("failure") or f"{v['errors']['reference']:.1e}"
                    print(
                        f"{model} {fw} {backend} {fmt} ({form}): exit {r['exit']}, {got}, {r['wall_s']} s",
                        flush=True,
                    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = [
        "# Export matrix",
        "",
        f"Made by `python docs/export_matrix.py --models {args.models} --repeats {args.repeats}` "
        f"on {time.strftime('%Y-%m-%d')}; every row is `resnext-export MODEL --framework F --format X "
        "--form f --verify`. Errors are max relative logit errors against torch form (c) in fp32 "
        "(8 images, BN randomised); latency is the median of the repeats, in ms, beside the build "
        "the artifact came from, in its own framework.",
        "",
        table(rows),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        "",
        "Pairs that are refused (exit 2, nothing written):",
        "",
        refusals(),
        "",
    ]
    (out / "export.md").write_text("\n".join(md))
    return 0 if all("result" in r and r["result"]["verification"]["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
