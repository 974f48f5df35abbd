"""Evaluation of one model: accuracies, SVC MIA efficacy, RMIA AUC, MIA-NN, symmetric KL.

The pipeline computes a model's logits on the whole pool once (:func:`model_outputs`), then
feeds them to the same audit code a user calls: the :class:`~lightning_unlearn.metrics.MIAEfficacy`
and :class:`~lightning_unlearn.metrics.RMIA` metric classes (shadow sets, RMIA population,
self-exclusion and signal choice are theirs, never rebuilt here) and the functions of
:mod:`lightning_unlearn.metrics.functional` (accuracies, MIA-NN, symmetric KL, Avg. Gap). This
module only decides which pool samples form which set. All figures are percentages except
``sym_kl``.

Sets (positions into the pool's train / test arrays, :class:`~lightning_unlearn.data.ForgetSplit`):

* random forgetting: ``ua`` on D_F, ``ra`` on D_R, ``ta`` on the test set; ``mia`` is the SVC
  efficacy on D_F (shadow members: D_R, non-members: the test set); ``rmia_auc`` separates
  D_F (1) from the test set (0).
* class forgetting: ``ua`` on the forget classes' training samples D_f, ``ua_test`` on their
  test samples T_f, ``ra`` on D_R, ``ta`` on the remaining classes' test samples T_r;
  ``mia`` is the SVC efficacy on D_f (shadow members D_R, non-members T_r), ``rmia_auc``
  separates D_f (1) from T_f (0), and ``sym_kl`` is the symmetric KL divergence of the
  model's outputs to the retrained models' on D_f and T_f.
* MIA-NN, class forgetting, both protocols of
  :mod:`lightning_unlearn.metrics.functional.mia_nn` (neighbour classes from the retrained
  models; for a retrained model, from the *other* retrained models: the caller passes them):

  - membership protocol (:func:`~lightning_unlearn.metrics.functional.mia_nn`):
    ``mia_nn_auc`` / ``mia_nn_acc``, the cross-validated AUC and accuracy of a discriminator
    fitted on the audited model's own outputs to tell D_f (members) from T_f;
  - retrain protocol (:func:`~lightning_unlearn.metrics.functional.mia_nn_retrain`): a
    discriminator fitted once on the retrained models' outputs (forget-class vs neighbour-class
    training samples) and applied unchanged to the audited model; ``mia_nn_retrain_acc`` is the
    percentage of T_f it recognises as forget-class, ``mia_nn_retrain_acc_train`` the same on
    D_f, ``..._star`` the retrained models' own value and ``..._gap`` the distance to it. With
    the neighbour-class probabilities as features (the default) and, as
    ``mia_nn_retrain_logit_*``, with the whole logit vector.

  With several forget classes each figure is the mean over the classes.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.inference import accuracy, predict_logits
from lightning_unlearn.metrics import RMIA as RMIAMetric
from lightning_unlearn.metrics import SPLITS, MIAEfficacy
from lightning_unlearn.metrics import functional as F
from lightning_unlearn.seeding import derive_seed

log = logging.getLogger(__name__)

MIA_SHADOW_SEED = 0
MIA_NN_FOLDS = 5
_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message)


@dataclass
class Outputs:
    """Logits of one model on the pool: ``train`` ``(N_train, K)`` and ``test`` ``(N_test, K)`` in pool order."""

    train: torch.Tensor
    test: torch.Tensor

    @property
    def pool(self) -> torch.Tensor:
        return torch.cat([self.train, self.test])


@dataclass
class Sets:
    """Positions and labels of every evaluation set of one forget split."""

    forget: torch.Tensor
    remain: torch.Tensor
    test_forget: torch.Tensor  # forget-class test positions (class forgetting; empty otherwise)
    test_remain: torch.Tensor  # remaining-class test positions (all test for random forgetting)
    train_y: torch.Tensor
    test_y: torch.Tensor
    n_train: int
    kind: str
    forget_classes: tuple[int, ...] = ()
    index: torch.Tensor | None = None  # pool indices of the positions, train then test (default: the positions)

    @classmethod
    def of(cls, dm: UnlearningDataModule) -> "Sets":
        dm.setup()
        pool, split = dm.pool, dm.split
        return cls(
            index=torch.cat([pool.train_index, pool.test_index]),
            forget=split.forget,
            remain=split.remain,
            test_forget=split.forget_class_test,
            test_remain=split.remain_class_test,
            train_y=pool.train_y,
            test_y=pool.test_y,
            n_train=len(pool.train_y),
            kind=dm.forget_spec.kind,
            forget_classes=tuple(dm.forget_spec.classes),
        )

    @property
    def pool_y(self) -> torch.Tensor:
        return torch.cat([self.train_y, self.test_y])

    @property
    def pool_index(self) -> torch.Tensor:
        """Pool indices of the positions (the samples' identities for the metric classes)."""
        return self.index if self.index is not None else torch.arange(self.n_train + len(self.test_y))

    def sizes(self) -> dict[str, int]:
        """Sample counts of the sets behind each figure (recorded in ``results.json``)."""
        members, non_members = self.rmia_sets()
        out = {"forget": len(self.forget), "remain": len(self.remain), "test": len(self.test_remain), "rmia_non_members": len(non_members)}
        if self.kind == "class":
            out["forget_test"] = len(self.test_forget)
        return out

    def rmia_sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool positions of the RMIA members (label 1) and non-members (label 0)."""
        non = self.test_forget if self.kind == "class" else self.test_remain
        return self.forget, self.n_train + non

    def mia_sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool positions of the SVC shadow members and shadow non-members."""
        return self.remain, self.n_train + self.test_remain


@dataclass
class References:
    """RMIA reference signals ``(R, P)`` indexed by pool index (``nan`` off the pool) and their membership."""

    signals: torch.Tensor
    membership: torch.Tensor


@dataclass
class Evaluation:
    """The figures of one model (``None`` where a metric does not apply or is unavailable)."""

    values: dict[str, float | None]
    rmia_scores: torch.Tensor | None = None
    rmia_labels: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def model_outputs(net: nn.Module, dm: UnlearningDataModule) -> Outputs:
    """Eval-mode fp32 logits on the train and test pools (no augmentation)."""
    train_logits, _, _ = predict_logits(net, dm.train_set(), batch_size=dm.eval_batch_size)
    test_logits, _, _ = predict_logits(net, dm.test_set(), batch_size=dm.eval_batch_size)
    return Outputs(train_logits, test_logits)


# ------------------------------------------------------------------------- metric adapters
# Each adapter records the pool's logits into the metric class a user would use, by set. Every
# process of a DDP run holds the whole pool's logits (model_outputs predicts on all of it), so the
# metrics compute locally (sync_on_compute=False): gathering would record every sample once per rank.
def _record(metric, out: Outputs, sets: Sets, parts: dict[str, torch.Tensor]) -> None:
    """``metric.update`` with the logits, labels and pool indices of each named set of positions."""
    pool, y, index = out.pool, sets.pool_y, sets.pool_index
    for split, pos in parts.items():
        if len(pos):
            metric.update(pool[pos], y[pos], index[pos], split)


def svc_mia(out: Outputs, sets: Sets) -> float | None:
    """SVC MIA efficacy (confidence feature) on the forget set, in percent (:class:`~lightning_unlearn.metrics.MIAEfficacy`).

    Shadow members: D_R (the metric draws a seeded subset of the size of the non-members);
    shadow non-members: the test set (the remaining classes' test set for class forgetting). When
    D_R is the smaller of the two (a small training subset beside a larger test subset, e.g. 900
    remain against 1,000 test images), the shadow non-members are a seeded subset of the test set
    of D_R's size instead (:func:`~lightning_unlearn.metrics.functional.select_shadow_members`
    with seed ``derive_seed(MIA_SHADOW_SEED, "svc-non-members")``), so the two classes stay balanced.
    """
    members, non_members = sets.mia_sets()
    if len(non_members) == 0 or len(members) == 0 or len(sets.forget) == 0:
        _warn_once("svc", f"SVC MIA skipped: it needs forget, remain and test samples, got {len(sets.forget)}, {len(members)}, {len(non_members)}")
        return None
    if len(members) < len(non_members):
        keep = F.select_shadow_members(sets.pool_index[non_members], len(members), seed=derive_seed(MIA_SHADOW_SEED, "svc-non-members"))
        non_members = non_members[keep]
    metric = MIAEfficacy(feature="confidence", seed=MIA_SHADOW_SEED, sync_on_compute=False).set_dtype(torch.float64)  # results keep fp64
    _record(metric, out, sets, {"remain": members, "test": non_members, "forget": sets.forget})
    return float(metric.compute())


def rmia(
    out: Outputs, sets: Sets, refs: References | None, *, signal_kind: str, gamma: float
) -> tuple[float | None, float | None, torch.Tensor | None, torch.Tensor | None]:
    """RMIA AUC and TPR at 1% FPR in percent (members vs non-members of :meth:`Sets.rmia_sets`), scores and labels.

    :class:`~lightning_unlearn.metrics.RMIA` (online reference mean over all references) with
    every pool point recorded once, so its population is the whole pool and each candidate is
    left out of its own population: the members as ``"forget"``, the non-members as ``"test"``,
    every other pool point as ``"remain"`` / ``"remain_class_test"``.
    """
    if refs is None:
        return None, None, None, None
    pos, neg = sets.rmia_sets()
    if len(pos) == 0 or len(neg) == 0:
        _warn_once("rmia", "RMIA skipped: no member or no non-member samples to separate")
        return None, None, None, None
    n_pool = sets.n_train + len(sets.test_y)
    rest = torch.ones(n_pool, dtype=torch.bool)
    rest[pos] = rest[neg] = False
    others = torch.nonzero(rest).flatten()
    metric = RMIAMetric(refs.signals, signal=signal_kind, gamma=gamma, tpr_fprs=(0.01,), sync_on_compute=False).set_dtype(torch.float64)
    _record(metric, out, sets, {"forget": pos, "test": neg, "remain": others[others < sets.n_train], "remain_class_test": others[others >= sets.n_train]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = metric.compute()
    for w in caught:  # the metric's small-sample variance warning: once per run, not per model
        _warn_once(type(w.message).__name__, str(w.message))
    last = metric.last_scores
    keep = torch.isin(last["split"], torch.tensor([SPLITS["forget"], SPLITS["test"]]))
    scores, labels = last["score"][keep], (last["split"][keep] == SPLITS["forget"]).long()
    return float(result["ft_auc"]), float(result["ft_tpr@0.01"]), scores, labels


def _class_sets(sets: Sets, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool positions of forget class ``c``'s training samples D_f and test samples T_f."""
    return sets.forget[sets.train_y[sets.forget] == c], sets.n_train + sets.test_forget[sets.test_y[sets.test_forget] == c]


def _class_mean(per_class: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, float | None]:
    """Mean over forget classes of each key; ``None`` where any class lacks it (``nan``) or no class was audited."""
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [d[k] for d in per_class]
        out[k] = float(np.mean(vals)) if vals and all(math.isfinite(v) for v in vals) else None
    return out


MIA_NN_KEYS = ("mia_nn_auc", "mia_nn_acc")


def mia_nn_membership(out: Outputs, sets: Sets, retrain_outputs: list[Outputs]) -> dict[str, float | None]:
    """MIA-NN, membership protocol: cross-validated AUC and accuracy (percent) of D_f vs T_f.

    :func:`~lightning_unlearn.metrics.functional.mia_nn` on the features
    ``[p(n|x), p(f|x)]``, with the neighbour class ``n`` of
    :func:`~lightning_unlearn.metrics.functional.mia_nn_neighbors` from ``retrain_outputs``
    (models retrained without the class; the caller leaves a retrained model out of its own
    list). Returns ``{"mia_nn_auc", "mia_nn_acc"}`` (``None`` for random forgetting, without
    retrained models, or with fewer than ``MIA_NN_FOLDS`` samples per set).
    """
    if sets.kind != "class" or not retrain_outputs:
        return {k: None for k in MIA_NN_KEYS}
    per_class = []
    for c in sets.forget_classes:
        pos, neg = _class_sets(sets, c)
        if min(len(pos), len(neg)) < MIA_NN_FOLDS:
            _warn_once("mia_nn", f"MIA-NN skipped for class {c}: it needs {MIA_NN_FOLDS} training and test samples, got {len(pos)} and {len(neg)}")
            continue
        ref_probs = torch.stack([torch.softmax(o.pool[pos].double(), 1) for o in retrain_outputs])
        neighbors = F.mia_nn_neighbors(ref_probs, c, 1)
        feats = F.mia_nn_features(out.pool[torch.cat([pos, neg])], neighbors, c)
        is_member = torch.cat([torch.ones(len(pos), dtype=torch.long), torch.zeros(len(neg), dtype=torch.long)])
        r = F.mia_nn(feats, is_member, n_splits=MIA_NN_FOLDS)
        per_class.append({"mia_nn_auc": r["auc"], "mia_nn_acc": r["acc"]})
    return _class_mean(per_class, MIA_NN_KEYS)


def mia_nn_auc(out: Outputs, sets: Sets, retrain_outputs: list[Outputs]) -> float | None:
    """The membership protocol's AUC alone (:func:`mia_nn_membership`)."""
    return mia_nn_membership(out, sets, retrain_outputs)["mia_nn_auc"]


#: result-name prefix -> feature of the retrain protocol (the first is the default, in the main table)
MIA_NN_RETRAIN_FEATURES = {"mia_nn_retrain": "neighbor_prob", "mia_nn_retrain_logit": "logit"}
# the functional's keys -> the suffix of the result names
_RETRAIN_NAMES = {
    "acc_test": "acc", "acc_train": "acc_train", "retrain_acc_test": "acc_star", "retrain_acc_train": "acc_train_star",
    "acc_test_gap": "acc_gap", "acc_train_gap": "acc_train_gap",
}
MIA_NN_RETRAIN_KEYS = tuple(f"{prefix}_{suffix}" for prefix in MIA_NN_RETRAIN_FEATURES for suffix in _RETRAIN_NAMES.values())


def mia_nn_retrain(out: Outputs, sets: Sets, retrain_outputs: list[Outputs]) -> dict[str, float | None]:
    """MIA-NN, retrain protocol (percent), once per feature of :data:`MIA_NN_RETRAIN_FEATURES`.

    One call of :func:`~lightning_unlearn.metrics.functional.mia_nn_retrain` per forget class
    and feature, on the whole pool's logits (``is_train``: the training pool): the neighbour
    class from ``retrain_outputs`` on D_f, the discriminator fitted on their training-pool
    logits (D_f against the neighbour class's training samples), applied to ``out``. For a
    retrained model the caller passes the *other* retrained models, which is the functional's
    ``leave_out``: the model is audited by a discriminator and a reference it had no part in.

    Returns ``{PREFIX + "_acc", "_acc_train", "_acc_star", "_acc_train_star", "_acc_gap",
    "_acc_train_gap"}`` for each prefix (``None`` where not applicable, e.g. random forgetting,
    or ``_acc_train_star`` with a single retrained model).
    """
    if sets.kind != "class" or not retrain_outputs:
        return {k: None for k in MIA_NN_RETRAIN_KEYS}
    refs = torch.stack([o.pool for o in retrain_outputs])
    is_train = torch.arange(len(sets.pool_y)) < sets.n_train
    values: dict[str, float | None] = {}
    for prefix, feature in MIA_NN_RETRAIN_FEATURES.items():
        per_class = []
        for c in sets.forget_classes:
            if len(_class_sets(sets, c)[0]) == 0:
                continue
            r = F.mia_nn_retrain(out.pool, refs, sets.pool_y, is_train, c, feature=feature)
            per_class.append({f"{prefix}_{suffix}": r[key] for key, suffix in _RETRAIN_NAMES.items()})
        values.update(_class_mean(per_class, tuple(f"{prefix}_{suffix}" for suffix in _RETRAIN_NAMES.values())))
    return values


def sym_kl(out: Outputs, sets: Sets, retrain_outputs: list[Outputs]) -> float | None:
    """Mean over D_f ∪ T_f and over retrained models of the symmetric KL (nats) of the outputs."""
    if sets.kind != "class" or not retrain_outputs:
        return None
    rows = torch.cat([sets.forget, sets.n_train + sets.test_forget])
    mine = out.pool[rows]
    return float(np.mean([float(F.symmetric_kl(mine, r.pool[rows]).mean()) for r in retrain_outputs]))


# ------------------------------------------------------------------------- one model
def evaluate(
    out: Outputs, sets: Sets, *, refs: References | None = None, retrain_outputs: list[Outputs] | None = None, signal_kind: str = "softmax", gamma: float = 2.0
) -> Evaluation:
    """Every figure of one model's outputs (see the module docstring for the sets)."""
    v: dict[str, float | None] = {
        "ua": accuracy(out.train[sets.forget], sets.train_y[sets.forget]),
        "ra": accuracy(out.train[sets.remain], sets.train_y[sets.remain]),
        "ta": accuracy(out.test[sets.test_remain], sets.test_y[sets.test_remain]),
    }
    if sets.kind == "class":
        v["ua_test"] = accuracy(out.test[sets.test_forget], sets.test_y[sets.test_forget])
    v["mia"] = svc_mia(out, sets)
    auc, tpr, scores, labels = rmia(out, sets, refs, signal_kind=signal_kind, gamma=gamma)
    v["rmia_auc"] = auc
    v["rmia_tpr_at_1pct_fpr"] = tpr
    membership = mia_nn_membership(out, sets, retrain_outputs or [])
    v["mia_nn_auc"] = membership["mia_nn_auc"]
    if sets.kind == "class":
        v["mia_nn_acc"] = membership["mia_nn_acc"]
        v.update(mia_nn_retrain(out, sets, retrain_outputs or []))
        v["sym_kl"] = sym_kl(out, sets, retrain_outputs or [])
    return Evaluation(v, scores, labels)


# ------------------------------------------------------------------------- Avg. Gap
GAP_TERMS = ("ua", "ra", "ta")


def star_values(evals: list[Evaluation]) -> dict[str, float | None]:
    """Mean over retrained models of each figure (``None`` where any is missing)."""
    keys = evals[0].values.keys()
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [e.values.get(k) for e in evals]
        out[k] = None if any(x is None for x in vals) else float(np.mean(vals))
    return out


def gap(values: dict[str, float | None], star: dict[str, float | None], mia_key: str) -> float | None:
    """Avg. Gap = ¼(|UA−UA*| + |RA−RA*| + |TA−TA*| + |MIA−MIA*|) (docs/protocol.md, section 7).

    ``mia_key`` picks the MIA term: ``rmia_auc`` (the paper's main tables) or ``mia`` (SVC).
    """
    keys = GAP_TERMS + (mia_key,)
    if any(values.get(k) is None or star.get(k) is None for k in keys):
        return None
    mine = {"ua": values["ua"], "ra": values["ra"], "ta": values["ta"], "mia": values[mia_key]}
    ref = {"ua": star["ua"], "ra": star["ra"], "ta": star["ta"], "mia": star[mia_key]}
    return float(F.avg_gap(mine, ref))


#: class forgetting: figure -> the name of its gap to the starred value (the retrained models' mean,
#: leave-one-out for a retrained model), as for Avg. Gap
STAR_GAPS = {
    "mia_nn_auc": "mia_nn_auc_gap",
    "mia_nn_acc": "mia_nn_acc_gap",
    "mia_nn_retrain_acc": "mia_nn_retrain_acc_gap_loo",
    "mia_nn_retrain_logit_acc": "mia_nn_retrain_logit_acc_gap_loo",
}


def cell_gaps(values: dict[str, float | None], star: dict[str, float | None], mia_key: str, kind: str) -> dict[str, float | None]:
    """The gaps of one run to the retrained models of its forget set (``star``: their mean figures).

    ``avg_gap`` (MIA term ``mia_key``: ``rmia_auc``, or ``mia`` without references) and
    ``avg_gap_mis`` (SVC term) by :func:`gap`; for class forgetting also every gap of
    :data:`STAR_GAPS`, ``|x - x*|``. ``None`` where a figure is missing. The retrain protocol's own
    gaps (``mia_nn_retrain_acc_gap``, ...) are figures of the run (:func:`mia_nn_retrain`).
    """
    out = {"avg_gap": gap(values, star, mia_key), "avg_gap_mis": gap(values, star, "mia")}
    if kind == "class":
        for k, name in STAR_GAPS.items():
            mine, ref = values.get(k), star.get(k)
            out[name] = None if mine is None or ref is None else abs(mine - ref)
    return out
