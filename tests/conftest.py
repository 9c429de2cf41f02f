import os
import sys
import time
from pathlib import Path

import pytest

# Make `tests/helpers.py` importable as `helpers` from every test file.
sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    """Refuse `--dist loadgroup` on a pytest that breaks it, instead of silently repeating work.

    Tests that read one shared run (parity_runs.shared) must land on one worker or each
    worker makes the run again. pytest 9.2 stopped xdist's grouping without any error
    (pytest-dev/pytest-xdist#1386); pyproject.toml pins pytest below it.
    """
    if config.getoption("dist", "no") != "loadgroup" or hasattr(config, "workerinput"):
        return
    if tuple(int(p) for p in pytest.__version__.split(".")[:2]) >= (9, 2):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} breaks xdist's --dist loadgroup (pytest-dev/pytest-xdist#1386): "
            "install 'pytest<9.2' (pip install -e '.[dev]' does) or run without -n"
        )


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """With RESNEXT_DURATIONS_FILE set (`make test-full` sets it), write the slowest tests there, each
    with its tier, so the next person sees where the suite's time goes without running it."""
    path = os.environ.get("RESNEXT_DURATIONS_FILE")
    if not path or hasattr(config, "workerinput"):
        return
    times: dict[str, float] = {}
    slow: set[str] = set()
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, "when", None) in ("setup", "call", "teardown"):
                times[r.nodeid] = times.get(r.nodeid, 0.0) + r.duration
                if "slow" in getattr(r, "keywords", {}):
                    slow.add(r.nodeid)
    fast_total = sum(t for n, t in times.items() if n not in slow)
    lines = [
        f"# The 40 slowest tests of `{' '.join(config.invocation_params.args) or 'pytest'}`, setup included",
        f"# {len(times)} tests, {sum(times.values()):.0f} s of worker time; fast tier (not slow) "
        f"{fast_total:.0f} s; written {time.strftime('%Y-%m-%d')} by tests/conftest.py",
        "",
    ]
    for nodeid, t in sorted(times.items(), key=lambda kv: -kv[1])[:40]:
        lines.append(f"{t:8.1f} s  {'full' if nodeid in slow else 'fast'}  {nodeid}")
    Path(path).write_text("\n".join(lines) + "\n")
