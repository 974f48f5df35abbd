"""Per-sample membership signals Pr(x | θ) computed from logits (docs/metrics.md, section 5.1)."""

from __future__ import annotations

import logging
import math
import warnings

import torch

from lightning_unlearn.metrics.functional._checks import (
    as_tensor,
    check_finite,
    check_float,
    check_labels,
    check_nonempty,
    check_positive,
)

log = logging.getLogger(__name__)


class FlooredSignalWarning(UserWarning):
    """Some signals were below ``min_signal`` (or not finite) and were replaced by ``min_signal``."""


def _signal_arg_validation(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = as_tensor(logits, "logits"), as_tensor(labels, "labels")
    check_float(logits, "logits")
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape (..., N, K), got shape {tuple(logits.shape)}")
    check_nonempty(logits, "logits", dim=-2)
    check_finite(logits, "logits")
    labels = check_labels(labels, logits.shape[-2], logits.shape[-1])
    return logits, labels.to(logits.device)


def _gather_label(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``values[..., i, labels[i]]`` for every i (one entry per row, never whole columns)."""
    idx = labels.expand(*values.shape[:-1]).unsqueeze(-1)
    return values.gather(-1, idx).squeeze(-1)


def softmax_signal(logits: torch.Tensor, labels: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    """True-label softmax probability ``p_y = softmax(z / T)_y`` (the privacy-meter default signal).

    Computed in fp32 or better through ``log_softmax`` (stable: the maximum is subtracted).

    Args:
        logits: ``(..., N, K)`` logits; leading dimensions (e.g. R reference models) are kept.
        labels: ``(N,)`` int64 true labels in ``[0, K)``.
        temperature: T > 0.

    Returns:
        ``(..., N)`` signals in ``[0, 1]`` (dtype of the logits, at least float32).

    Example:
        >>> softmax_signal(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        tensor([0.5000])
    """
    logits, labels = _signal_arg_validation(logits, labels)
    temperature = check_positive(temperature, "temperature")
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return _gather_label(torch.log_softmax(z / temperature, dim=-1), labels).exp()


def _taylor_poly(v: torch.Tensor, terms: int) -> torch.Tensor:
    """t_n(v) = sum_{k=0}^{n-1} v^k / k! (Horner form)."""
    out = torch.full_like(v, 1.0 / math.factorial(terms - 1))
    for k in range(terms - 2, -1, -1):
        out = out * v + 1.0 / math.factorial(k)
    return out


def floor_signals(signal: torch.Tensor, min_signal: float, *, what: str = "signals") -> torch.Tensor:
    """Replace values below ``min_signal`` (and non-finite ones) by ``min_signal``, warning with their count."""
    bad = ~torch.isfinite(signal) | (signal < min_signal)
    n_bad = int(bad.sum().item())
    if n_bad:
        msg = f"{n_bad} of {signal.numel()} {what} were below min_signal={min_signal:g} or not finite and were floored to it"
        warnings.warn(msg, FlooredSignalWarning, stacklevel=3)
        log.debug(msg)
        signal = torch.where(bad, torch.full_like(signal, min_signal), signal)
    return signal


def taylor_softmax_signal(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 2.0,
    margin: float = 0.6,
    taylor_terms: int = 4,
    min_signal: float = 1e-30,
) -> torch.Tensor:
    """The soft-margin Taylor-softmax signal of the RMIA paper configs ([Z], used by AMUN).

    With ``u = z / T`` and ``t_n(v) = sum_{k=0}^{n-1} v^k / k!`` (``n = taylor_terms``)::

        Pr(x | θ) = t_n(u_y - m) / ( t_n(u_y - m) + sum_{j != y} t_n(u_j) )

    This is the *reference* definition (AMUN ``signals.py`` and the privacy-meter research
    code sum the powers ``0 .. n-1``: with n = 4 a cubic, negative for ``v < -1.596``), so
    values can leave [0, 1]. Values below ``min_signal`` (and non-finite ones, from a zero
    denominator) are floored to ``min_signal`` with a :class:`FlooredSignalWarning` giving
    their count, so that ratios in RMIA stay defined (docs/metrics.md, section 5.1). Values above 1 are
    kept, as in the reference code.

    Args:
        logits: ``(..., N, K)`` logits. labels: ``(N,)`` int64 labels.
        temperature: T > 0 (default 2). margin: m (default 0.6). taylor_terms: n >= 1 (default 4).
        min_signal: the floor (default 1e-30).

    Returns:
        ``(..., N)`` float signals.

    Example:
        >>> s = taylor_softmax_signal(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
        >>> round(float(s), 4)  # t(0.5 - 0.6) / (t(-0.1) + t(0)) = 0.90483 / 1.90483
        0.475
    """
    logits, labels = _signal_arg_validation(logits, labels)
    temperature = check_positive(temperature, "temperature")
    min_signal = check_positive(min_signal, "min_signal")
    if int(taylor_terms) != taylor_terms or taylor_terms < 1:
        raise ValueError(f"taylor_terms must be an integer >= 1, got {taylor_terms!r}")
    u = logits.double() / temperature
    onehot = torch.nn.functional.one_hot(labels, u.shape[-1]).to(torch.bool).expand_as(u)
    t = _taylor_poly(torch.where(onehot, u - margin, u), int(taylor_terms))
    num = _gather_label(t, labels)
    den = t.sum(-1)
    out_dtype = logits.dtype if logits.dtype == torch.float64 else torch.float32
    # Cast before flooring: a near-zero denominator can overflow float32 to inf, which is floored too.
    signal = (num / den).to(out_dtype)
    return floor_signals(signal, min_signal, what="Taylor-softmax signals")
