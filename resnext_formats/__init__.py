"""The checkpoint layouts people hold, read into the canonical dict and written back: torchvision and
timm (state_dicts, safetensors, hub folders, ``train.py`` checkpoints), Hugging Face transformers
folders, keras.applications and keras-hub files, and this project's own; the architecture inferred
from tensor names, shapes and metadata.

Below the tools, beside the model packages: it imports ``resnext_spec``, and a framework only
inside the reader or writer of that framework's own file; no model package imports it, and it
imports none (``native`` hands it one where the project's own Keras or Flax file needs it).
"""

from .errors import PortError
from .hf import write_hf_dir
from .read import (
    FORMATS,
    FRAMEWORK_OF,
    HF,
    LEGACY_H5,
    Native,
    Weights,
    describe,
    format_of,
    infer_config,
    infer_form,
    read,
    read_source,
)

__all__ = [
    "FORMATS",
    "FRAMEWORK_OF",
    "HF",
    "LEGACY_H5",
    "Native",
    "PortError",
    "Weights",
    "describe",
    "format_of",
    "infer_config",
    "infer_form",
    "read",
    "read_source",
    "write_hf_dir",
]
