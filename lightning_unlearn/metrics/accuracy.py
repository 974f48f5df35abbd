"""``UnlearningAccuracy``: UA / RA / TA from split-tagged logits, padding-safe (docs/metrics.md, section 2)."""

from __future__ import annotations

from typing import Any

import torch

from lightning_unlearn.metrics._base import SPLITS, IndexedRecords, check_index, split_code

KEYS = {"ua": "forget", "ra": "remain", "ta": "test"}


class UnlearningAccuracy(IndexedRecords):
    """Top-1 accuracy in percent per split: ``ua`` on D_F ([P]'s "Unlearn Acc"), ``ra`` on D_R, ``ta`` on D_T.

    De-duplicated by (split, index), so ``DistributedSampler`` padding does not bias it. Keys
    are fixed; a split without records gives ``nan``. SalUn's convention is ``100 - ua``.
    ``higher_is_better = None``: the target is the retrained model's value.
    """

    higher_is_better = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._add_record_states(["correct", "labels"])

    def update(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, split: str | int | torch.Tensor) -> None:
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(f"logits (B, K) and labels (B,) expected, got {tuple(logits.shape)} and {tuple(labels.shape)}")
        index = check_index(index, logits.shape[0])
        correct = (logits.argmax(1) == labels).to(torch.float32)
        self._append(index, split_code(split, logits.shape[0], logits.device), correct=correct, labels=labels.long())

    def compute(self) -> dict[str, torch.Tensor]:
        rec = self._records()
        out = {}
        for key, name in KEYS.items():
            sel = rec["split"] == SPLITS[name]
            out[key] = float(rec["correct"][sel].double().mean() * 100.0) if bool(sel.any()) else float("nan")
        return self._as_tensors(out)
