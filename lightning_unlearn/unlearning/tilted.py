"""The TRW tilted target and its losses (library formulation, docs/methods/trw.md, sections 2-3): plain functions.

For a forget-class input ``x`` with original logits ``z_o(x)`` and similarity row ``s``
(``s_k = 0`` on the forgotten classes ``F``):

    t(k|x) = p_o(k|x) exp(beta s_k) / sum_{j not in F} p_o(j|x) exp(beta s_j)   for k not in F,
    t(k|x) = 0                                                                   for k in F,

computed in log space as ``log t = log_softmax(z_o + beta s)`` with the entries of ``F`` masked
to ``-inf`` (renormalising ``p_o`` over the kept classes first changes nothing).

``t`` is the information projection of ``p_o(.|x)``: it minimises ``KL(q || p_o)`` over the ``q``
with ``q_F = 0`` and ``E_q[s] = c``, with ``c = E_t[s]`` and ``beta`` the Lagrange multiplier.
Since ``d E_t[s] / d beta = Var_t(s) >= 0``, ``c`` and ``beta >= 0`` correspond one to one on
``[E_{p~_o}[s], max_k s_k)`` (``p~_o``: ``p_o`` renormalised over the kept classes), so a requested
expected similarity ``c`` is turned into ``beta`` by bisection (:func:`solve_beta`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from lightning_unlearn.data.forget import check_forget_classes

Reduction = Literal["mean", "sum", "none"]
MAX_BETA = 1e3


def _as_mask(forget: "torch.Tensor | Sequence[int]", num_classes: int, device: torch.device) -> torch.Tensor:
    if isinstance(forget, torch.Tensor) and forget.dtype == torch.bool:
        if forget.shape != (num_classes,):
            raise ValueError(f"forget mask must have shape ({num_classes},), got {tuple(forget.shape)}")
        mask = forget.to(device)
    else:
        classes = list(check_forget_classes(forget, num_classes))
        mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
        mask[classes] = True
    if not mask.any():
        raise ValueError("the tilted target needs at least one forget class")
    if mask.all():
        raise ValueError(f"forgetting all {num_classes} classes leaves no class to put the target's mass on")
    return mask


def similarity_rows(similarity: torch.Tensor, labels: torch.Tensor, forget_classes: Sequence[int]) -> torch.Tensor:
    """Each forget-class input's similarity row: ``similarity[i]`` for label ``F[i]``.

    Args:
        similarity: ``(len(F), K)`` (one row per forget class) or ``(K,)`` (one row for all).
        labels: ``(B,)`` labels, each in ``forget_classes``.

    Returns:
        ``(B, K)``.
    """
    if similarity.ndim == 1:
        return similarity.unsqueeze(0).expand(len(labels), -1)
    classes = torch.as_tensor(list(forget_classes), device=labels.device)
    if similarity.shape[0] != len(classes):
        raise ValueError(f"similarity has {similarity.shape[0]} rows for {len(classes)} forget classes")
    match = labels.unsqueeze(1) == classes.unsqueeze(0)
    if not bool(match.any(1).all()):
        bad = labels[~match.any(1)][0].item()
        raise ValueError(f"label {bad} is not a forget class {tuple(int(k) for k in forget_classes)}")
    return similarity.to(labels.device)[match.float().argmax(1)]


def trw_log_target(
    teacher_logits: torch.Tensor,
    similarity: torch.Tensor,
    beta: "float | torch.Tensor",
    forget: "torch.Tensor | Sequence[int]",
) -> torch.Tensor:
    """``log t = log_softmax(z_o + beta s)`` with the forgotten classes at ``-inf``.

    Args:
        teacher_logits: ``(B, K)`` logits ``z_o`` of the frozen original model.
        similarity: ``(K,)`` or ``(B, K)`` similarity ``s`` (entries on ``F`` are ignored).
        beta: a scalar or a ``(B,)`` tensor, ``>= 0`` (``0`` gives ``p_o`` renormalised over the kept classes).
        forget: the forgotten classes ``F``, as indices or a ``(K,)`` bool mask.

    Returns:
        ``(B, K)`` log-probabilities in the dtype of ``teacher_logits`` (at least ``float32``); each
        row's ``exp`` sums to one and is exactly zero on ``F``.
    """
    if teacher_logits.ndim != 2:
        raise ValueError(f"teacher_logits must be (B, K), got shape {tuple(teacher_logits.shape)}")
    dtype = torch.promote_types(teacher_logits.dtype, torch.float32)
    z = teacher_logits.to(dtype)
    mask = _as_mask(forget, z.shape[1], z.device)
    s = similarity.to(device=z.device, dtype=dtype)
    beta_t = torch.as_tensor(beta, device=z.device, dtype=dtype)
    if beta_t.ndim == 1:
        beta_t = beta_t.unsqueeze(1)
    if bool((beta_t < 0).any()):
        raise ValueError("beta must be >= 0 (a negative tilt moves mass away from similar classes)")
    tilted = (z + beta_t * s).masked_fill(mask, float("-inf"))
    return torch.log_softmax(tilted, dim=1)


def trw_target(
    teacher_logits: torch.Tensor, similarity: torch.Tensor, beta: "float | torch.Tensor", forget: "torch.Tensor | Sequence[int]"
) -> torch.Tensor:
    """The tilted target ``t`` ``(B, K)``: ``exp`` of :func:`trw_log_target`."""
    return trw_log_target(teacher_logits, similarity, beta, forget).exp()


def expected_similarity(log_target: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """``E_t[s] = sum_k t_k s_k`` per row, ``(B,)`` (masked entries of ``t`` are exactly 0)."""
    return (log_target.exp() * similarity.to(log_target)).sum(-1)


def solve_beta(
    teacher_logits: torch.Tensor,
    similarity: torch.Tensor,
    c: float,
    forget: "torch.Tensor | Sequence[int]",
    *,
    per_sample: bool = False,
    max_beta: float = MAX_BETA,
    max_iter: int = 60,
    tol: float = 1e-6,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``beta >= 0`` such that ``E_t[s] = c``: per input, or for the mean over the inputs.

    Vectorised bisection on ``[0, max_beta]`` in ``float64``, for ``max_iter`` iterations or until
    ``|E_t[s] - c| < tol``. Rules (docs/methods/trw.md, section 2): if ``c <= E_{p~_o}[s]`` (the value at
    ``beta = 0``) the answer is ``0``; if ``c >= max s`` (unreachable: the supremum as
    ``beta -> inf``) it is ``max_beta`` with a warning; ``beta`` is never negative.

    Args:
        teacher_logits: ``(B, K)`` original logits.
        similarity: ``(K,)`` or ``(B, K)``.
        c: the requested expected similarity.
        forget: the forgotten classes (indices or a ``(K,)`` bool mask).
        per_sample: ``True``: one ``beta`` per input (the exact per-input I-projection);
            ``False``: one ``beta`` for the mean of ``E_t[s]`` over the inputs.
        all_reduce: sums a tensor over processes (DDP), for a ``beta`` shared by every rank in
            the mean mode; every rank then takes identical bisection steps.

    Returns:
        ``(B,)`` ``float64`` when ``per_sample``, else a 0-d ``float64`` tensor.
    """
    if not max_beta > 0:
        raise ValueError(f"max_beta must be positive, got {max_beta}")
    z = teacher_logits.detach().double()
    s = similarity.detach().to(device=z.device, dtype=torch.float64)
    mask = _as_mask(forget, z.shape[1], z.device)
    s_rows = s.unsqueeze(0).expand(z.shape[0], -1) if s.ndim == 1 else s
    s_max = s_rows.masked_fill(mask, float("-inf")).max(1).values  # (B,)

    def values(beta: torch.Tensor) -> torch.Tensor:
        return expected_similarity(trw_log_target(z, s_rows, beta, mask), s_rows)

    reduce = all_reduce or (lambda t: t)
    if per_sample:
        count = None
        def f(beta: torch.Tensor) -> torch.Tensor:
            return values(beta)
        shape = (z.shape[0],)
        lower, upper = values(torch.zeros(shape, dtype=torch.float64, device=z.device)), s_max
    else:
        count = reduce(torch.tensor(float(z.shape[0]), dtype=torch.float64, device=z.device))
        def f(beta: torch.Tensor) -> torch.Tensor:
            return (reduce(values(beta.expand(z.shape[0])).sum()) / count).reshape(1)
        shape = (1,)
        lower = f(torch.zeros(shape, dtype=torch.float64, device=z.device))
        upper = (reduce(s_max.sum()) / count).reshape(1)

    beta = torch.zeros(shape, dtype=torch.float64, device=z.device)
    at_zero = c <= lower
    unreachable = (c >= upper) & ~at_zero
    if bool(unreachable.any()):
        warnings.warn(
            f"requested expected similarity c={c} is not below the largest reachable value "
            f"({float(upper[unreachable].min()):.6g}); using beta={max_beta}",
            stacklevel=2,
        )
    active = ~(at_zero | unreachable)
    lo = torch.zeros(shape, dtype=torch.float64, device=z.device)
    hi = torch.full(shape, float(max_beta), dtype=torch.float64, device=z.device)
    beta = torch.where(unreachable, hi, beta)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        mid = 0.5 * (lo + hi)
        val = f(mid)
        below = val < c
        lo = torch.where(active & below, mid, lo)
        hi = torch.where(active & ~below, mid, hi)
        beta = torch.where(active, mid, beta)
        active = active & ((val - c).abs() >= tol)
    return beta if per_sample else beta[0]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """``-sum_k t_k log p_theta(k|x)`` with ``p_theta = softmax(logits)``; entries with ``t_k = 0`` contribute nothing.

    Args:
        logits: ``(B, K)`` student logits.
        target: ``(B, K)`` target probabilities (rows summing to one).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    t = target.to(logp)
    per = -torch.where(t > 0, t * logp, torch.zeros_like(logp)).sum(-1)
    return _reduce(per, reduction)


def tilted_kl(logits: torch.Tensor, log_target: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """``KL(t || p_theta) = sum_k t_k (log t_k - log p_theta(k|x))``, with ``xlogy`` so ``t_k = 0`` adds 0.

    Equals :func:`soft_cross_entropy` minus the target's entropy (a constant in ``theta``).

    Args:
        logits: ``(B, K)`` student logits.
        log_target: ``(B, K)`` log target (``-inf`` where ``t = 0``), e.g. :func:`trw_log_target`.
    """
    t = log_target.float().exp()
    per = torch.special.xlogy(t, t).sum(-1) + soft_cross_entropy(logits, t, reduction="none")
    return _reduce(per, reduction)


def trw_loss(
    logits_forget: torch.Tensor,
    log_target: torch.Tensor,
    logits_remain: torch.Tensor | None = None,
    labels_remain: torch.Tensor | None = None,
    *,
    forget_weight: float = 1.0,
) -> torch.Tensor:
    """``L = L_r + lambda L_f``: cross-entropy on remain inputs plus ``lambda`` times the mean KL to the target.

    ``L_r`` is left out when no remain batch is given (the "D_F only" setting).
    """
    loss = forget_weight * tilted_kl(logits_forget, log_target)
    if logits_remain is not None and len(logits_remain) > 0:
        loss = loss + F.cross_entropy(logits_remain.float(), labels_remain)
    return loss


def _reduce(per: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    if reduction == "none":
        return per
    raise ValueError(f"unknown reduction {reduction!r}: expected 'mean', 'sum' or 'none'")
