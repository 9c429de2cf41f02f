"""`resnext-train`: the same recipe and the same batches in PyTorch, Keras and Flax.

``train(framework, data, model=..., recipe=Recipe(...), out=...)`` from Python;
``resnext-train`` from the shell (see ``train.cli``).
"""

from .engines import Engine, make_engine
from .loop import TrainError, eval_metrics, plot_curves, train
from .recipe import Recipe

__all__ = ["Engine", "Recipe", "TrainError", "eval_metrics", "make_engine", "plot_curves", "train"]
