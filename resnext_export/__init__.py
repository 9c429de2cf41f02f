"""``resnext-export``: any build as a deployable artifact (ONNX, LiteRT, TF SavedModel, StableHLO,
``torch.export``), and the proof that the artifact, in its own runtime, computes the same function."""

from .export import ExportResult, Verification, export, load_source, sidecar_path
from .formats import EXPORTERS, FORMATS, REFUSED, ExportError, check_pair

__all__ = [
    "EXPORTERS",
    "FORMATS",
    "REFUSED",
    "ExportError",
    "ExportResult",
    "Verification",
    "check_pair",
    "export",
    "load_source",
    "sidecar_path",
]
