import sys
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
