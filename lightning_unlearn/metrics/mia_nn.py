"""``MIANN``: the neighbour-class attack for class unlearning as a torchmetrics ``Metric`` (trw-mia-nn.md §5.4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lightning_unlearn.metrics._base import IndexedRecords, check_index
from lightning_unlearn.metrics.functional._checks import check_binary
from lightning_unlearn.metrics.functional.mia_nn import Classifier, NNFeature, mia_nn, mia_nn_features

KEYS = ("auc", "acc", "auc_std", "acc_std", "auc_gap", "acc_gap")


class MIANN(IndexedRecords):
    """MIA-NN audit in **percent**: can an SVM tell forget-class training samples D_f from test samples T_f
    using the neighbour-class and forget-class probabilities?

    Update with eval-mode logits of the audited model on D_f (``is_member=1``) and T_f
    (``is_member=0``) with pool indices. ``compute()`` gathers, de-duplicates by (is_member,
    index), sorts by index, builds ``φ(x) = [p(n_1|x) .. p(n_K|x), p(f|x)]`` and runs
    :func:`~lightning_unlearn.metrics.functional.mia_nn` (seeded, identical on every rank).

    Returns a dict with the fixed keys ``auc, acc, auc_std, acc_std, auc_gap, acc_gap``: the gaps
    are ``|value - retrain_reference[...]|`` and ``nan`` when no ``retrain_reference`` is given.
    A retrained model scores about 50; ``higher_is_better = None``.

    Args:
        forget_class: f.
        neighbors: the K neighbour classes, from
            :func:`~lightning_unlearn.metrics.functional.mia_nn_neighbors` on models retrained without f.
        classifier: ``"svc"`` or ``"logistic"``. n_splits, n_repeats, seed: cross-validation protocol.
        retrain_reference: ``{"auc": ..., "acc": ...}`` of the retrained models (percent).
        feature: ``"prob"`` (default), ``"logprob"`` or ``"logit"``.
        kwargs: ``torchmetrics.Metric`` options.
    """

    higher_is_better = None

    def __init__(
        self,
        forget_class: int,
        neighbors: Sequence[int] | torch.Tensor,
        classifier: Classifier = "svc",
        n_splits: int = 5,
        n_repeats: int = 3,
        seed: int = 0,
        retrain_reference: Mapping[str, float] | None = None,
        *,
        feature: NNFeature = "prob",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.neighbors = [int(n) for n in torch.as_tensor(neighbors).reshape(-1).tolist()]
        if not self.neighbors:
            raise ValueError("neighbors must name at least one class")
        if int(forget_class) in self.neighbors:
            raise ValueError(f"forget_class {forget_class} must not be among the neighbors {self.neighbors}")
        if classifier not in ("svc", "logistic"):
            raise ValueError(f"classifier must be 'svc' or 'logistic', got {classifier!r}")
        if feature not in ("prob", "logprob", "logit"):
            raise ValueError(f"feature must be 'prob', 'logprob' or 'logit', got {feature!r}")
        if retrain_reference is not None and not {"auc", "acc"} <= set(retrain_reference):
            raise ValueError(f"retrain_reference must have keys 'auc' and 'acc', got {sorted(retrain_reference)}")
        self.forget_class, self.classifier, self.feature = int(forget_class), classifier, feature
        self.n_splits, self.n_repeats, self.seed = int(n_splits), int(n_repeats), int(seed)
        self.retrain_reference = None if retrain_reference is None else {k: float(v) for k, v in retrain_reference.items()}
        self._add_record_states(["logits"])

    def update(self, logits: torch.Tensor, is_member: torch.Tensor, index: torch.Tensor) -> None:
        """Record a batch: ``logits`` (B, C), ``is_member`` (B,) 1 for D_f / 0 for T_f, pool ``index`` (B,)."""
        if logits.ndim != 2 or not logits.is_floating_point():
            raise ValueError(f"logits must be a float (B, C) tensor, got {logits.dtype} {tuple(logits.shape)}")
        member = check_binary(torch.as_tensor(is_member), logits.shape[0], "is_member")
        index = check_index(index, logits.shape[0])
        self._append(index, member, logits=logits.float())

    def compute(self) -> dict[str, torch.Tensor]:
        rec = self._records()
        feats = mia_nn_features(rec["logits"], self.neighbors, self.forget_class, feature=self.feature)
        out = mia_nn(
            feats, rec["split"], classifier=self.classifier, n_splits=self.n_splits, n_repeats=self.n_repeats, seed=self.seed
        )
        ref = self.retrain_reference
        out["auc_gap"] = abs(out["auc"] - ref["auc"]) if ref else float("nan")
        out["acc_gap"] = abs(out["acc"] - ref["acc"]) if ref else float("nan")
        result = {k: torch.tensor(out[k], dtype=torch.float64) for k in KEYS}
        self._check_ranks(torch.stack(list(result.values())))
        return result
