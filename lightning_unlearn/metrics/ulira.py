"""``ULiRA``: the U-LiRA unlearning audit as a torchmetrics ``Metric`` (docs/metrics.md, section 8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.utilities import dim_zero_cat

from lightning_unlearn.metrics._base import IndexedRecords, check_index, dedupe_sort
from lightning_unlearn.metrics.functional.ulira import (
    MIN_STD,
    WORLDS,
    Variance,
    _ulira_compute,
    _ulira_update,
    logit_confidence,
    ulira_fit,
)


def _per_record(value: bool | int | torch.Tensor, n: int, name: str, device: torch.device) -> torch.Tensor:
    """A scalar or an ``(n,)`` tensor as ``(n,)`` int64 on ``device``."""
    t = torch.as_tensor(value, device=device)
    if t.is_floating_point():
        raise ValueError(f"{name} must be a bool or an integer (or an ({n},) tensor of them), got dtype {t.dtype}")
    t = t.long()
    t = t.expand(n) if t.ndim == 0 else t
    if t.shape != (n,):
        raise ValueError(f"{name} must be a scalar or an ({n},) tensor, got shape {tuple(t.shape)}")
    return t


class ULiRA(IndexedRecords):
    """U-LiRA (Hayes et al.): can a per-example likelihood-ratio test tell unlearned models from retrained ones?

    The shadow statistics are fixed constructor inputs (like RMIA's reference signals): φ, the
    logit-scaled confidence, of shadow models in the two worlds, dense by pool index (``nan`` where
    a shadow holds no observation), e.g. from
    :meth:`lightning_unlearn.audit.ShadowPairs.statistics`. They are fitted once, at construction
    (:func:`~lightning_unlearn.metrics.functional.ulira_fit`).

    Each ``update`` records an **audited** model's logits on examples it was asked to forget (an
    unlearned model) or never saw (a retrained model), with their labels, pool indices, the world
    (``unlearned=True`` / ``False``) and a model id. ``compute()`` gathers, de-duplicates by
    (model, world, index) (``DistributedSampler`` padding repeats samples), sorts by (model, index),
    scores every record by Λ = log N(φ; μ_u, σ_u²) − log N(φ; μ_r, σ_r²) and returns, in percent
    (float32):

    - ``balanced_accuracy``: mean of the accuracies on unlearned and on retrained records, the
      attack saying "unlearned" when Λ > 0 (likelihood ratio > 1); 50 = indistinguishable,
    - ``auc``: ROC AUC of Λ, unlearned = positive,
    - ``tpr@<fpr>`` for each of ``tpr_fprs``.

    Per-record scores of the last compute are kept in ``self.last_scores`` (``index``, ``model``,
    ``unlearned``, ``score``). Every model id must carry one world, and a record repeated for one
    (model, index) must carry the same φ (within float noise); otherwise ``compute()`` raises
    ``ValueError`` naming them.

    Args:
        shadow_unlearned: ``(S_u, P)`` φ of shadows that trained on each example and unlearned it.
        shadow_retrained: ``(S_r, P)`` φ of shadows retrained without each example.
        variance: ``"auto"`` (default: per-example variances from 64 observations per world
            on, one pooled variance per world below), ``"global"`` or ``"per_example"``.
        min_std: floor of every fitted σ.
        tpr_fprs: FPRs (fractions) at which the TPR is reported.
        kwargs: ``check_ranks_agree`` and ``torchmetrics.Metric`` options.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> ret = torch.randn(8, 20, generator=g); unl = ret + 3.0      # unlearning leaves φ 3 higher
        >>> m = ULiRA(unl, ret, tpr_fprs=())
        >>> labels = torch.zeros(20, dtype=torch.long)
        >>> up = torch.stack([torch.full((20,), 3.0), torch.zeros(20)], 1)   # φ = 3: unlearned-like
        >>> m.update(up, labels, torch.arange(20), unlearned=True, model_id=0)
        >>> m.update(torch.zeros(20, 2), labels, torch.arange(20), unlearned=False, model_id=1)  # φ = 0
        >>> {k: round(float(v)) for k, v in m.compute().items()}
        {'balanced_accuracy': 100, 'auc': 100}
    """

    is_differentiable = False
    higher_is_better = None  # the target is 50 (retrained models), not an extreme
    full_state_update = False  # update() only appends records

    def __init__(
        self,
        shadow_unlearned: torch.Tensor,
        shadow_retrained: torch.Tensor,
        *,
        variance: Variance = "auto",
        min_std: float = MIN_STD,
        tpr_fprs: Sequence[float] = (0.01, 0.001),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fit = ulira_fit(shadow_unlearned, shadow_retrained, variance=variance, min_std=min_std)
        self.pool_size = int(self.fit.mean_unlearned.numel())
        self.tpr_fprs = tuple(float(f) for f in tpr_fprs)
        bad = [f for f in self.tpr_fprs if not 0.0 <= f <= 1.0]
        if bad:
            raise ValueError(f"tpr_fprs must be fractions in [0, 1], got {bad}")
        self.last_scores: dict[str, torch.Tensor] | None = None
        # ``index`` and ``split`` (the world code, WORLDS) come from the base class
        self._add_record_states(["model", "phi"])

    def update(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor,
        *,
        unlearned: bool | torch.Tensor,
        model_id: int | torch.Tensor = 0,
    ) -> None:
        """Record a batch of one audited model (or several, with per-record ``model_id`` / ``unlearned`` tensors).

        Args:
            logits: ``(B, K)`` eval-mode logits of the audited model.
            labels: ``(B,)`` true labels. index: ``(B,)`` pool indices (< the shadows' P).
            unlearned: the audited model was unlearned (True) or retrained without these
                examples (False); a bool or a ``(B,)`` tensor.
            model_id: which audited model (default 0); give each audited model of one world its
                own id, since records are de-duplicated by (model, world, index).
        """
        phi = logit_confidence(logits, labels)
        n = phi.shape[0]
        index = check_index(index, n)
        if n and int(index.max()) >= self.pool_size:
            raise ValueError(f"index {int(index.max())} is outside the shadow statistics (P = {self.pool_size})")
        world = _per_record(unlearned, n, "unlearned", phi.device)
        if n and not bool(((world == 0) | (world == 1)).all()):
            raise ValueError("unlearned must be True/False (or 1/0)")
        model = _per_record(model_id, n, "model_id", phi.device)
        if n and int(model.min()) < 0:
            raise ValueError(f"model_id must be non-negative, got {int(model.min())}")
        self._append(index, world, model=model, phi=phi)

    def _audited_records(self) -> dict[str, torch.Tensor]:
        """Gathered records, one per (model, world, index), sorted by (model, index); CPU tensors."""
        if isinstance(self.index, list) and len(self.index) == 0:
            raise ValueError("ULiRA.compute() called before any update (no records)")
        index = dim_zero_cat(self.index).long().cpu()
        if index.numel() == 0:
            raise ValueError("ULiRA.compute(): no records were made on any rank")
        world = dim_zero_cat(self.split).long().cpu()
        model = dim_zero_cat(self.model).long().cpu()
        phi = dim_zero_cat(self.phi).double().cpu()
        key = model * self.pool_size + index  # unique per (model, index); the world is the "split"
        keep = dedupe_sort(key, world)
        _, inverse = torch.unique(key * len(WORLDS) + world, sorted=True, return_inverse=True)
        same = torch.isclose(phi, phi[keep][inverse], rtol=1e-4, atol=1e-6)
        if not bool(same.all()):
            bad = int(torch.nonzero(~same)[0])
            raise ValueError(
                f"ULiRA: pool index {int(index[bad])} of model {int(model[bad])} was recorded twice with different φ "
                f"({float(phi[keep][inverse][bad]):.6g} and {float(phi[bad]):.6g}): repeat a record only with the same logits"
            )
        out = {"index": index[keep], "world": world[keep], "model": model[keep], "phi": phi[keep]}
        ids, model_pos = torch.unique(out["model"], sorted=True, return_inverse=True)
        seen = torch.zeros(len(ids), len(WORLDS), dtype=torch.bool)
        seen[model_pos, out["world"]] = True
        mixed = seen.all(1)
        if bool(mixed.any()):
            mid = int(ids[torch.nonzero(mixed)[0]])
            raise ValueError(f"ULiRA: model {mid} was recorded as both unlearned and retrained; give each audited model its own model_id")
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        rec = self._audited_records()
        scores = _ulira_update(self.fit, rec["phi"], rec["index"])
        self.last_scores = {"index": rec["index"], "model": rec["model"], "unlearned": rec["world"].bool(), "score": scores}
        out = _ulira_compute(scores, rec["world"], self.tpr_fprs)
        result = {k: torch.tensor(v, dtype=torch.float32) for k, v in out.items()}
        self._check_ranks(torch.stack(list(result.values())))
        return result
