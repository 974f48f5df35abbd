"""MIA-NN: the neighbour-class membership attack for class unlearning (trw-mia-nn.md §5).

Features are the probabilities of the forget class's nearest neighbour classes and of the
forget class itself; a discriminator separates forget-class *training* samples D_f (members
that were unlearned, label 1) from forget-class *test* samples T_f (never members, label 0).
Balanced by seeded subsampling, standardised inside each fold, evaluated by shuffled stratified
5-fold cross-validation with the AUC taken from ``decision_function``, repeated over seeds.
A retrained model scores about 50; the audit reports the gap to the retrained models' score.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
import torch

from lightning_unlearn.metrics.functional._checks import (
    as_tensor,
    check_binary,
    check_finite,
    check_float,
    check_ndim,
    check_nonempty,
    check_probs,
)

log = logging.getLogger(__name__)

Classifier = Literal["svc", "logistic"]
NNFeature = Literal["prob", "logit", "logprob"]


def mia_nn_neighbors(
    ref_probs: torch.Tensor, forget_class: int, k: int = 1, *, leave_out: int | None = None
) -> torch.Tensor:
    """The K neighbour classes of ``forget_class`` (trw-mia-nn.md §5.1).

    ``m_c = mean_j mean_{x in D_f} p_{θ_r^(j)}(c | x)`` for c != f, from reference models
    retrained *without* the forget class, evaluated on its samples D_f; the neighbours are the
    K largest (ties broken by the smaller class index).

    Args:
        ref_probs: ``(R, N, C)`` (or ``(N, C)`` for one model) softmax outputs on D_f.
        forget_class: f in ``[0, C)``.
        k: number of neighbours, ``1 <= k <= C - 1``.
        leave_out: when auditing reference model j itself, its index: the neighbours then come
            from the other R - 1 models.

    Returns:
        ``(k,)`` int64 class indices, most similar first.
    """
    p = as_tensor(ref_probs, "ref_probs")
    if p.ndim == 2:
        p = p[None]
    check_ndim(p, 3, "ref_probs", "(R, N, C) or (N, C)")
    r, _, c = p.shape
    check_probs(p.reshape(-1, c), "ref_probs")
    check_nonempty(p, "ref_probs", dim=1)
    if not 0 <= int(forget_class) < c:
        raise ValueError(f"forget_class must lie in [0, {c}), got {forget_class!r}")
    if not 1 <= int(k) <= c - 1:
        raise ValueError(f"k must lie in [1, {c - 1}], got {k!r}")
    if leave_out is not None:
        if not 0 <= int(leave_out) < r or r < 2:
            raise ValueError(f"leave_out must index one of R={r} >= 2 reference models, got {leave_out!r}")
        p = torch.cat([p[:leave_out], p[leave_out + 1 :]])
    m = p.double().mean(dim=(0, 1))
    m[int(forget_class)] = -1.0
    order = torch.sort(m, descending=True, stable=True).indices
    return order[: int(k)].clone()


def mia_nn_features(
    outputs: torch.Tensor,
    neighbors: torch.Tensor | list[int],
    forget_class: int,
    *,
    feature: NNFeature = "prob",
    from_logits: bool = True,
) -> torch.Tensor:
    """``φ(x) = [v(n_1|x), ..., v(n_K|x), v(f|x)]`` with v = p (``"prob"``), log p or the logit z.

    Args:
        outputs: ``(N, C)`` logits (``from_logits=True``) or probabilities.
        neighbors: the K neighbour classes. forget_class: f.

    Returns:
        ``(N, K + 1)`` float64 features.
    """
    out = as_tensor(outputs, "outputs")
    check_float(out, "outputs")
    check_ndim(out, 2, "outputs", "(N, C)")
    check_finite(out, "outputs")
    if feature not in ("prob", "logit", "logprob"):
        raise ValueError(f"feature must be 'prob', 'logit' or 'logprob', got {feature!r}")
    c = out.shape[1]
    cols = [int(n) for n in as_tensor(neighbors, "neighbors").reshape(-1).tolist()] + [int(forget_class)]
    if any(not 0 <= j < c for j in cols) or int(forget_class) in cols[:-1] or len(set(cols)) != len(cols):
        raise ValueError(f"neighbors {cols[:-1]} and forget_class {forget_class} must be distinct classes in [0, {c})")
    out = out.double()
    if from_logits:
        if feature == "logit":
            v = out
        else:
            v = torch.log_softmax(out, 1)
            v = v if feature == "logprob" else v.exp()
    else:
        if feature == "logit":
            raise ValueError("feature='logit' needs logits (from_logits=True)")
        p = check_probs(out, "outputs")
        v = torch.log(p.clamp(min=1e-30)) if feature == "logprob" else p
    return v[:, cols]


def _balanced_subsample(is_member: np.ndarray, seed: int) -> np.ndarray:
    """Positions of a balanced subset: the larger label subsampled (seeded) to the smaller's size."""
    pos1, pos0 = np.flatnonzero(is_member == 1), np.flatnonzero(is_member == 0)
    n = min(len(pos1), len(pos0))
    gen = torch.Generator().manual_seed(int(seed))
    if len(pos1) > n:
        pos1 = np.sort(pos1[torch.randperm(len(pos1), generator=gen)[:n].numpy()])
    elif len(pos0) > n:
        pos0 = np.sort(pos0[torch.randperm(len(pos0), generator=gen)[:n].numpy()])
    return np.concatenate([pos1, pos0])


