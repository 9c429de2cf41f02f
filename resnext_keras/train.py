"""Training pieces a Keras user needs to follow torch's recipe: its SGD, and full-fp32 GPU compute."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import keras
from keras import ops

from resnext_spec.errors import ConfigError


@keras.saving.register_keras_serializable(package="resnext")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD exactly as ``torch.optim.SGD`` steps: ``b = momentum * b + (g + wd * w)``, ``w -= lr * b``.

    Keras's own ``SGD`` differs twice: its ``weight_decay`` is decoupled (applied to
    the weights beside the step, never entering the momentum), and its momentum
    buffer holds ``lr``-scaled steps, so after a learning-rate drop it still moves
    at the old rate for a while. With this class a Keras run takes torch's steps.

    ``lr_multipliers`` maps a variable path prefix (``"fc/"``) to a factor on the learning
    rate of the variables under it: torch's parameter groups, for a classifier's own rate.
    """

    def __init__(
        self,
        learning_rate: float = 0.1,
        momentum: float = 0.9,
        coupled_weight_decay: float = 0.0,
        name: str = "torch_sgd",
        lr_dtype: str | None = None,
        lr_multipliers: dict[str, float] | None = None,
        **kwargs,
    ):
        # Keras keeps the learning rate in a floatx (float32) variable: a float64 model would
        # then step by float32(0.1), 1.5e-8 off torch's; lr_dtype="float64" keeps it exact.
        old_floatx = keras.config.floatx()
        keras.config.set_floatx(lr_dtype or old_floatx)
        try:
            super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        finally:
            keras.config.set_floatx(old_floatx)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        if coupled_weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {coupled_weight_decay}")
        self.momentum = momentum
        self.coupled_weight_decay = coupled_weight_decay
        self.lr_multipliers = dict(lr_multipliers or {})

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        # Per variable, by index: update_step may be handed the backend's variable, which has no path.
        self.lr_factors = [
            next((f for p, f in self.lr_multipliers.items() if v.path.startswith(p)), 1.0) for v in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        def const(value):
            # Straight to the variable's dtype: ops.cast(0.9, "float64") would round 0.9 to float32 first.
            return ops.convert_to_tensor(value, dtype=variable.dtype)

        lr = ops.cast(learning_rate, variable.dtype)
        factor = self.lr_factors[self._get_variable_index(variable)]
        if factor != 1.0:
            lr = ops.multiply(lr, const(factor))
        g = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            g = ops.add(g, ops.multiply(variable, const(self.coupled_weight_decay)))
        buf = self.momentums[self._get_variable_index(variable)]
        # torch starts the buffer at the first gradient; from zeros, momentum * 0 + g is that.
        self.assign(buf, ops.add(ops.multiply(buf, const(self.momentum)), g))
        self.assign_sub(variable, ops.multiply(buf, lr))

    def get_config(self) -> dict:
        return super().get_config() | {
            "momentum": self.momentum,
            "coupled_weight_decay": self.coupled_weight_decay,
            "lr_multipliers": self.lr_multipliers,
        }


def full_fp32() -> AbstractContextManager:
    """A context in which Keras on JAX computes fp32 convs and matmuls in full fp32.

    On a GPU, JAX uses TF32 for them by default (about 1e-3 relative error); on CPU,
    and on the TensorFlow and torch backends, this changes nothing.
    """
    if keras.backend.backend() != "jax":
        return nullcontext()
    import jax

    return jax.default_matmul_precision("highest")
