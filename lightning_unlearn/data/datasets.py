"""Tensor-backed datasets whose items carry their pool index, and an epoch-seeded sampler."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler


class IndexedTensorDataset(Dataset):
    """Items ``(x, y, index)``: an image (``uint8`` or ``float32``), its label and its pool index.

    Args:
        x: ``(N, C, H, W)`` images.
        y: ``(N,)`` ``int64`` labels.
        index: ``(N,)`` ``int64`` pool indices (see :mod:`lightning_unlearn.data.pool`).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> None:
        if not (len(x) == len(y) == len(index)):
            raise ValueError(f"x, y and index must have the same length, got {len(x)}, {len(y)}, {len(index)}")
        self.x, self.y, self.index = x, y.long(), index.long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.index[i]

    def subset(self, positions: torch.Tensor) -> "IndexedTensorDataset":
        return IndexedTensorDataset(self.x[positions], self.y[positions], self.index[positions])


class EpochSeededRandomSampler(Sampler[int]):
    """A shuffling sampler whose order depends only on ``(seed, epoch)``.

    Lightning calls ``set_epoch`` on samplers that have it, so a run resumed from a
    checkpoint replays exactly the data order of an uninterrupted run (a ``RandomSampler``
    with a generator would not: its state is not checkpointed).
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())
