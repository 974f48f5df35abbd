"""``SymmetricKL`` (FADE for classifiers) as a torchmetrics ``Metric`` (docs/metrics.md, section 7)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lightning_unlearn.metrics._base import IndexedRecords, check_index
from lightning_unlearn.metrics.functional.fade import symmetric_kl_terms


class SymmetricKL(IndexedRecords):
    """FADE: ``mean_r mean_{x in F} [KL(p_θ || p_r) + KL(p_r || p_θ)]`` in nats (0 = identical to retrain).

    Update with the audited model's logits and the retrained references' logits on the same forget
    inputs (``retrain_logits`` ``(B, K)`` or ``(R, B, K)``), with pool indices. Per-sample
    ``KL(θ||r)`` and ``KL(r||θ)`` (averaged over references) are kept as ``cat`` states with the
    index rather than as running sums, so that ``DistributedSampler``'s padded duplicates can be
    removed in ``compute()`` (two sum states would count them twice). Lower is better.

    Example:
        >>> m = SymmetricKL()
        >>> z = torch.randn(8, 4)
        >>> m.update(z, torch.stack([z, z]), torch.arange(8))
        >>> float(m.compute())
        0.0
    """

    higher_is_better = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._add_record_states(["kl_ab", "kl_ba"])

    def update(self, logits: torch.Tensor, retrain_logits: torch.Tensor | Sequence[torch.Tensor], index: torch.Tensor) -> None:
        refs = retrain_logits if isinstance(retrain_logits, torch.Tensor) else torch.stack(list(retrain_logits))
        refs = refs[None] if refs.ndim == 2 else refs
        if refs.ndim != 3 or refs.shape[1:] != logits.shape:
            raise ValueError(f"retrain_logits must be (B, K) or (R, B, K) matching logits {tuple(logits.shape)}, got {tuple(refs.shape)}")
        terms = [symmetric_kl_terms(logits, r) for r in refs]
        kl_ab = torch.stack([t[0] for t in terms]).mean(0)
        kl_ba = torch.stack([t[1] for t in terms]).mean(0)
        index = check_index(index, logits.shape[0])
        self._append(index, torch.zeros_like(index), kl_ab=kl_ab, kl_ba=kl_ba)

    def compute(self) -> torch.Tensor:
        rec = self._records()
        result = self._as_tensor(float((rec["kl_ab"].double() + rec["kl_ba"].double()).mean()))
        self._check_ranks(result)
        return result


#: The same metric under its name in the literature (FADE, arXiv 2510.12981; docs/metrics.md, section 7).
FADE = SymmetricKL
