"""``UnlearningBatch``: the batch every unlearning loss reads, by field name.

Every loader an unlearning method builds yields :class:`UnlearningBatch` (or, for methods
that draw from two streams at once, a ``dict`` of them keyed by stream name, e.g. TRW's
``{"forget": ..., "remain": ...}``). Losses read ``batch.x``, ``batch.y``, ``batch.source``,
``batch.phase``, never positions. It is a ``NamedTuple``, so Lightning moves it to the device
field by field, and it still unpacks like the ``(x, y, index)`` tuples of plain loaders.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch.utils.data import default_collate


class UnlearningBatch(NamedTuple):
    """One batch of the unlearning phase.

    Attributes:
        x: ``(B, C, H, W)`` pixels, ``uint8`` or ``float32`` in ``[0, 1]`` (generated images such
            as adversarial examples).
        y: ``(B,)`` int64 training labels.
        index: ``(B,)`` int64 pool indices.
        source: ``(B,)`` int64 part each sample came from
            (:data:`~lightning_unlearn.unlearning.phases.REMAIN`, ``FORGET``, ``ADVERSARIAL``),
            or ``None`` where the loader does not tag parts.
        phase: the pass of a two-phase epoch the batch belongs to (``"remain"``, ``"forget"``,
            ``"max"``, ``"min"``, ``"mixed"``), or ``None`` for single-pass loaders.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    source: torch.Tensor | None = None
    phase: str | None = None


def collate_unlearning_batch(items: list[Any]) -> UnlearningBatch:
    """``collate_fn`` of the methods' ``DataLoader``\\ s: items ``(x, y, index[, source])`` -> :class:`UnlearningBatch`."""
    columns = default_collate([tuple(item)[:4] for item in items])
    return UnlearningBatch(*columns)


def as_unlearning_batch(batch: Any) -> Any:
    """``batch`` with every ``(x, y, index[, source[, phase]])`` sequence turned into :class:`UnlearningBatch`.

    Batches already of that type pass unchanged; a ``dict`` (several streams) is converted
    value by value. Used by the mixin, so that a loss also gets named fields from a user's
    own loader of plain tuples.

    Raises:
        TypeError: a sequence with fewer than 3 or more than 5 entries.
    """
    if isinstance(batch, UnlearningBatch):
        return batch
    if isinstance(batch, dict):
        return {k: as_unlearning_batch(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        if not 3 <= len(batch) <= 5:
            raise TypeError(f"an unlearning batch has 3 to 5 fields (x, y, index, source, phase), got {len(batch)}")
        return UnlearningBatch(*batch)
    raise TypeError(f"an unlearning batch must be an UnlearningBatch, a (x, y, index, ...) sequence or a dict of them, got {type(batch).__name__}")


__all__ = ["UnlearningBatch", "as_unlearning_batch", "collate_unlearning_batch"]
