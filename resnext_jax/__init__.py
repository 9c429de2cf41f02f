"""JAX-only code below the models: the grouped convolution's lowerings, used by Flax and by Keras on
its JAX backend (``resnext_jax.grouped``). Imports jax and ``resnext_spec`` only."""

from .grouped import LOWERINGS, patches_conv, split_conv, taps_conv

__all__ = ["LOWERINGS", "patches_conv", "split_conv", "taps_conv"]
