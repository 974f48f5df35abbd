"""Evaluation-mode inference: logits of a model on a dataset, in fp32, with pool indices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.data.transforms import to_pixels
from lightning_unlearn.metrics.rmia import compute_signal
from lightning_unlearn.models.normalize import Normalizer, apply_normalizer


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    normalizer: Normalizer = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, labels and pool indices of ``model`` on ``data`` (items ``(x, y, index)``; no augmentation).

    The model is put in eval mode for the pass (BatchNorm statistics never update) and its
    previous mode is restored. Autocast is off: logits are ``float32``. The model sees
    ``normalizer(pixels)`` when a ``normalizer`` is given (a model that expects standardised inputs).

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
                out_logits.append(model(apply_normalizer(normalizer, to_pixels(x.to(device)))).float().cpu())
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


def reference_signals(
    models: Sequence[nn.Module],
    data: Any,
    *,
    signal: str = "softmax",
    size: int | None = None,
    batch_size: int = 512,
    normalizer: Normalizer = None,
    **signal_kwargs: Any,
) -> torch.Tensor:
    """``(R, P)`` signals Pr(x | θ_r) of your own reference models, indexed by pool index: the input of
    :class:`~lightning_unlearn.metrics.RMIA`.

    Column ``p`` holds every model's signal on the sample with pool index ``p``; pool indices
    not in ``data`` are ``nan`` (RMIA refuses to score a sample whose column is missing).

    Args:
        models: R reference models (pixels in ``[0, 1]``, or ``normalizer(pixels)``, -> logits).
        data: a :class:`~lightning_unlearn.data.IndexedSplits` (every part it holds; ``size``
            then defaults to its ``size``), or a dataset / loader of ``(x, y, index)`` items.
        signal: ``"softmax"`` (default) or ``"sm_taylor_softmax"``: the same signal the RMIA
            metric is given (``signal_kwargs`` as there).
        size: P (default: ``data.size`` for ``IndexedSplits``, else one more than the largest index).

    Returns:
        ``(R, P)`` float32 on the CPU.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> from lightning_unlearn.data import IndexedSplits
        >>> splits = IndexedSplits(TensorDataset(torch.rand(3, 4), torch.tensor([0, 1, 1])),
        ...                        test=TensorDataset(torch.rand(2, 4), torch.tensor([1, 0])), num_classes=2)
        >>> reference_signals([torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)], splits).shape
        torch.Size([2, 5])
    """

    if not models:
        raise ValueError("reference_signals needs at least one reference model")
    pool = data.pool() if hasattr(data, "pool") and hasattr(data, "size") else data
    if size is None and hasattr(data, "size"):
        size = int(data.size)
    outs = [predict_logits(m, pool, batch_size=batch_size, normalizer=normalizer) for m in models]
    labels, index = outs[0][1], outs[0][2]
    sig = compute_signal(torch.stack([o[0] for o in outs]), labels, signal, **signal_kwargs)  # (R, N)
    width = int(size if size is not None else int(index.max()) + 1)
    if index.numel() and int(index.max()) >= width:
        raise ValueError(f"size={width} is too small for pool index {int(index.max())}")
    dense = torch.full((len(models), width), float("nan"), dtype=torch.float32)
    dense[:, index] = sig.float()
    return dense
