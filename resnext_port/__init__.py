"""`resnext-port`: any ResNet/ResNeXt checkpoint people hold into any build and back, losslessly.

``port(src, dst)`` from Python; ``resnext-port`` from the shell (see ``resnext_port.cli``).
"""

from .errors import PortError
from .port import PortResult, Weights, port, read, write

__all__ = ["PortError", "PortResult", "Weights", "port", "read", "write"]
