"""A loader that keeps a whole data set on the training device and yields batches by slicing.

On a GPU the per-sample ``DataLoader`` path (one ``__getitem__`` and a collate per image) is
slower than the model for small images; CIFAR-10 as ``uint8`` is 150 MiB, so it fits on the
device and a batch becomes one gather. Augmentation then runs batched on the same device
(:func:`~lightning_unlearn.data.transforms.random_crop_flip`).

Lightning accepts any sized iterable as a train or val loader. It does not inject a
``DistributedSampler`` into one, so this loader shards by ``(rank, world_size)`` itself: each
rank takes the positions ``rank::world_size`` of the epoch's permutation, padded like
``DistributedSampler`` so every rank yields the same number of batches.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from lightning_unlearn.data.datasets import IndexedTensorDataset


class DeviceTensorLoader:
    """Batches ``(x, y, index)`` sliced from tensors that live on ``device``.

    Args:
        dataset: an :class:`IndexedTensorDataset` (its tensors are copied to ``device`` once).
        batch_size: samples per batch.
        shuffle: a new order each epoch from ``(seed, epoch)``; :meth:`set_epoch` is called
            by the training loop (or call it yourself).
        drop_last: drop the last incomplete batch.
        rank, world_size: shard for distributed training (default: single process).
    """

    def __init__(
        self,
        dataset: IndexedTensorDataset,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.x = dataset.x.to(device)
        self.y = dataset.y.to(device)
        self.index = dataset.index.to(device)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        # Lightning calls ``loader.sampler.set_epoch(epoch)`` at each epoch start.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _positions(self) -> torch.Tensor:
        n = len(self.y)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            per_rank = math.ceil(n / self.world_size)
            order = torch.cat([order, order[: per_rank * self.world_size - n]])  # DistributedSampler-style padding
            order = order[self.rank :: self.world_size]
        return order.to(self.x.device)

    def __len__(self) -> int:
        n = math.ceil(len(self.y) / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self._positions()
        for b in range(len(self)):
            pos = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.x[pos], self.y[pos], self.index[pos]
