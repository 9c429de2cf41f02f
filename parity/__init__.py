"""The cross-framework layer: the parity harness and weight porting."""

from .harness import CHECKS, CheckResult, ParityResult, run_parity
from .port import PortError, PortResult, port

__all__ = ["CHECKS", "CheckResult", "ParityResult", "PortError", "PortResult", "port", "run_parity"]
