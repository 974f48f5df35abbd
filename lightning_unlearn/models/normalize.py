"""Normalisation as a module inside the model, so attacks and metrics work in [0, 1] pixels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel. ``x``: ``(B, C, H, W)`` float pixels in ``[0, 1]``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NormalizedClassifier(nn.Module):
    """Wraps any ``nn.Module`` classifier ``net`` (normalised inputs -> logits) so it takes pixels.

    ``forward(x)``: ``x`` ``(B, C, H, W)`` in ``[0, 1]`` -> logits ``(B, K)``.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


#: A model's input transform of ``[0, 1]`` pixels (a ``Normalize`` module or any callable), or ``None``.
Normalizer = Callable[[torch.Tensor], torch.Tensor] | None


def apply_normalizer(normalizer: Normalizer, x: torch.Tensor) -> torch.Tensor:
    """``normalizer(x)``, or ``x`` when ``normalizer`` is ``None``; a module is moved to ``x``'s device first.

    The one place where the unlearning phase turns pixels into the inputs a model expects, so
    the attacks, the fine-tuning and every other forward a method makes see the same transform.

    Example:
        >>> apply_normalizer(Normalize([0.5], [0.25]), torch.full((1, 1, 2, 2), 0.75)).flatten().tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    if normalizer is None:
        return x
    if isinstance(normalizer, nn.Module):
        normalizer.to(x.device)
    return normalizer(x)