def make_discriminator(classifier: Classifier = "svc"):
    """``StandardScaler`` + ``SVC(kernel="rbf", C=3, gamma="auto")`` or ``LogisticRegression(max_iter=1000)``.

    The scaler sits inside the pipeline, so under cross-validation it is fitted on the
    training folds only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if classifier == "svc":
        clf = SVC(kernel="rbf", C=3, gamma="auto")
    elif classifier == "logistic":
        clf = LogisticRegression(max_iter=1000)
    else:
        raise ValueError(f"classifier must be 'svc' or 'logistic', got {classifier!r}")
    return make_pipeline(StandardScaler(), clf)


def mia_nn(
    features: torch.Tensor,
    is_member: torch.Tensor,
    *,
    neighbors: torch.Tensor | list[int] | None = None,
    forget_class: int | None = None,
    classifier: Classifier = "svc",
    n_splits: int = 5,
    n_repeats: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Cross-validated MIA-NN audit; values **in percent** (trw-mia-nn.md §5.2).

    For each repeat r (subsample seed ``seed + r``): subsample the larger of D_f / T_f to the
    size of the smaller (``torch.Generator``), then shuffled ``StratifiedKFold(n_splits,
    random_state=seed + r)``; in each fold fit :func:`make_discriminator` on the training folds
    (the scaler included), take the ROC-AUC of ``decision_function`` and the accuracy of
    ``predict`` on the held-out fold. Everything is seeded and sklearn's SVC/LBFGS fits are
    deterministic, so every DDP rank computes the same numbers from the same (sorted) data.

    Args:
        features: ``(N, F)`` attack features, e.g. from :func:`mia_nn_features`; or ``(N, C)``
            probabilities when ``neighbors`` and ``forget_class`` are given (the columns
            ``[*neighbors, forget_class]`` are then taken).
        is_member: ``(N,)`` 1 for D_f (forget-class training samples), 0 for T_f (test samples).
        classifier: ``"svc"`` (default) or ``"logistic"``.
        n_splits: folds (>= 2). n_repeats: subsample/fold seeds (>= 1). seed: first seed.

    Returns:
        ``{"auc", "acc", "auc_std", "acc_std"}``: mean and sample standard deviation (ddof=1;
        0 for a single fold score) over all ``n_splits * n_repeats`` fold scores, x100. Constant
        features give a warning and ``auc = acc = 50``.

    Raises:
        ValueError: fewer samples per label than ``n_splits``, shapes, non-binary labels.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    x = as_tensor(features, "features")
    check_float(x, "features")
    check_ndim(x, 2, "features", "(N, F)")
    check_nonempty(x, "features")
    check_finite(x, "features")
    if (neighbors is None) != (forget_class is None):
        raise ValueError("pass both neighbors and forget_class (to select probability columns) or neither")
    if neighbors is not None:
        x = mia_nn_features(x, neighbors, int(forget_class), from_logits=False)
    y = check_binary(as_tensor(is_member, "is_member"), x.shape[0], "is_member").cpu().numpy()
    if int(n_splits) < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits!r}")
    if int(n_repeats) < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats!r}")
    n_min = int(min((y == 1).sum(), (y == 0).sum()))
    if n_min < n_splits:
        raise ValueError(
            f"MIA-NN needs at least n_splits={n_splits} samples per label, got {int((y == 1).sum())} members "
            f"and {int((y == 0).sum())} non-members"
        )
    xn = x.detach().cpu().double().numpy()
    if np.all(xn == xn[:1]):
        warnings.warn("MIA-NN features are constant: the attack cannot separate anything; returning AUC 50", stacklevel=2)
        return {"auc": 50.0, "acc": 50.0, "auc_std": 0.0, "acc_std": 0.0}
    aucs, accs = [], []
    for r in range(int(n_repeats)):
        s = int(seed) + r
        pos = _balanced_subsample(y, s)
        xs, ys = xn[pos], y[pos]
        folds = StratifiedKFold(n_splits=int(n_splits), shuffle=True, random_state=s)
        for train, test in folds.split(xs, ys):
            model = make_discriminator(classifier).fit(xs[train], ys[train])
            aucs.append(roc_auc_score(ys[test], model.decision_function(xs[test])))
            accs.append(float((model.predict(xs[test]) == ys[test]).mean()))
    aucs_a, accs_a = 100.0 * np.asarray(aucs), 100.0 * np.asarray(accs)
    ddof = 1 if len(aucs_a) > 1 else 0
    return {
        "auc": float(aucs_a.mean()),
        "acc": float(accs_a.mean()),
        "auc_std": float(aucs_a.std(ddof=ddof)),
        "acc_std": float(accs_a.std(ddof=ddof)),
    }
