"""Tensor-backed datasets whose items carry their pool index."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


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
