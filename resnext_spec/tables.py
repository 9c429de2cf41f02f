"""Tables that fit the terminal they are printed on.

The reports' tables (parity's checks, bench's rows) grew wider than a laptop's terminal, and the
commands once forced the console to 200 columns, so a 100-column window wrapped every line in two.
Here a table too wide for the terminal is split into parts, each repeating the columns that name a
row; ``wide=True`` keeps the one wide table, for a wide window or a log.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

WIDE = 220  # the one-table layout's width
FALLBACK = 100  # a pipe or a file: no terminal to ask


def terminal_width(wide: bool = False) -> int:
    return WIDE if wide else shutil.get_terminal_size((FALLBACK, 24)).columns


def column_width(header: str, cells: Sequence[str]) -> int:
    """What rich's default table gives a column: its widest line, padding 1 each side, a border."""
    return max([len(header), *(len(_plain(c)) for c in cells)]) + 3


def _plain(cell: str) -> str:
    """A cell's text without rich's [style] markup."""
    import re

    return re.sub(r"\[/?[a-z ]+\]", "", cell)


def split_columns(
    header: Sequence[str], rows: Sequence[Sequence[str]], width: int, keep_left: int, keep_right: int = 0
) -> list[list[int]]:
    """Column indices of each part: the first ``keep_left`` and last ``keep_right`` columns in every
    part, the others packed in order into as few parts as ``width`` allows (one at least each)."""
    n = len(header)
    widths = [column_width(header[i], [r[i] for r in rows]) for i in range(n)]
    left, right = list(range(keep_left)), list(range(n - keep_right, n))
    fixed = sum(widths[i] for i in left + right) + 1
    parts: list[list[int]] = []
    current: list[int] = []
    used = fixed
    for i in range(keep_left, n - keep_right):
        if current and used + widths[i] > width:
            parts.append(current)
            current, used = [], fixed
        current.append(i)
        used += widths[i]
    parts.append(current)
    return [left + p + right for p in parts]


def print_table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    keep_left: int,
    keep_right: int = 0,
    right_aligned: Sequence[str] = (),
    wide: bool = False,
) -> None:
    """``rows`` under ``header`` as one rich table, or as parts when it is wider than the terminal
    (plain text, ``|``-separated, where rich is not installed)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(" | ".join(header))
        for cells in rows:
            print(" | ".join(_plain(c) for c in cells))
        return
    width = terminal_width(wide)
    parts = split_columns(header, rows, width, keep_left, keep_right)
    console = Console(width=width)
    for k, columns in enumerate(parts):
        table = Table(title=title if len(parts) == 1 else f"{title} ({k + 1}/{len(parts)})")
        for i in columns:
            table.add_column(header[i], justify="right" if header[i] in right_aligned else "left")
        for cells in rows:
            table.add_row(*(cells[i] for i in columns))
        console.print(table)
