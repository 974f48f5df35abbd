"""``MIAEfficacy``: the SVC membership attack ("MIS") as a torchmetrics ``Metric`` (docs/metrics.md, section 4)."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from lightning_unlearn.metrics._base import SPLITS, IncompleteSplitsWarning, IndexedRecords, check_index, split_code
from lightning_unlearn.metrics.functional.svc import FEATURES, Feature, ShadowStrategy, mia_efficacy, select_shadow_members


class MIAEfficacy(IndexedRecords):
    """SVC MIA-efficacy in **percent**: share of D_F that an SVC trained on D_R-members vs D_T predicts non-member.

    Update with eval-mode logits of the audited model on D_F (``"forget"``), D_R (``"remain"``)
    and D_T (``"test"``), with pool indices. ``compute()`` gathers, de-duplicates by (split,
    index), sorts by index, draws |D_T| shadow members from D_R with
    :func:`~lightning_unlearn.metrics.functional.select_shadow_members` (seeded, over the sorted
    indices: the same draw on every rank), and calls
    :func:`~lightning_unlearn.metrics.functional.mia_efficacy` on ``softmax(logits)`` (computed
    in fp64, so that features tied in fp32 do not flip the SVC's decisions).
    The papers' "MIA"/"MIS" is ``feature="confidence"`` (the default); its target is the
    retrained model's value, so ``higher_is_better = None``.

    ``compute()`` returns a 0-dim tensor in the metric's dtype (``float32``; ``set_dtype`` for
    another), ``nan`` with an :class:`~lightning_unlearn.metrics.IncompleteSplitsWarning` (once per
    object) while one of the three splits has no records: with several validation loaders
    Lightning computes a metric logged in ``validation_step`` at the end of each loader, and only
    the last one holds every split (log it in ``on_validation_epoch_end`` instead, or use one
    loader whose batches carry the split, :meth:`~lightning_unlearn.data.IndexedSplits.audit_dataloader`).
    ``metric(...)`` records like ``update`` and returns ``None``.

    Args:
        feature: ``"correctness" | "confidence" | "entropy" | "m_entropy" | "prob"``.
        shadow_member_strategy: ``"random"`` (seeded ``torch.Generator``) or ``"first"`` (SalUn).
        seed: seed of the shadow-member draw.
        legacy_m_entropy: reproduce the published modified-entropy bug (``feature="m_entropy"`` only).
        kwargs: ``torchmetrics.Metric`` options.

    Example:
        >>> m = MIAEfficacy()
        >>> g = torch.Generator().manual_seed(0)
        >>> for split, n, scale in (("remain", 60, 6.0), ("test", 30, 1.0), ("forget", 20, 6.0)):
        ...     logits = torch.randn(n, 3, generator=g) * scale
        ...     m.update(logits, logits.argmax(1), torch.arange(n) + 1000 * SPLITS[split], split)
        >>> 0.0 <= float(m.compute()) <= 100.0
        True
    """

    higher_is_better = None

    def __init__(
        self,
        feature: Feature = "confidence",
        *,
        shadow_member_strategy: ShadowStrategy = "random",
        seed: int = 0,
        legacy_m_entropy: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if feature not in FEATURES:
            raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
        if shadow_member_strategy not in ("random", "first"):
            raise ValueError(f"shadow_member_strategy must be 'random' or 'first', got {shadow_member_strategy!r}")
        self.feature, self.shadow_member_strategy = feature, shadow_member_strategy
        self.seed, self.legacy_m_entropy = int(seed), bool(legacy_m_entropy)
        self._add_record_states(["logits", "labels"])

    def update(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, split: str | int | torch.Tensor) -> None:
        """Record a batch: ``logits`` (B, K), ``labels`` (B,), pool ``index`` (B,), ``split`` (name, code or (B,) codes)."""
        if logits.ndim != 2 or not logits.is_floating_point():
            raise ValueError(f"logits must be a float (B, K) tensor, got {logits.dtype} {tuple(logits.shape)}")
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
        index = check_index(index, logits.shape[0])
        self._append(index, split_code(split, logits.shape[0], logits.device), logits=logits.float(), labels=labels.long())

    def compute(self) -> torch.Tensor:
        with self._warnings_once():
            rec = self._records()
            probs = torch.softmax(rec["logits"].double(), 1)
            split, labels = rec["split"], rec["labels"]
            parts = {name: torch.nonzero(split == SPLITS[name]).flatten() for name in ("forget", "remain", "test")}
            missing = [name for name, pos in parts.items() if pos.numel() == 0]
            if missing:
                warnings.warn(
                    f"MIAEfficacy needs records of the 'forget', 'remain' and 'test' splits; none of {missing} yet, so its value is nan "
                    "(with several validation loaders Lightning computes a metric logged in validation_step after each loader: "
                    "log it in on_validation_epoch_end, or use one loader that carries the split)",
                    IncompleteSplitsWarning,
                    stacklevel=2,
                )
                return self._as_tensor(float("nan"))
            remain = parts["remain"]
            members = remain[
                select_shadow_members(rec["index"][remain], parts["test"].numel(), shadow_member_strategy=self.shadow_member_strategy, seed=self.seed)
            ]
            value = mia_efficacy(
                probs[members], labels[members], probs[parts["test"]], labels[parts["test"]],
                probs[parts["forget"]], labels[parts["forget"]], feature=self.feature, legacy_m_entropy=self.legacy_m_entropy,
            )
        result = self._as_tensor(value)
        self._check_ranks(result)
        return result
