"""ResNet / ResNeXt in Flax NNX, forms (a), (b) and (c), with canonical weight I/O."""

from .engine import FlaxEngine
from .facade import NATIVE_SUFFIX, build, load_native, predict, save_native, stage_outputs
from .model import AggregatedBottleneck, BasicBlock, Bottleneck, EarlyConcatBottleneck, ResNet, create_model
from .train import full_fp32
from .weights import count_params, export_weights, import_weights, load, load_msgpack, save, save_msgpack

__all__ = [
    "NATIVE_SUFFIX",
    "build",
    "load_native",
    "predict",
    "save_native",
    "stage_outputs",
    "AggregatedBottleneck",
    "BasicBlock",
    "Bottleneck",
    "EarlyConcatBottleneck",
    "FlaxEngine",
    "ResNet",
    "count_params",
    "create_model",
    "export_weights",
    "full_fp32",
    "import_weights",
    "load",
    "load_msgpack",
    "save",
    "save_msgpack",
]
