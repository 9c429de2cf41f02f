"""``make_engine``: the dispatcher over the three frameworks' engines, and the settings only training has.

The engines themselves live in their framework packages (``resnext_torch.TorchEngine``,
``resnext_keras.KerasEngine``, ``resnext_flax.FlaxEngine``); each framework is imported
only when its engine is asked for, so training works with any subset installed.
"""

from __future__ import annotations

from resnext_spec import ArchConfig
from resnext_spec.errors import ConfigError
from resnext_spec.training import Engine, Recipe


def make_engine(
    framework: str,
    config: ArchConfig,
    form: str,
    weights: dict,
    recipe: Recipe,
    conv_impl: str = "auto",
    *,
    devices: int | str | None = None,
    sync_bn: bool = False,
    device: str = "cpu",
) -> Engine:
    """The engine of ``framework``; ``devices`` is Keras's and Flax's, ``sync_bn`` and ``device`` torch's."""
    if framework == "torch":
        if devices not in (None, 1, "1"):
            raise ConfigError(
                "torch runs one process per device: torchrun --nproc-per-node N resnext-train ... "
                "(--num-devices is for Keras and Flax)"
            )
        from resnext_torch import TorchEngine

        return TorchEngine(config, form, weights, recipe, sync_bn=sync_bn, device=device)
    if sync_bn:
        raise ConfigError(
            "--sync-bn is for torch: with --num-devices, Keras and Flax normalise over the global batch "
            "always"
        )
    if framework == "keras":
        from resnext_keras import KerasEngine

        return KerasEngine(config, form, weights, recipe, conv_impl, devices)
    if framework == "flax":
        from resnext_flax import FlaxEngine

        return FlaxEngine(config, form, weights, recipe, conv_impl, devices)
    raise ConfigError(f"unknown framework {framework!r}; choose torch, keras or flax")
