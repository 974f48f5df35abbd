"""Symmetric KL between two classifiers' outputs, and FADE for classifiers (docs/metrics.md, section 7)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from lightning_unlearn.metrics.functional._checks import as_tensor, check_finite, check_float, check_nonempty


def _check_logits(x, name: str) -> torch.Tensor:
    x = as_tensor(x, name)
    check_float(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, K), got shape {tuple(x.shape)}")
    check_nonempty(x, name)
    check_finite(x, name)
    return x


def symmetric_kl_terms(logits_a: torch.Tensor, logits_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(KL(p_a || p_b), KL(p_b || p_a))`` per sample, each ``(N,)`` float64, from ``log_softmax``."""
    a, b = _check_logits(logits_a, "logits_a"), _check_logits(logits_b, "logits_b")
    if a.shape != b.shape:
        raise ValueError(f"logits_a and logits_b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    la, lb = torch.log_softmax(a.double(), 1), torch.log_softmax(b.double(), 1)
    pa, pb = la.exp(), lb.exp()
    return (pa * (la - lb)).sum(1), (pb * (lb - la)).sum(1)


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Per-sample symmetric KL divergence ``KL(p_a || p_b) + KL(p_b || p_a)`` in nats.

    ``p = softmax(logits)``; computed from ``log_softmax`` in float64, which stays finite and
    accurate even where one model gives a class a probability that underflows (e.g. a retrained
    model on the forgotten class). Symmetric in its arguments, 0 iff the outputs agree.

    Args:
        logits_a, logits_b: ``(N, K)`` logits of two models on the same N inputs.

    Returns:
        ``(N,)`` float64.

    Example:
        >>> symmetric_kl(torch.zeros(1, 2), torch.tensor([[0.0, 0.0]]))
        tensor([0.], dtype=torch.float64)
    """
    kl_ab, kl_ba = symmetric_kl_terms(logits_a, logits_b)
    return kl_ab + kl_ba


def _stack_refs(retrain_logits) -> list[torch.Tensor]:
    if isinstance(retrain_logits, torch.Tensor):
        if retrain_logits.ndim == 2:
            return [retrain_logits]
        if retrain_logits.ndim == 3:
            return list(retrain_logits)
        raise ValueError(f"retrain_logits must be (N, K) or (R, N, K), got shape {tuple(retrain_logits.shape)}")
    refs = list(retrain_logits)
    if not refs:
        raise ValueError("retrain_logits is empty: at least one retrained reference is needed")
    return refs


def fade(logits: torch.Tensor, retrain_logits: torch.Tensor | Sequence[torch.Tensor]) -> float:
    """FADE for classifiers: ``mean_r mean_{x in F} [KL(p_θ || p_r) + KL(p_r || p_θ)]`` (nats).

    The library's exact, sample-free adaptation of FADE (arXiv 2510.12981) to classifiers:
    the symmetric KL between the audited model θ and each retrained (retain-only) reference r
    on the forget inputs F, averaged over inputs and references. 0 means identical to retrain;
    lower is better. Compare with :func:`fade_noise_floor`.

    Args:
        logits: ``(N, K)`` logits of the audited model on F.
        retrain_logits: ``(N, K)``, ``(R, N, K)`` or a sequence of ``(N, K)``: retrained references on F.
    """
    refs = _stack_refs(retrain_logits)
    return float(torch.stack([symmetric_kl(logits, r).mean() for r in refs]).mean())


def fade_noise_floor(retrain_logits: torch.Tensor | Sequence[torch.Tensor]) -> float:
    """FADE between retrained seeds: the mean symmetric KL over all pairs of references (needs R >= 2)."""
    refs = _stack_refs(retrain_logits)
    if len(refs) < 2:
        raise ValueError(f"the noise floor needs at least 2 retrained references, got {len(refs)}")
    pairs = itertools.combinations(range(len(refs)), 2)
    return float(torch.stack([symmetric_kl(refs[i], refs[j]).mean() for i, j in pairs]).mean())
