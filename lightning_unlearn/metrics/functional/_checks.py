"""Argument checks shared by the functional metrics: each raises ``ValueError`` naming the bad value."""

from __future__ import annotations

import torch

#: Floor inside every logarithm and before every ratio (docs/metrics.md, sections 1 and 5.1).
LOG_FLOOR = 1e-30
#: Tolerance for probabilities that leave [0, 1] by rounding only.
PROB_ATOL = 1e-5


def as_tensor(x, name: str) -> torch.Tensor:
    """``x`` as a CPU-or-device tensor (numpy arrays and lists accepted)."""
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except Exception as err:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from err


def check_ndim(x: torch.Tensor, ndim: int, name: str, shape_doc: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {tuple(x.shape)}")


def check_nonempty(x: torch.Tensor, name: str, dim: int = 0) -> None:
    if x.shape[dim] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); at least one sample is needed")


def check_same_len(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str, dim_a: int = 0, dim_b: int = 0) -> None:
    if a.shape[dim_a] != b.shape[dim_b]:
        raise ValueError(
            f"{name_a} and {name_b} disagree in length: {name_a} has {a.shape[dim_a]} (shape {tuple(a.shape)}), "
            f"{name_b} has {b.shape[dim_b]} (shape {tuple(b.shape)})"
        )


def check_finite(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name} contains {bad} non-finite value(s) (nan or inf)")


def check_float(x: torch.Tensor, name: str) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_probs(probs: torch.Tensor, name: str = "probs") -> torch.Tensor:
    """``probs`` (N, K): finite, floating point, every entry in [0, 1] (to ``PROB_ATOL``); returns it clamped."""
    check_float(probs, name)
    check_ndim(probs, 2, name, "(N, K)")
    check_nonempty(probs, name)
    check_finite(probs, name)
    lo, hi = probs.min().item(), probs.max().item()
    if lo < -PROB_ATOL or hi > 1 + PROB_ATOL:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values in [{lo:.6g}, {hi:.6g}] "
            "(pass softmax outputs, not logits)"
        )
    return probs.clamp(0.0, 1.0)


def check_labels(labels: torch.Tensor, n: int, num_classes: int, name: str = "labels") -> torch.Tensor:
    """Integer labels (N,) in ``[0, num_classes)``; returns them as int64."""
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    check_ndim(labels, 1, name, "(N,)")
    if labels.numel() != n:
        raise ValueError(f"{name} has {labels.numel()} entries but there are {n} samples")
    if n and (labels.min().item() < 0 or labels.max().item() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got values in [{labels.min().item()}, {labels.max().item()}]"
        )
    return labels.long()


def check_binary(labels: torch.Tensor, n: int, name: str = "labels") -> torch.Tensor:
    """Binary membership labels (N,) (bool or integers in {0, 1}); returns them as int64."""
    check_ndim(labels, 1, name, "(N,)")
    if labels.numel() != n:
        raise ValueError(f"{name} has {labels.numel()} entries but there are {n} scores")
    lab = labels.long() if labels.dtype == torch.bool else labels
    if lab.is_floating_point():
        if not bool(((lab == 0) | (lab == 1)).all()):
            raise ValueError(f"{name} must be binary (0/1), got other values")
        lab = lab.long()
    uniq = torch.unique(lab).tolist()
    if not set(uniq) <= {0, 1}:
        raise ValueError(f"{name} must be binary (0 or 1), got values {uniq[:10]}")
    return lab.long()


def check_positive(value: float, name: str) -> float:
    value = float(value)
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value
