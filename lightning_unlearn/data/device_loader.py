"""A loader that keeps a whole data set on the training device and yields batches by slicing.

On a GPU the per-sample ``DataLoader`` path (one ``__getitem__`` and a collate per image) is
slower than the model for small images; CIFAR-10 as ``uint8`` is 150 MiB, so it fits on the
device and a batch becomes one gather. Augmentation then runs batched on the same device
(:func:`~lightning_unlearn.data.transforms.random_crop_flip`).

Lightning accepts any sized iterable as a train or val loader. It does not inject a
``DistributedSampler`` into one, so this loader takes its order from the library's one
sampler, :class:`~lightning_unlearn.data.ShardedEpochSampler` (the same order as the data
module's loaders: ``(seed, epoch)``, padded and sharded like ``DistributedSampler``). It is
resumable mid-epoch: ``state_dict()`` holds the epoch and the positions already yielded,
which Lightning saves in a checkpoint and loads before the resumed epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.data.sampler import ShardedEpochSampler


class DeviceTensorLoader:
    """Batches ``(x, y, index)`` sliced from tensors that live on ``device``.

    Args:
        dataset: an :class:`IndexedTensorDataset` (its tensors are copied to ``device`` once).
        batch_size: samples per batch.
        shuffle: a new order each epoch from ``(seed, epoch)``; :meth:`set_epoch` is called
            by the training loop (or call it yourself).
        drop_last: drop the last incomplete batch.
        rank, world_size: shard for distributed training (default ``None``: read from
            ``torch.distributed`` when iterated; one shard without a process group).

    Attributes:
        sampler: the :class:`~lightning_unlearn.data.ShardedEpochSampler` giving each epoch's
            order (Lightning calls its ``set_epoch``).
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
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler = ShardedEpochSampler(len(dataset), seed, shuffle=shuffle, rank=rank, world_size=world_size)
        self.x = dataset.x.to(device)
        self.y = dataset.y.to(device)
        self.index = dataset.index.to(device)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self._yielded = 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self.sampler.order().to(self.x.device)
        first = self.sampler.take_pending_position() // self.batch_size
        self._yielded = first
        for b in range(first, len(self)):
            pos = order[b * self.batch_size : (b + 1) * self.batch_size]
            self._yielded += 1
            yield self.x[pos], self.y[pos], self.index[pos]

    def state_dict(self) -> dict[str, Any]:
        """The epoch and the positions of it already yielded (see :class:`~lightning_unlearn.data.ShardedEpochSampler`)."""
        return self.sampler.state_dict(position=self._yielded * self.batch_size)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next iteration of the saved epoch start after the batches already yielded."""
        self.sampler.load_state_dict(state)
