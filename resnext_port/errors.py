"""The error resnext-port raises: the checkpoint layouts' own (``resnext_formats.PortError``)."""

from resnext_formats.errors import PortError

__all__ = ["PortError"]
