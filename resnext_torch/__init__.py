"""ResNet / ResNeXt in PyTorch, forms (a), (b) and (c), with canonical weight I/O."""

from .distributed import GlobalBatchNorm2d, convert_sync_batchnorm
from .engine import TorchEngine
from .facade import NATIVE_SUFFIX, build, load_native, predict, save_native, stage_outputs
from .model import AggregatedBottleneck, BasicBlock, Bottleneck, EarlyConcatBottleneck, ResNet, create_model
from .weights import (
    count_params,
    export_weights,
    import_weights,
    load,
    randomise_batchnorm,
    save,
    save_state_dict,
)

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
    "GlobalBatchNorm2d",
    "ResNet",
    "TorchEngine",
    "convert_sync_batchnorm",
    "count_params",
    "create_model",
    "export_weights",
    "import_weights",
    "load",
    "randomise_batchnorm",
    "save",
    "save_state_dict",
]
