"""The error every reader and writer of a checkpoint layout raises on a file it cannot take."""

from resnext_spec.errors import ResNeXtError


class PortError(ResNeXtError):
    """A file or an argument that cannot be ported; the message says what and how to fix it."""
