"""The cross-framework layer: the parity harness (and, later, weight porting)."""

from .harness import CHECKS, CheckResult, ParityResult, run_parity

__all__ = ["CHECKS", "CheckResult", "ParityResult", "run_parity"]
