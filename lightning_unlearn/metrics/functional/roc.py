"""ROC-AUC and TPR at a low FPR through torchmetrics' functional ROC/AUROC, in percent."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc, binary_roc

from lightning_unlearn.metrics.functional._checks import as_tensor, check_binary, check_finite, check_ndim, check_nonempty


def _roc_arg_validation(scores, labels) -> tuple[torch.Tensor, torch.Tensor]:
    scores, labels = as_tensor(scores, "scores"), as_tensor(labels, "labels")
    check_ndim(scores, 1, "scores", "(N,)")
    check_nonempty(scores, "scores")
    if scores.is_floating_point():
        check_finite(scores, "scores")
    labels = check_binary(labels, scores.numel(), "labels").to(scores.device)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.numel():
        raise ValueError(f"labels must contain both classes (1 = member, 0 = non-member), got {n_pos} of {labels.numel()} positive")
    return scores, labels


def _to_unit_interval(scores: torch.Tensor) -> torch.Tensor:
    """Dense ranks scaled into [0, 1]: the same order and ties as ``scores``.

    torchmetrics applies a sigmoid to scores outside [0, 1], which in float32 saturates and can
    merge distinct large scores (e.g. SVM decision values) into ties; ranks are exact.
    """
    uniq, inv = torch.unique(scores, sorted=True, return_inverse=True)
    return inv.double() / max(uniq.numel() - 1, 1)


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve **in percent** (50 = chance), higher score = more likely member.

    Args:
        scores: ``(N,)`` attack scores (any real values; only their order matters).
        labels: ``(N,)`` 1 = member (positive), 0 = non-member.

    Example:
        >>> roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        75.0
    """
    scores, labels = _roc_arg_validation(scores, labels)
    return float(binary_auroc(_to_unit_interval(scores), labels, thresholds=None)) * 100.0


def tpr_at_fpr(scores: torch.Tensor, labels: torch.Tensor, fpr: float = 0.01) -> float:
    """TPR at a low FPR, **in percent**: the largest TPR over ROC points with FPR <= ``fpr``.

    ``fpr`` is a fraction (0.01 = 1%, 0.001 = 0.1%, 0 allowed). With few negatives the value is
    noisy: 0.1% of 5,000 negatives is 5 false positives.
    """
    scores, labels = _roc_arg_validation(scores, labels)
    if not 0.0 <= float(fpr) <= 1.0:
        raise ValueError(f"fpr must be a fraction in [0, 1], got {fpr!r}")
    fprs, tprs, _ = binary_roc(_to_unit_interval(scores), labels, thresholds=None)
    # torchmetrics returns float32 rates; recover the exact integer counts so that the FPR
    # boundary (e.g. exactly 1% of the negatives) is decided without rounding error.
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    false_pos = torch.round(fprs.double() * n_neg)
    true_pos = torch.round(tprs.double() * n_pos)
    ok = false_pos <= float(fpr) * n_neg + 1e-9
    return float(true_pos[ok].max() / n_pos) * 100.0
