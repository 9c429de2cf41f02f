"""`resnext-train`: the same recipe and the same batches in PyTorch, Keras and Flax.

``train(framework, data, model=..., recipe=Recipe(...), out=...)`` from Python;
``resnext-train`` from the shell (see ``resnext_train.cli``).
"""

from resnext_spec.training import Engine, Recipe

from .engines import make_engine
from .loop import TrainError, eval_metrics, plot_curves, train

__all__ = ["Engine", "Recipe", "TrainError", "eval_metrics", "make_engine", "plot_curves", "train"]
