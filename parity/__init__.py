"""The parity harness: all nine builds, one set of weights, compared number by number."""

from .harness import CHECKS, CheckResult, ParityResult, run_parity

__all__ = ["CHECKS", "CheckResult", "ParityResult", "run_parity"]
