"""Forward, backward and one SGD step on numpy data: what the parity checks measure.

Each call takes NCHW numpy input and returns numpy results keyed by canonical
names, so results from torch, Keras and Flax line up name by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from resnext_spec import PassResult
from resnext_spec.layout import canonical_shapes, is_running_stat

from .model import ResNet


def model_state(model: ResNet) -> dict[str, np.ndarray]:
    """Every canonical tensor (parameters and running statistics) in float64."""
    sd = model.state_dict()
    return {n: sd[n].detach().cpu().double().numpy() for n in canonical_shapes(model.config, model.form)}


def _dtype(model: ResNet) -> torch.dtype:
    return next(model.parameters()).dtype


def _device(model: ResNet) -> torch.device:
    return next(model.parameters()).device


def forward_backward(model: ResNet, x: np.ndarray, labels: np.ndarray, train: bool) -> PassResult:
    """Logits, mean cross-entropy and its gradients w.r.t. every canonical parameter.

    In train mode BN uses batch statistics and updates its running statistics,
    which ``state`` then shows.
    """
    model.train(train)
    model.zero_grad(set_to_none=True)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(_device(model), _dtype(model))
    yt = torch.from_numpy(np.asarray(labels)).long().to(_device(model))
    logits = model(xt)
    loss = F.cross_entropy(logits, yt)
    loss.backward()
    params = dict(model.named_parameters())
    grads = {
        n: params[n].grad.detach().cpu().double().numpy()
        for n in canonical_shapes(model.config, model.form)
        if not is_running_stat(n)
    }
    return PassResult(logits.detach().cpu().double().numpy(), float(loss.detach()), grads, model_state(model))


def sgd_step(
    model: ResNet,
    x: np.ndarray,
    labels: np.ndarray,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
) -> tuple[PassResult, dict[str, np.ndarray]]:
    """One training-mode SGD step (the paper's recipe) from zero momentum.

    Returns the training-mode pass it took the gradients from, and the state after the step.
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    result = forward_backward(model, x, labels, train=True)
    opt.step()
    return result, model_state(model)


@contextmanager
def matmul_precision(tf32: bool) -> Iterator[None]:
    """Pin full fp32 (``tf32=False``) or allow TF32 in CUDA convs and matmuls, then restore.

    torch allows TF32 in cuDNN convolutions by default on Ampere and newer, which
    costs ~1e-3 relative error; parity runs pin it off and measure it separately.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    old = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = old
