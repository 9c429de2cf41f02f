"""The seeded batch order and augmentation every framework trains on.

All the randomness of an epoch (the shuffle, each image's crop offset and flip) is
drawn at its start from ``numpy.random.default_rng([seed, epoch])``, so an epoch's
batches are a function of (seed, epoch) alone: torch, Keras and Flax see the same
ones, and a resumed run, started at any epoch and step, sees what it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from resnext_spec.errors import ConfigError

from .datasets import DataError, Split


def channel_stats(split: Split, max_images: int = 50_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the pixels, on a 0..1 scale (float64).

    Splits larger than ``max_images`` are estimated from a seeded sample of that many.
    """
    n = len(split)
    indices = (
        np.arange(n) if n <= max_images else np.sort(np.random.default_rng(seed).choice(n, max_images, False))
    )
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for start in range(0, len(indices), 1000):
        x = split.images(indices[start : start + 1000]).reshape(-1, 3).astype(np.float64) / 255.0
        total += x.sum(0)
        total_sq += np.square(x).sum(0)
        count += len(x)
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))


class Pipeline:
    """Batches of one split: NHWC float32 images, normalised per channel, and int64 labels.

    Training batches are shuffled, zero-padded by ``pad`` pixels, cropped to ``crop`` at
    a random offset and flipped left-right with probability 1/2; the last partial batch
    is dropped (a batch of one would break train-mode BatchNorm). Evaluation batches are
    in file order, centre-cropped, and keep the last partial batch.

    ``shard=(rank, world)`` is data-parallel training: ``batch_size`` is the global
    batch, and this worker gets its rows ``rank * b : (rank + 1) * b`` (``b =
    batch_size / world``) of each global batch, augmented exactly as the one-worker
    run augments them. The workers together see the one-worker run's batches, in its
    order, whatever their number, so a run may resume on another number of workers.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        train: bool,
        mean: np.ndarray,
        std: np.ndarray,
        crop: int,
        pad: int = 0,
        seed: int = 0,
        shard: tuple[int, int] = (0, 1),
    ):
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if train and len(split) < batch_size:
            raise DataError(f"a training split of {len(split)} images cannot fill one batch of {batch_size}")
        rank, world = shard
        if not (world >= 1 and 0 <= rank < world):
            raise ConfigError(f"shard (rank {rank}, world {world}): rank must be in [0, world)")
        if world > 1 and (not train or batch_size % world):
            raise ConfigError(
                f"a global batch of {batch_size} does not split evenly over {world} workers"
                if train
                else "evaluation batches are not sharded: every worker evaluates the whole split"
            )
        self.split, self.batch_size, self.train, self.seed = split, batch_size, train, seed
        self.rank, self.world = rank, world
        self.pad, self.crop = (pad if train else 0), crop
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 1, 3)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.split)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def _draws(self, epoch: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(self.split)
        if not self.train:
            centre = (size - self.crop) // 2
            return np.arange(n), np.full((n, 2), centre), np.zeros(n, bool)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n)
        offsets = rng.integers(0, size + 2 * self.pad - self.crop + 1, size=(n, 2))
        flips = rng.random(n) < 0.5
        return order, offsets, flips

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of ``epoch`` (counted from 0), from batch ``start`` on."""
        size = None
        for b in range(start, len(self)):
            if size is None:
                first = self.split.images(np.arange(1))
                size = first.shape[1]
                if size + 2 * self.pad < self.crop:
                    raise ConfigError(
                        f"images of {size} px (padded by {self.pad}) are smaller than the crop {self.crop}"
                    )
                order, offsets, flips = self._draws(epoch, size)
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.world > 1:
                per = self.batch_size // self.world
                idx = idx[self.rank * per : (self.rank + 1) * per]
            yield self._augment(self.split.images(idx), offsets[idx], flips[idx]), self.split.labels[idx]

    def _augment(self, images: np.ndarray, offsets: np.ndarray, flips: np.ndarray) -> np.ndarray:
        p, c = self.pad, self.crop
        if p:
            images = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
        out = np.empty((len(images), c, c, 3), np.uint8)
        for i, (img, (top, left), flip) in enumerate(zip(images, offsets, flips, strict=True)):
            patch = img[top : top + c, left : left + c]
            out[i] = patch[:, ::-1] if flip else patch
        return (out.astype(np.float32) / np.float32(255.0) - self.mean) / self.std
