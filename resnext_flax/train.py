"""Jit-compiled forward and training step, the way the Flax NNX docs write them.

``sgd(...)`` is the paper's recipe (SGD, momentum 0.9, weight decay 1e-4) with
the decay added to the gradient before momentum, as torch.optim.SGD does, so a
Flax run and a torch run take the same steps.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import jax
import optax
from flax import nnx

from .model import ResNet


def sgd(lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4) -> optax.GradientTransformation:
    """torch.optim.SGD's update in optax: decay added to the gradient, then heavy-ball momentum."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum))


def finetune_sgd(
    lr: float, momentum: float, weight_decay: float, head_lr_scale: float, labels
) -> optax.GradientTransformation:
    """:func:`sgd` in torch-like parameter groups: ``labels`` (a pytree like the parameters, or a
    function of them) names each ``"body"``, ``"head"`` (its lr scaled by ``head_lr_scale``) or
    ``"frozen"`` (no update at all, weight decay included)."""
    groups = {
        "body": sgd(lr, momentum, weight_decay),
        "head": sgd(lr * head_lr_scale, momentum, weight_decay),
        "frozen": optax.set_to_zero(),
    }
    return optax.multi_transform(groups, labels)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@nnx.jit
def forward(model: ResNet, x: jax.Array) -> jax.Array:
    """Logits for NHWC images, in whatever mode (``model.train()``/``model.eval()``) the model is."""
    return model(x)


@nnx.jit
def train_step(model: ResNet, optimizer: nnx.Optimizer, x: jax.Array, labels: jax.Array):
    """One optimizer step on a batch; returns (loss, logits)."""

    def loss_fn(m: ResNet):
        logits = m(x)
        return cross_entropy(logits, labels), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, logits


def make_optimizer(model: ResNet, **hp: float) -> nnx.Optimizer:
    """An ``nnx.Optimizer`` over the parameters, stepping with :func:`sgd` (lr, momentum, weight_decay)."""
    return nnx.Optimizer(model, sgd(**hp), wrt=nnx.Param)


def full_fp32() -> AbstractContextManager:
    """A context in which JAX computes fp32 convs and matmuls in full fp32.

    On a GPU, JAX uses TF32 for them by default: the logits of a timm port were 4.1e-4
    off timm's on an H100 (40x the port tolerance) and agree at full fp32. On CPU it
    changes nothing. Scoped, so the rest of a program keeps JAX's defaults.
    """
    return jax.default_matmul_precision("highest")
