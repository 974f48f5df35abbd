"""Evaluation-mode inference: logits of a model on a dataset, in fp32, with pool indices."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.data.transforms import to_pixels


@torch.no_grad()
def predict_logits(
    model: nn.Module, data: Dataset | DataLoader, *, batch_size: int = 512, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, labels and pool indices of ``model`` on ``data`` (no augmentation).

    The model is put in eval mode for the pass (BatchNorm statistics never update) and its
    previous mode is restored. Autocast is off: logits are ``float32``.

    Returns:
        ``(logits (N, K) float32, labels (N,) int64, index (N,) int64)``, all on the CPU.
    """
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=False)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    out_logits, out_y, out_idx = [], [], []
    try:
        with torch.autocast(device_type=torch.device(device).type, enabled=False):
            for batch in loader:
                x, y, idx = batch[0], batch[1], batch[2]
                out_logits.append(model(to_pixels(x.to(device))).float().cpu())
                out_y.append(y.cpu())
                out_idx.append(idx.cpu())
    finally:
        model.train(was_training)
    if not out_logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(out_logits), torch.cat(out_y), torch.cat(out_idx)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent (0..100); ``nan`` for an empty set."""
    if labels.numel() == 0:
        return float("nan")
    return float((logits.argmax(1) == labels).float().mean() * 100.0)
