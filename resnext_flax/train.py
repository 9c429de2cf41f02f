"""Jit-compiled forward and training step, the way the Flax NNX docs write them.

``sgd(...)`` is the paper's recipe (SGD, momentum 0.9, weight decay 1e-4) with
the decay added to the gradient before momentum, as torch.optim.SGD does, so a
Flax run and a torch run take the same steps.
"""

from __future__ import annotations

import jax
import optax
from flax import nnx

from .model import ResNet


def sgd(lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4) -> optax.GradientTransformation:
    """torch.optim.SGD's update in optax: decay added to the gradient, then heavy-ball momentum."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@nnx.jit
def forward(model: ResNet, x: jax.Array) -> jax.Array:
    """Logits for NHWC images, in whatever mode (``model.train()``/``model.eval()``) the model is."""
    return model(x)


def _loss_and_grads(model: ResNet, x: jax.Array, labels: jax.Array):
    def loss_fn(m: ResNet):
        logits = m(x)
        return cross_entropy(logits, labels), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    return loss, logits, grads


loss_and_grads = nnx.jit(_loss_and_grads)
loss_and_grads.__doc__ = (
    "(loss, logits, grads); in train mode the BN running statistics are updated in place."
)


@nnx.jit
def train_step(model: ResNet, optimizer: nnx.Optimizer, x: jax.Array, labels: jax.Array):
    """One optimizer step on a batch; returns (loss, logits)."""

    def loss_fn(m: ResNet):
        logits = m(x)
        return cross_entropy(logits, labels), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, logits


def _apply_gradients(optimizer: nnx.Optimizer, model: ResNet, grads: nnx.State) -> None:
    optimizer.update(model, grads)


apply_gradients = nnx.jit(_apply_gradients)


def make_optimizer(model: ResNet, **hp: float) -> nnx.Optimizer:
    return nnx.Optimizer(model, sgd(**hp), wrt=nnx.Param)
