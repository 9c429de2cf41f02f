"""Framework-free core of ResNeXt three ways: configs, the architecture's parts and their shapes,
forms, checkpoints, counts, the frameworks by name, the
tolerances every comparison uses, the training recipe, and the one error class (ResNeXtError).

Imports numpy and safetensors only; the torch, Keras and Flax packages build on it.
"""

from .checkpoint import CheckpointError, atomic_write, load_checkpoint, load_checkpoint_as, save_checkpoint
from .config import (
    FORMS,
    ArchConfig,
    check_form,
    check_form_for,
    get_config,
    list_presets,
    preset_of,
    resolve_config,
)
from .counting import count_flops, count_params
from .errors import ConfigError, ResNeXtError
from .forms import to_form
from .frameworks import FRAMEWORKS, check_framework
from .init import init_weights, random_weights
from .layout import (
    BlockSpec,
    FeatureInfo,
    LayerSpec,
    Plan,
    body_layers,
    canonical_shapes,
    check_image_size,
    feature_info,
    is_running_stat,
    layers,
    plan,
    stage_names,
    stem_spec,
)
from .weights import HeadLeftOutWarning, WeightsMismatchError, check_weights

__all__ = [
    "FORMS",
    "FRAMEWORKS",
    "body_layers",
    "check_framework",
    "check_image_size",
    "stem_spec",
    "ArchConfig",
    "BlockSpec",
    "CheckpointError",
    "ConfigError",
    "FeatureInfo",
    "HeadLeftOutWarning",
    "LayerSpec",
    "Plan",
    "ResNeXtError",
    "WeightsMismatchError",
    "atomic_write",
    "canonical_shapes",
    "check_form",
    "check_form_for",
    "check_weights",
    "count_flops",
    "count_params",
    "feature_info",
    "init_weights",
    "get_config",
    "is_running_stat",
    "layers",
    "list_presets",
    "load_checkpoint",
    "load_checkpoint_as",
    "plan",
    "preset_of",
    "random_weights",
    "resolve_config",
    "save_checkpoint",
    "stage_names",
    "to_form",
]
