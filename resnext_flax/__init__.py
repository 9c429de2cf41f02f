"""ResNet / ResNeXt in Flax NNX, forms (a), (b) and (c), with canonical weight I/O."""

from .model import AggregatedBottleneck, BasicBlock, Bottleneck, EarlyConcatBottleneck, ResNet, create_model
from .weights import count_params, export_weights, import_weights, load, load_msgpack, save, save_msgpack

__all__ = [
    "AggregatedBottleneck",
    "BasicBlock",
    "Bottleneck",
    "EarlyConcatBottleneck",
    "ResNet",
    "count_params",
    "create_model",
    "export_weights",
    "import_weights",
    "load",
    "load_msgpack",
    "save",
    "save_msgpack",
]
