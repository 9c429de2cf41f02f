"""ResNet / ResNeXt in Keras 3 (TensorFlow, JAX or torch backend), forms (a), (b) and (c)."""

from .engine import KerasEngine
from .facade import NATIVE_SUFFIX, build, load_native, predict, save_native, stage_outputs
from .model import BatchNorm, ResNet, create_model, layer_name, stages_model
from .train import TorchSGD, full_fp32
from .weights import (
    count_params,
    export_weights,
    import_weights,
    load,
    load_weights_file,
    save,
    save_weights_atomic,
)

__all__ = [
    "NATIVE_SUFFIX",
    "build",
    "load_native",
    "predict",
    "save_native",
    "stage_outputs",
    "BatchNorm",
    "KerasEngine",
    "ResNet",
    "TorchSGD",
    "count_params",
    "create_model",
    "export_weights",
    "full_fp32",
    "import_weights",
    "layer_name",
    "load",
    "load_weights_file",
    "save",
    "stages_model",
    "save_weights_atomic",
]
