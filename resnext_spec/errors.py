"""The one base class of every error the project raises on bad input.

It is deliberately not a ``ValueError``: the command-line tools catch exactly this
class (exit 2, one line), so a ``ValueError`` or ``IndexError`` from a bug in the code
or in a library is never mistaken for bad input; it surfaces with its traceback (exit 3).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable


class ResNeXtError(Exception):
    """Bad input or settings: the message names the problem and, where it can, the fix."""


class ConfigError(ResNeXtError):
    """A preset, architecture field, block form or setting that does not exist or does not fit."""


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command-line tool's ``body`` with the project's exit codes (pytest's 0/1/2/3).

    ``body`` returns 0 (done) or 1 (a check found a difference). Bad input, a
    :class:`ResNeXtError` or an ``OSError`` on a path the user named, prints one line
    on stderr and gives 2. Anything else is a bug: its traceback is printed and the
    exit code is 3, so it is never mistaken for bad input. argparse's own exits
    (``--help``, a malformed flag: 0 and 2) pass through as their codes.
    """
    try:
        return body()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    except (ResNeXtError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        raise
    except Exception:
        traceback.print_exc()
        print(
            f"{prog}: an internal error (a bug, not bad input): please report the traceback above",
            file=sys.stderr,
        )
        return 3
