"""Framework-free training data: dataset readers, augmentation and the seeded batch order.

Every framework trains on the batches this package yields, so the same seed gives
torch, Keras and Flax the same images, in the same order, with the same crops and
flips. Imports numpy (and Pillow for image folders) only.
"""

from .cifar import load_cifar
from .datasets import ArraySplit, DataError, Dataset, Split
from .folder import load_image_folder
from .load import load_dataset
from .pipeline import Pipeline, channel_stats

__all__ = [
    "ArraySplit",
    "DataError",
    "Dataset",
    "Pipeline",
    "Split",
    "channel_stats",
    "load_cifar",
    "load_dataset",
    "load_image_folder",
]
