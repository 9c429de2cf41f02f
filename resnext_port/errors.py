"""The error every porting reader raises on a file it cannot port."""

from resnext_spec.errors import ResNeXtError


class PortError(ResNeXtError):
    """A file or an argument that cannot be ported; the message says what and how to fix it."""
