"""MIA-NN: the neighbour-class attack for class unlearning, under two protocols.

Source. *On the Necessity of Output Distribution Reweighting for Effective Class Unlearning*
(Ebrahimpour-Boroojeny, Wang, Sundaram; arXiv 2506.20893), published as *Unlearning Isn't
Forgetting: Revealing Hidden Leakage in Class Unlearning Evaluations* (ICML 2026, PMLR 306,
where the attack is renamed CMIA, "Class Membership Inference Attack"). Only the abstracts and
the ICLR 2026 reviews of the same work (OpenReview forum ``pwkZFrmSS8``, submitted as *Silent
Neighbors, Loud Secrets*) could be read; the paper's body and its listed code
(``CrowdDynamicsLab/ICML_TREW``) could not. What they state:

* abstracts: the attack "uses the probabilities the model assigns to neighboring classes to
  detect unlearned samples";
* a reviewer: it "trains per-class discriminators on retrain (and then on the unlearned model)
  and computes their accuracy on forget-class test samples to quantify a gap to retrain. This
  is not a per-example membership decision [...]; it is a distributional test of whether
  forget-class behavior matches retrain";
* another reviewer: the nearest neighbour class comes from "statistics from multiple retrained
  models", and the attack "trains an SVM on logits".

**Membership protocol** (:func:`mia_nn`, the library's original reading). A discriminator is
fitted, by cross-validation on the *audited* model's outputs, to tell forget-class training
samples D_f (members that were unlearned, label 1) from forget-class test samples T_f (never
members, label 0). Features: the neighbour-class and forget-class probabilities. A retrained
model scores about 50; the audit reports the gap to the retrained models' score.

**Retrain protocol** (:func:`fit_retrain_discriminator`, :func:`mia_nn_retrain`; the paper's
protocol as the reviewers describe it). A discriminator is fitted **once, on the retrained
models' outputs only**, then applied unchanged to every audited model; the reported number is
the percentage of forget-class samples it recognises as forget-class (its accuracy on them),
and its gap to the same percentage for the retrained models. The sources do not say which
samples the discriminator is fitted on; the library's reading (the positives and negatives are
selectable, see :func:`fit_retrain_discriminator`):

* positives: forget-class *training* images D_f, as the retrained models see them (they never
  trained on them, so D_f and T_f are exchangeable for them);
* negatives: training images of the neighbour classes (``negatives="neighbors"``, default) or
  of every remaining class (``"remain"``, the one-vs-rest reading of "per-class discriminators");
* evaluation: forget-class *test* images T_f (never in the fit, so the retrained models' own
  value is a held-out accuracy), and D_f as a second view.

A retrained model sends forget-class inputs to its neighbour classes with a characteristic,
intermediate confidence; a method that fits its own per-input targets on D_f (random labels,
ascent, uniform) moves that mass differently and is recognised more or less often than the
retrained models are.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lightning_unlearn.metrics.functional._checks import (
    as_tensor,
    check_binary,
    check_finite,
    check_float,
    check_labels,
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
    """The K neighbour classes of ``forget_class``: where retrained models send its samples.

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
    """Cross-validated MIA-NN audit, membership protocol; values **in percent**.

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


# ============================================================================ retrain protocol
RetrainFeature = Literal["neighbor_prob", "neighbor_logit", "prob", "logit"]
Negatives = Literal["neighbors", "remain"]
RETRAIN_FEATURES = ("neighbor_prob", "neighbor_logit", "prob", "logit")
NEGATIVES = ("neighbors", "remain")


def retrain_protocol_features(
    logits: torch.Tensor, neighbors: torch.Tensor | list[int], *, feature: RetrainFeature = "neighbor_prob"
) -> torch.Tensor:
    """The retrain protocol's features of each sample, from a model's logits.

    ``"neighbor_prob"``: ``[p(n_1|x), ..., p(n_K|x)]`` (softmax over all C classes, then the
    neighbour columns; the abstracts' "probabilities the model assigns to neighboring classes");
    ``"neighbor_logit"``: ``[z_{n_1}(x), ..., z_{n_K}(x)]``; ``"prob"``: the whole softmax vector;
    ``"logit"``: the whole logit vector z(x) (a reviewer's "SVM on logits").

    Args:
        logits: ``(N, C)`` or ``(R, N, C)`` float logits.
        neighbors: the K neighbour classes (used by the ``neighbor_*`` features).

    Returns:
        ``(N, F)`` (or ``(R, N, F)``) float64, F = K or C.
    """
    z = as_tensor(logits, "logits")
    check_float(z, "logits")
    if z.ndim not in (2, 3):
        raise ValueError(f"logits must have shape (N, C) or (R, N, C), got shape {tuple(z.shape)}")
    check_finite(z, "logits")
    if feature not in RETRAIN_FEATURES:
        raise ValueError(f"feature must be one of {', '.join(map(repr, RETRAIN_FEATURES))}, got {feature!r}")
    c = z.shape[-1]
    cols = [int(n) for n in as_tensor(neighbors, "neighbors").reshape(-1).tolist()]
    if feature.startswith("neighbor"):
        if not cols or any(not 0 <= j < c for j in cols) or len(set(cols)) != len(cols):
            raise ValueError(f"neighbors must be distinct classes in [0, {c}), got {cols}")
    z = z.double()
    if feature == "logit":
        return z
    if feature == "neighbor_logit":
        return z[..., cols]
    p = torch.softmax(z, -1)
    return p if feature == "prob" else p[..., cols]


def _negative_mask(labels: torch.Tensor, forget_class: int, neighbors: list[int], negatives: str) -> torch.Tensor:
    if negatives == "neighbors":
        return torch.isin(labels, torch.tensor(neighbors, dtype=labels.dtype, device=labels.device))
    return labels != forget_class


@dataclass(frozen=True)
class RetrainDiscriminator:
    """A discriminator fitted once on retrained models' outputs; applied unchanged to any model.

    Made by :func:`fit_retrain_discriminator`. Its verdict on a sample is "a forget-class
    sample, as the retrained models see one" (1) or "a sample of the negative classes" (0).

    Attributes:
        forget_class, neighbors: f and the neighbour classes n_1..n_K.
        feature, negatives, classifier: the settings it was fitted with.
        n_per_label: rows per label in the fit (after balancing), over all retrained models.
        n_models: number of retrained models whose outputs were pooled.
        pipeline: the fitted ``StandardScaler`` + classifier (sklearn).
    """

    forget_class: int
    neighbors: tuple[int, ...]
    feature: str
    negatives: str
    classifier: str
    n_per_label: int
    n_models: int
    pipeline: Any = field(repr=False, compare=False)

    def features(self, logits: torch.Tensor) -> np.ndarray:
        """``(N, F)`` float64 features of ``(N, C)`` logits."""
        return retrain_protocol_features(logits, list(self.neighbors), feature=self.feature).detach().cpu().numpy()  # type: ignore[arg-type]

    def decision(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N,)`` float64 ``decision_function`` values (positive: forget-class verdict)."""
        return torch.from_numpy(np.asarray(self.pipeline.decision_function(self.features(logits)), dtype=np.float64))

    def detects(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: the samples whose verdict is "forget class"."""
        return torch.from_numpy(np.asarray(self.pipeline.predict(self.features(logits))) == 1)

    def detection_rate(self, logits: torch.Tensor) -> float:
        """Percentage of the rows of ``(N, C)`` logits detected as forget-class (``nan`` for N = 0).

        Applied to the logits of forget-class samples this is the protocol's accuracy.
        """
        z = as_tensor(logits, "logits")
        check_ndim(z, 2, "logits", "(N, C)")
        if z.shape[0] == 0:
            return float("nan")
        return float(self.detects(z).double().mean()) * 100.0


def fit_retrain_discriminator(
    retrain_logits: torch.Tensor,
    labels: torch.Tensor,
    forget_class: int,
    neighbors: torch.Tensor | list[int],
    *,
    feature: RetrainFeature = "neighbor_prob",
    negatives: Negatives = "neighbors",
    classifier: Classifier = "svc",
    seed: int = 0,
) -> RetrainDiscriminator:
    """Fit the retrain protocol's discriminator on the outputs of models retrained without ``forget_class``.

    Rows: every (retrained model j, sample i) pair, pooled over the R models. Positives: samples
    with ``labels == forget_class``; negatives: samples of the neighbour classes
    (``negatives="neighbors"``, default) or of every other class (``"remain"``). The larger
    label is subsampled to the size of the smaller with a ``torch.Generator`` seeded by
    ``seed`` (positions taken in (model, sample) order), then :func:`make_discriminator`
    (``StandardScaler`` + ``SVC(kernel="rbf", C=3, gamma="auto")``, or logistic regression) is
    fitted. Nothing of the audited models enters the fit.

    Pass the samples the discriminator should learn from, e.g. the *training* images of the
    forget class and of its neighbours (the library's reading of the paper), and keep the
    forget-class test images for evaluation.

    Args:
        retrain_logits: ``(R, N, C)`` (or ``(N, C)`` for one model) logits of the retrained models.
        labels: ``(N,)`` true classes of the N samples.
        forget_class: f. neighbors: the K neighbour classes (:func:`mia_nn_neighbors`).
        feature: see :func:`retrain_protocol_features`.

    Returns:
        The fitted :class:`RetrainDiscriminator`.

    Raises:
        ValueError: bad shapes or options, no positive or no negative sample.
    """
    z = as_tensor(retrain_logits, "retrain_logits")
    if z.ndim == 2:
        z = z[None]
    check_ndim(z, 3, "retrain_logits", "(R, N, C) or (N, C)")
    r, n, c = z.shape
    y = as_tensor(labels, "labels").to(z.device)
    y = check_labels(y, n, c, "labels")
    f = int(forget_class)
    if not 0 <= f < c:
        raise ValueError(f"forget_class must lie in [0, {c}), got {forget_class!r}")
    nb = [int(v) for v in as_tensor(neighbors, "neighbors").reshape(-1).tolist()]
    if not nb or f in nb or len(set(nb)) != len(nb) or any(not 0 <= v < c for v in nb):
        raise ValueError(f"neighbors must be distinct classes in [0, {c}) other than forget_class {f}, got {nb}")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(map(repr, NEGATIVES))}, got {negatives!r}")
    if classifier not in ("svc", "logistic"):
        raise ValueError(f"classifier must be 'svc' or 'logistic', got {classifier!r}")
    pos, neg = y == f, _negative_mask(y, f, nb, negatives)
    if not bool(pos.any()) or not bool(neg.any()):
        raise ValueError(
            f"the retrain protocol needs samples of the forget class {f} and of the negative classes ({negatives}); "
            f"got {int(pos.sum())} and {int(neg.sum())}"
        )
    keep = pos | neg
    feats = retrain_protocol_features(z[:, keep], nb, feature=feature).reshape(r * int(keep.sum()), -1).detach().cpu().numpy()
    is_pos = pos[keep].repeat(r).cpu().numpy().astype(np.int64)
    rows = _balanced_subsample(is_pos, int(seed))
    xs, ys = feats[rows], is_pos[rows]
    if np.all(xs == xs[:1]):
        warnings.warn("retrain-protocol features are constant: the discriminator cannot separate anything", stacklevel=2)
    pipe = make_discriminator(classifier).fit(xs, ys)
    return RetrainDiscriminator(f, tuple(nb), feature, negatives, classifier, int(len(rows) // 2), r, pipe)


RETRAIN_KEYS = ("acc_test", "acc_train", "retrain_acc_test", "retrain_acc_train", "acc_test_gap", "acc_train_gap")


def mia_nn_retrain(
    logits: torch.Tensor,
    retrain_logits: torch.Tensor,
    labels: torch.Tensor,
    is_train: torch.Tensor,
    forget_class: int,
    *,
    neighbors: torch.Tensor | list[int] | None = None,
    k: int = 1,
    feature: RetrainFeature = "neighbor_prob",
    negatives: Negatives = "neighbors",
    classifier: Classifier = "svc",
    seed: int = 0,
    leave_out: int | None = None,
) -> dict[str, float]:
    """MIA-NN under the retrain protocol, end to end; values **in percent**.

    1. Neighbours (unless given): :func:`mia_nn_neighbors` of the retrained models' softmax on
       D_f (the forget-class training samples), ``k`` of them.
    2. Fit :func:`fit_retrain_discriminator` on the retrained models' logits of the *training*
       samples (``is_train``): positives D_f, negatives per ``negatives``.
    3. ``acc_test`` / ``acc_train``: the percentage of T_f / D_f that the discriminator detects
       as forget-class on the audited ``logits``.
    4. The retrain reference: ``retrain_acc_test`` is the mean over the retrained models of the
       same percentage on their T_f (held out from the fit); ``retrain_acc_train`` is the mean
       over models j of the percentage on model j's D_f under a discriminator fitted on the other
       models only (their D_f rows were in the fit; ``nan`` with a single retrained model).
    5. Gaps: ``|acc - retrain_acc|`` (lower is better; 0 means "indistinguishable from retrain").

    Args:
        logits: ``(N, C)`` logits of the audited model on the N samples (eval mode).
        retrain_logits: ``(R, N, C)`` logits of R models retrained without ``forget_class``.
        labels: ``(N,)`` true classes. is_train: ``(N,)`` 1/True for training-split samples.
        forget_class: f.
        neighbors: the neighbour classes; default: the ``k`` from step 1.
        feature, negatives, classifier, seed: see :func:`fit_retrain_discriminator`.
        leave_out: when the audited model is retrained model j itself, ``j``: it is dropped from
            the references (neighbours, fit and reference values), which need R >= 2 then.

    Returns:
        ``{"acc_test", "acc_train", "retrain_acc_test", "retrain_acc_train", "acc_test_gap",
        "acc_train_gap"}``; ``nan`` where a set is empty or a reference is unavailable.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.arange(200) % 4                     # 4 classes, forget class 0
        >>> ref = torch.randn(2, 200, 4, generator=g)
        >>> ref[:, y == 0, 1] += 1.0                       # the retrained models send class 0 to class 1 ...
        >>> ref[:, y == 1, 1] += 4.0                       # ... less confidently than true class-1 samples
        >>> out = mia_nn_retrain(ref[0], ref, y, torch.arange(200) < 150, 0, leave_out=0)
        >>> sorted(out)[:2], out["acc_test"] == out["acc_test"]
        (['acc_test', 'acc_test_gap'], True)
    """
    z = as_tensor(logits, "logits")
    check_float(z, "logits")
    check_ndim(z, 2, "logits", "(N, C)")
    check_finite(z, "logits")
    refs = as_tensor(retrain_logits, "retrain_logits")
    if refs.ndim == 2:
        refs = refs[None]
    check_ndim(refs, 3, "retrain_logits", "(R, N, C) or (N, C)")
    if tuple(refs.shape[1:]) != tuple(z.shape):
        raise ValueError(f"retrain_logits must hold (R, N, C) = (R, {z.shape[0]}, {z.shape[1]}) logits like logits, got shape {tuple(refs.shape)}")
    n, c = z.shape
    y = check_labels(as_tensor(labels, "labels"), n, c, "labels").cpu()
    tr = check_binary(as_tensor(is_train, "is_train"), n, "is_train").cpu().bool()
    f = int(forget_class)
    if not 0 <= f < c:
        raise ValueError(f"forget_class must lie in [0, {c}), got {forget_class!r}")
    if leave_out is not None:
        if refs.shape[0] < 2 or not 0 <= int(leave_out) < refs.shape[0]:
            raise ValueError(f"leave_out must index one of R={refs.shape[0]} >= 2 retrained models, got {leave_out!r}")
        refs = torch.cat([refs[: int(leave_out)], refs[int(leave_out) + 1 :]])
    refs, z = refs.cpu(), z.cpu()
    d_f, t_f = tr & (y == f), ~tr & (y == f)
    if not bool(d_f.any()):
        raise ValueError(f"the retrain protocol needs forget-class {f} training samples (is_train & labels == {f}); got none")
    if neighbors is None:
        nb = mia_nn_neighbors(torch.softmax(refs[:, d_f].double(), -1), f, k).tolist()
    else:
        nb = [int(v) for v in as_tensor(neighbors, "neighbors").reshape(-1).tolist()]
    opts = dict(feature=feature, negatives=negatives, classifier=classifier, seed=seed)
    disc = fit_retrain_discriminator(refs[:, tr], y[tr], f, nb, **opts)
    out = {"acc_test": disc.detection_rate(z[t_f]), "acc_train": disc.detection_rate(z[d_f])}
    out["retrain_acc_test"] = float(np.mean([disc.detection_rate(refs[j][t_f]) for j in range(refs.shape[0])]))
    if refs.shape[0] >= 2:
        loo = []
        for j in range(refs.shape[0]):
            others = torch.cat([refs[:j], refs[j + 1 :]])
            loo.append(fit_retrain_discriminator(others[:, tr], y[tr], f, nb, **opts).detection_rate(refs[j][d_f]))
        out["retrain_acc_train"] = float(np.mean(loo))
    else:
        out["retrain_acc_train"] = float("nan")
    out["acc_test_gap"] = abs(out["acc_test"] - out["retrain_acc_test"])
    out["acc_train_gap"] = abs(out["acc_train"] - out["retrain_acc_train"])
    return {key: float(out[key]) for key in RETRAIN_KEYS}
