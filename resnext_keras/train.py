"""Forward, backward and one SGD step on numpy data, for any Keras backend.

Gradients are backend-specific in Keras 3 (``tf.GradientTape``, ``jax.grad`` over
``stateless_call``, torch autograd); everything else is shared. Inputs are NHWC;
results are float64 numpy keyed by canonical names in the model's own form.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from resnext_spec import PassResult, is_running_stat
from resnext_spec.layout import FROM_CHANNELS_LAST

from .model import ResNet
from .weights import weight_table


class TorchSGD(keras.optimizers.Optimizer):
    """SGD exactly as ``torch.optim.SGD`` steps: ``b = momentum * b + (g + wd * w)``, ``w -= lr * b``.

    Keras's own ``SGD`` differs twice: its ``weight_decay`` is decoupled (applied to
    the weights beside the step, never entering the momentum), and its momentum
    buffer holds ``lr``-scaled steps, so after a learning-rate drop it still moves
    at the old rate for a while. With this class a Keras run takes torch's steps.
    """

    def __init__(
        self,
        learning_rate: float = 0.1,
        momentum: float = 0.9,
        coupled_weight_decay: float = 0.0,
        name: str = "torch_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if coupled_weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {coupled_weight_decay}")
        self.momentum = momentum
        self.coupled_weight_decay = coupled_weight_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            g = ops.add(g, ops.multiply(variable, ops.cast(self.coupled_weight_decay, variable.dtype)))
        buf = self.momentums[self._get_variable_index(variable)]
        # torch starts the buffer at the first gradient; from zeros, momentum * 0 + g is that.
        self.assign(buf, ops.add(ops.multiply(buf, ops.cast(self.momentum, variable.dtype)), g))
        self.assign_sub(variable, ops.multiply(buf, lr))

    def get_config(self) -> dict:
        return super().get_config() | {
            "momentum": self.momentum,
            "coupled_weight_decay": self.coupled_weight_decay,
        }


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of integer labels, from logits."""
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def _value_and_grads(model: ResNet, x: np.ndarray, labels: np.ndarray, train: bool):
    """(logits, loss, grads in ``model.trainable_variables`` order); train mode updates moving stats."""
    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            logits = model(x, training=train)
            loss = cross_entropy(logits, labels)
        return logits, loss, tape.gradient(loss, variables)
    if backend == "jax":
        import jax

        frozen = model.non_trainable_variables

        def f(tv, ntv):
            logits, new_ntv = model.stateless_call(tv, ntv, x, training=train)
            return cross_entropy(logits, labels), (logits, new_ntv)

        (loss, (logits, new_ntv)), grads = jax.value_and_grad(f, has_aux=True)(
            [v.value for v in variables], [v.value for v in frozen]
        )
        for v, value in zip(frozen, new_ntv, strict=True):
            v.assign(value)
        return logits, loss, grads
    if backend == "torch":
        import torch

        for v in variables:
            v.value.grad = None
        logits = model(torch.as_tensor(x), training=train)
        loss = cross_entropy(logits, torch.as_tensor(labels))
        loss.backward()
        return logits.detach(), loss.detach(), [v.value.grad for v in variables]
    raise NotImplementedError(f"no gradient code for the Keras backend {backend!r}")


def _numpy(t) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64)


def model_state(model: ResNet) -> dict[str, np.ndarray]:
    """Every canonical tensor (parameters and running statistics), torch layout, float64."""
    return {name: FROM_CHANNELS_LAST[t](_numpy(var.value)) for name, var, t in weight_table(model)}


def _pass_result(model: ResNet, logits, loss, grads) -> PassResult:
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    named = {
        name: FROM_CHANNELS_LAST[t](_numpy(grads[index[id(var)]]))
        for name, var, t in weight_table(model)
        if not is_running_stat(name)
    }
    return PassResult(_numpy(logits), float(_numpy(loss)), named, model_state(model))


def forward_backward(model: ResNet, x: np.ndarray, labels: np.ndarray, train: bool) -> PassResult:
    """Logits, mean cross-entropy and its gradients w.r.t. every canonical parameter (NHWC input)."""
    logits, loss, grads = _value_and_grads(model, np.asarray(x, np.float32), np.asarray(labels), train)
    return _pass_result(model, logits, loss, grads)


def sgd_step(
    model: ResNet,
    x: np.ndarray,
    labels: np.ndarray,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
) -> tuple[PassResult, dict[str, np.ndarray]]:
    """One training-mode step of ``keras.optimizers.SGD`` from fresh optimizer state.

    Returns the training-mode pass it took the gradients from, and the state after
    the step. Keras's weight decay is decoupled (``w -= lr * wd * w`` beside the
    momentum step), torch's is added to the gradient. From zero momentum the first
    step is the same update; later steps differ by the decay torch's momentum carries.
    """
    logits, loss, grads = _value_and_grads(model, np.asarray(x, np.float32), np.asarray(labels), True)
    result = _pass_result(model, logits, loss, grads)
    opt = keras.optimizers.SGD(learning_rate=lr, momentum=momentum, weight_decay=weight_decay)
    opt.apply(grads, model.trainable_variables)
    return result, model_state(model)
