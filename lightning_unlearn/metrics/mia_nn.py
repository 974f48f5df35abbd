"""MIA-NN as torchmetrics ``Metric`` classes: :class:`MIANN` (membership protocol) and
:class:`MIANNRetrain` (retrain protocol); see :mod:`lightning_unlearn.metrics.functional.mia_nn`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lightning_unlearn.metrics._base import SPLITS, IndexedRecords, check_index, split_code
from lightning_unlearn.metrics.functional._checks import check_binary
from lightning_unlearn.metrics.functional.mia_nn import Classifier, NNFeature, RetrainDiscriminator, mia_nn, mia_nn_features

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
        with self._warnings_once():
            rec = self._records()
            feats = mia_nn_features(rec["logits"], self.neighbors, self.forget_class, feature=self.feature)
            out = mia_nn(
                feats, rec["split"], classifier=self.classifier, n_splits=self.n_splits, n_repeats=self.n_repeats, seed=self.seed
            )
        ref = self.retrain_reference
        out["auc_gap"] = abs(out["auc"] - ref["auc"]) if ref else float("nan")
        out["acc_gap"] = abs(out["acc"] - ref["acc"]) if ref else float("nan")
        result = self._as_tensors({k: out[k] for k in KEYS})
        self._check_ranks(torch.stack(list(result.values())))
        return result


RETRAIN_METRIC_KEYS = ("acc_test", "acc_train", "acc_test_gap", "acc_train_gap")
_FORGET, _FORGET_TEST = SPLITS["forget"], SPLITS["forget_class_test"]


class MIANNRetrain(IndexedRecords):
    """MIA-NN under the retrain protocol, in **percent**: how often does a discriminator fitted on
    retrained models' outputs recognise the audited model's forget-class samples as forget-class?

    The discriminator (:func:`~lightning_unlearn.metrics.functional.fit_retrain_discriminator`,
    fitted once on the retrained models' logits) is a constructor input, like the reference
    signals of :class:`~lightning_unlearn.metrics.RMIA`: the metric never refits it. Update with
    the audited model's eval-mode logits on the forget-class test samples T_f (``split=
    "forget_class_test"``) and, optionally, on its training samples D_f (``split="forget"``),
    with their pool indices. ``compute()`` gathers, de-duplicates by (split, index) (the padding
    ``DistributedSampler`` adds), sorts by index and applies the discriminator, identically on
    every rank.

    Returns a dict with the fixed keys ``acc_test, acc_train, acc_test_gap, acc_train_gap``:
    the percentage of T_f / D_f detected as forget-class, and ``|value - retrain_reference[...]|``.
    A split without samples, or without a reference value, gives ``nan``. The target is the
    retrained models' value (``higher_is_better = None``); the functional
    :func:`~lightning_unlearn.metrics.functional.mia_nn_retrain` computes that reference.

    Args:
        discriminator: a fitted :class:`~lightning_unlearn.metrics.functional.RetrainDiscriminator`.
        retrain_reference: ``{"acc_test": ..., "acc_train": ...}`` of the retrained models
            (percent; either key may be left out).
        kwargs: ``torchmetrics.Metric`` options.

    Example:
        >>> import torch
        >>> from lightning_unlearn.metrics.functional import fit_retrain_discriminator
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.arange(300) % 3
        >>> ref = torch.randn(300, 3, generator=g)
        >>> ref[y == 1, 1] += 4.0                 # class-1 samples: confident
        >>> ref[y == 0, 1] += 1.0                 # forget class 0: sent to class 1, hesitantly
        >>> disc = fit_retrain_discriminator(ref, y, forget_class=0, neighbors=[1])
        >>> m = MIANNRetrain(disc, retrain_reference={"acc_test": 90.0})
        >>> m.update(ref[y == 0][:20], "forget_class_test", torch.arange(20))
        >>> out = m.compute()
        >>> sorted(out), bool(out["acc_train"].isnan())
        (['acc_test', 'acc_test_gap', 'acc_train', 'acc_train_gap'], True)
    """

    higher_is_better = None

    def __init__(
        self, discriminator: RetrainDiscriminator, retrain_reference: Mapping[str, float] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(discriminator, RetrainDiscriminator):
            raise TypeError(f"discriminator must be a RetrainDiscriminator (fit_retrain_discriminator), got {type(discriminator).__name__}")
        if retrain_reference is not None and not set(retrain_reference) <= {"acc_test", "acc_train"}:
            raise ValueError(f"retrain_reference keys must be among 'acc_test', 'acc_train', got {sorted(retrain_reference)}")
        self.discriminator = discriminator
        self.retrain_reference = {k: float(v) for k, v in (retrain_reference or {}).items()}
        self._add_record_states(["logits"])

    def update(self, logits: torch.Tensor, split: str | int | torch.Tensor, index: torch.Tensor) -> None:
        """Record a batch: ``logits`` (B, C) on forget-class samples, their ``split`` (``"forget"`` for D_f,
        ``"forget_class_test"`` for T_f; a name, a code or a (B,) tensor of codes) and pool ``index`` (B,)."""
        if logits.ndim != 2 or not logits.is_floating_point():
            raise ValueError(f"logits must be a float (B, C) tensor, got {logits.dtype} {tuple(logits.shape)}")
        tags = split_code(split, logits.shape[0], logits.device)
        bad = ~torch.isin(tags, torch.tensor([_FORGET, _FORGET_TEST], device=tags.device))
        if bool(bad.any()):
            raise ValueError(
                f"MIANNRetrain records forget-class samples only: split must be 'forget' ({_FORGET}) or "
                f"'forget_class_test' ({_FORGET_TEST}), got code(s) {sorted(set(tags[bad].tolist()))}"
            )
        index = check_index(index, logits.shape[0])
        self._append(index, tags, logits=logits.float())

    def compute(self) -> dict[str, torch.Tensor]:
        rec = self._records()
        z, split = rec["logits"].cpu(), rec["split"].cpu()
        d = self.discriminator
        with self._warnings_once():
            out = {"acc_test": d.detection_rate(z[split == _FORGET_TEST]), "acc_train": d.detection_rate(z[split == _FORGET])}
        for key in ("acc_test", "acc_train"):
            ref = self.retrain_reference.get(key, float("nan"))
            out[f"{key}_gap"] = abs(out[key] - ref)
        result = self._as_tensors({k: out[k] for k in RETRAIN_METRIC_KEYS})
        self._check_ranks(torch.stack(list(result.values())))
        return result
