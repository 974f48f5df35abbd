"""The SVC membership-inference attack ("MIA-efficacy", "MIS"; docs/metrics.md, section 4).

Shadow members (a subset of D_R of size |D_T|, label 1) and shadow non-members (D_T, label
0) train ``SVC(C=3, kernel="rbf", gamma="auto")`` on one feature of the softmax output; the
efficacy is the share of targets (D_F) the SVC predicts as non-members, **in percent**.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from lightning_unlearn.metrics.functional._checks import (
    LOG_FLOOR,
    as_tensor,
    check_labels,
    check_nonempty,
    check_probs,
)

Feature = Literal["correctness", "confidence", "entropy", "m_entropy", "prob"]
FEATURES: tuple[str, ...] = ("correctness", "confidence", "entropy", "m_entropy", "prob")
ShadowStrategy = Literal["random", "first"]


def _log(x: torch.Tensor) -> torch.Tensor:
    """log with the library's floor: log(max(x, 1e-30)) (docs/metrics.md, section 1)."""
    return torch.log(x.clamp(min=LOG_FLOOR))


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``H(p) = -sum_i p_i log p_i`` of each row of ``probs`` (N, K); returns (N,).

    Example:
        >>> entropy(torch.tensor([[0.5, 0.5]]))
        tensor([0.6931])
    """
    probs = check_probs(as_tensor(probs, "probs"))
    return -(probs * _log(probs)).sum(1)


def modified_entropy(probs: torch.Tensor, labels: torch.Tensor, *, legacy_m_entropy: bool = False) -> torch.Tensor:
    """Modified entropy of Song & Mittal (USENIX Security 2021)::

        M(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)

    with every log floored at 1e-30.

    ``legacy_m_entropy=True`` reproduces the widely copied buggy version (SalUn,
    Unlearn-Sparse, AMUN ``evaluation/SVC_MIA.py``; docs/metrics.md, section 4, "The modified-entropy bug"): it takes ``log p`` where
    ``log(1 - p)`` is meant and indexes whole columns ``[:, labels]``, giving
    ``-sum_i w_i log p_i`` with ``w_i = 1 - p_i`` for every class i present anywhere in
    ``labels`` and ``w_i = p_i`` otherwise. For reproduction of published code only.

    Args:
        probs: ``(N, K)`` probabilities. labels: ``(N,)`` int64 labels.

    Returns:
        ``(N,)`` float.

    Example:
        >>> p = torch.tensor([[0.7, 0.2, 0.1]])
        >>> round(float(modified_entropy(p, torch.tensor([0]))), 4)  # 0.3*0.3567 + 0.2*0.2231 + 0.1*0.1054
        0.1622
    """
    probs = check_probs(as_tensor(probs, "probs"))
    labels = check_labels(as_tensor(labels, "labels"), probs.shape[0], probs.shape[1]).to(probs.device)
    if legacy_m_entropy:
        cols = torch.unique(labels)
        weight = probs.clone()
        weight[:, cols] = 1.0 - probs[:, cols]
        return -(weight * _log(probs)).sum(1)
    rows = torch.arange(probs.shape[0], device=probs.device)
    p_y = probs[rows, labels]
    others = probs * _log(1.0 - probs)
    others[rows, labels] = 0.0
    return -(1.0 - p_y) * _log(p_y) - others.sum(1)


def mia_features(
    probs: torch.Tensor, labels: torch.Tensor, feature: Feature = "confidence", *, legacy_m_entropy: bool = False
) -> torch.Tensor:
    """The SVC attack's input: ``(N, 1)`` for the scalar features, ``(N, K)`` for ``"prob"``.

    ``correctness`` = 1[argmax p = y]; ``confidence`` = p_y; ``entropy`` = H(p);
    ``m_entropy`` = :func:`modified_entropy`; ``prob`` = p.
    """
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
    probs = check_probs(as_tensor(probs, "probs"))
    labels = check_labels(as_tensor(labels, "labels"), probs.shape[0], probs.shape[1]).to(probs.device)
    rows = torch.arange(probs.shape[0], device=probs.device)
    if feature == "correctness":
        f = (probs.argmax(1) == labels).to(probs.dtype)
    elif feature == "confidence":
        f = probs[rows, labels]
    elif feature == "entropy":
        f = entropy(probs)
    elif feature == "m_entropy":
        f = modified_entropy(probs, labels, legacy_m_entropy=legacy_m_entropy)
    else:
        return probs
    return f[:, None]


def select_shadow_members(
    remain_index: torch.Tensor,
    n_members: int,
    *,
    shadow_member_strategy: ShadowStrategy = "random",
    seed: int = 0,
) -> torch.Tensor:
    """Positions (into ``remain_index``) of the shadow members: ``n_members`` of D_R (docs/metrics.md, section 4, "Data").

    The remain indices are sorted first, so the choice depends only on the *set* of indices and
    the seed, never on the order records arrived in (gather order under DDP). ``"random"``
    draws ``n_members`` of them with ``torch.randperm`` on a ``torch.Generator`` seeded with
    ``seed`` (identical on every rank); ``"first"`` takes the smallest ``n_members`` indices
    (SalUn's choice, as D_R is stored in index order there).

    Returns:
        ``(n_members,)`` int64 positions, in increasing index order.

    Raises:
        ValueError: ``n_members`` larger than ``len(remain_index)`` or < 1; unknown strategy.
    """
    remain_index = as_tensor(remain_index, "remain_index")
    if shadow_member_strategy not in ("random", "first"):
        raise ValueError(f"shadow_member_strategy must be 'random' or 'first', got {shadow_member_strategy!r}")
    n = remain_index.numel()
    if not 1 <= n_members <= n:
        raise ValueError(f"need 1 <= n_members <= |D_R| = {n} shadow members, got n_members={n_members}")
    order = torch.argsort(remain_index.cpu(), stable=True)
    if shadow_member_strategy == "first":
        chosen = torch.arange(n_members)
    else:
        gen = torch.Generator().manual_seed(int(seed))
        chosen = torch.randperm(n, generator=gen)[:n_members].sort().values
    return order[chosen].to(remain_index.device)


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


def mia_efficacy(
    shadow_in_probs: torch.Tensor,
    shadow_in_labels: torch.Tensor,
    shadow_out_probs: torch.Tensor,
    shadow_out_labels: torch.Tensor,
    target_probs: torch.Tensor,
    target_labels: torch.Tensor,
    feature: Feature = "confidence",
    *,
    legacy_m_entropy: bool = False,
) -> float:
    """SVC MIA-efficacy, **in percent** (0..100): the share of targets predicted non-member.

    Fits ``sklearn.svm.SVC(C=3, kernel="rbf", gamma="auto")`` (``probability=False``,
    deterministic) on ``feature`` of the shadow members (label 1) and non-members (label 0),
    predicts the targets, and returns ``100 * (1 - mean(prediction))`` (SalUn / ℓ1-sparse /
    AMUN ``SVC_MIA.py``; the papers' "MIA"/"MIS" is the ``confidence`` entry). Higher means more
    forget samples look unseen; the ideal is the retrained model's value (12.53 on CIFAR-10 at
    10% random forgetting).

    Args:
        shadow_in_probs, shadow_in_labels: ``(N_in, K)`` softmax outputs and ``(N_in,)`` labels of
            shadow members (a subset of D_R of size |D_T|, see :func:`select_shadow_members`).
        shadow_out_probs, shadow_out_labels: the same for shadow non-members (D_T).
        target_probs, target_labels: the same for the targets (D_F).
        feature: ``"correctness" | "confidence" | "entropy" | "m_entropy" | "prob"``.
        legacy_m_entropy: the published buggy modified entropy (see :func:`modified_entropy`).

    Returns:
        Percent of targets predicted non-member.

    Raises:
        ValueError: empty sets, mismatched shapes or class counts, probabilities outside
            [0, 1], labels out of range, unknown feature.
    """
    from sklearn.svm import SVC

    sets = []
    k = None
    for p, y, name in (
        (shadow_in_probs, shadow_in_labels, "shadow_in"),
        (shadow_out_probs, shadow_out_labels, "shadow_out"),
        (target_probs, target_labels, "target"),
    ):
        p = check_probs(as_tensor(p, f"{name}_probs"), f"{name}_probs")
        check_nonempty(p, f"{name}_probs")
        if k is not None and p.shape[1] != k:
            raise ValueError(f"{name}_probs has {p.shape[1]} classes, the shadow members have {k}")
        k = p.shape[1]
        y = check_labels(as_tensor(y, f"{name}_labels"), p.shape[0], k, f"{name}_labels")
        sets.append(_to_numpy(mia_features(p, y, feature, legacy_m_entropy=legacy_m_entropy)))
    f_in, f_out, f_target = sets
    x = np.concatenate([f_in, f_out])
    y = np.concatenate([np.ones(len(f_in)), np.zeros(len(f_out))])
    clf = SVC(C=3, kernel="rbf", gamma="auto")
    clf.fit(x, y)
    return float(100.0 * (1.0 - clf.predict(f_target).mean()))
