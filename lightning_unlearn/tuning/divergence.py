"""Diverged runs: a run whose loss, weights or outputs become non-finite is never scored.

The tuning engine fails a trial whose ``evaluate`` raises :class:`DivergedError` (or whose
objective is not finite). The caller's ``evaluate`` checks a finished unlearning run with
:func:`check_finite`, passing the method's count of non-finite loss steps (an
:class:`~lightning_unlearn.unlearning.UnlearningMethod` counts them during the fit, see its
``nonfinite_loss_steps``), the unlearned model and its outputs::

    unlearn(module, method, request)
    check_finite(module, [logits_train, logits_test], nonfinite_loss_steps=method.nonfinite_loss_steps)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

#: the logit magnitude beyond which the benchmark counts a run as diverged (exp(1e4) overflows every float format;
#: a trained classifier's logits stay within a few tens)
MAX_ABS_LOGIT = 1e4


class DivergedError(RuntimeError):
    """A run diverged: its loss, weights or outputs are not finite. The message says which."""


def nonfinite_entries(model: nn.Module) -> dict[str, int]:
    """``{name: count}`` of the floating-point parameters and buffers of ``model`` holding a ``nan`` or ``inf``."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return {name: int((~torch.isfinite(t.detach())).sum()) for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all())}


def _output_tensors(outputs: "torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor] | None") -> list[tuple[str, torch.Tensor]]:
    if outputs is None:
        return []
    if isinstance(outputs, torch.Tensor):
        return [("outputs", outputs)]
    if isinstance(outputs, Mapping):
        return [(str(k), v) for k, v in outputs.items()]
    return [(f"outputs[{i}]", v) for i, v in enumerate(outputs)]


def check_finite(
    model: nn.Module | None,
    outputs: "torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor] | None" = None,
    *,
    nonfinite_loss_steps: int = 0,
    max_abs_output: float = math.inf,
) -> None:
    """Raise :class:`DivergedError` if a run diverged.

    A run diverged when any of: ``nonfinite_loss_steps > 0`` (optimizer steps whose loss was
    ``nan`` or ``inf``); a floating-point parameter or buffer of ``model`` holds a non-finite
    entry; an output tensor holds one, or an entry beyond ``max_abs_output`` in magnitude (an
    exploded run whose values have not yet overflowed: logits of 1e4 make every floating-point
    softmax a one-hot vector of rounding, so an audit of them measures nothing).

    Args:
        model: the unlearned model (``None``: not checked).
        outputs: its outputs, e.g. logits of shape ``(N, K)``: a tensor, a sequence or a mapping
            of tensors (``None``: not checked).
        nonfinite_loss_steps: the method's count of steps with a non-finite loss.
        max_abs_output: the largest output magnitude of a run that did not diverge (default: no bound;
            the benchmark passes :data:`MAX_ABS_LOGIT`).

    Raises:
        DivergedError: naming every non-finite part (loss steps, up to five tensors by name with
            their counts, outputs).

    Example:
        >>> check_finite(nn.Linear(2, 2), torch.zeros(3, 2))
        >>> check_finite(None, torch.tensor([[0.0, float("nan")]]))
        Traceback (most recent call last):
        ...
        lightning_unlearn.tuning.divergence.DivergedError: the run diverged: outputs has 1 non-finite entries
    """
    if nonfinite_loss_steps < 0:
        raise ValueError(f"nonfinite_loss_steps must be >= 0, got {nonfinite_loss_steps}")
    problems = []
    if nonfinite_loss_steps:
        problems.append(f"{nonfinite_loss_steps} unlearning steps had a non-finite loss")
    if model is not None:
        bad = nonfinite_entries(model)
        if bad:
            shown = ", ".join(f"{k} ({n})" for k, n in list(bad.items())[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            problems.append(f"{len(bad)} weight tensors hold non-finite entries: {shown}{more}")
    for name, t in _output_tensors(outputs):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            problems.append(f"{name} has {int((~torch.isfinite(t)).sum())} non-finite entries")
        elif t.is_floating_point() and math.isfinite(max_abs_output) and bool((t.abs() > max_abs_output).any()):
            problems.append(f"{name} has {int((t.abs() > max_abs_output).sum())} entries beyond ±{max_abs_output:g} (largest {float(t.abs().max()):.3g})")
    if problems:
        raise DivergedError("the run diverged: " + "; ".join(problems))


__all__ = ["MAX_ABS_LOGIT", "DivergedError", "check_finite", "nonfinite_entries"]
