"""Avg. Gap to the retrained models (the AMUN paper [P] §5.2; docs/metrics.md, section 3)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _value(v, name: str, where: str) -> float:
    if isinstance(v, Sequence) and not isinstance(v, str):
        if len(v) == 0:
            raise ValueError(f"{where}[{name!r}] is an empty sequence")
        v = sum(float(x) for x in v) / len(v)
    try:
        f = float(v)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}[{name!r}] must be a number, got {v!r}") from err
    if not math.isfinite(f):
        raise ValueError(f"{where}[{name!r}] must be finite, got {f!r}")
    return f


def avg_gap(
    metrics: Mapping[str, float],
    retrain: Mapping[str, float | Sequence[float]],
    keys: Sequence[str] = ("ua", "ra", "ta", "mia"),
) -> float:
    """``Avg.Gap = mean_k |metrics[k] - retrain[k]|`` over ``keys``, in the units of the inputs (percent).

    ``[P]``: ``1/4 (|UA - UA*| + |RA - RA*| + |TA - TA*| + |MIA - MIA*|)``; starred values are
    the mean over retrained models, so ``retrain[k]`` may be one number or a sequence (averaged).
    Compute it per run, then aggregate over runs.

    Example:
        >>> avg_gap({"ua": 95.0, "ra": 99.0, "ta": 94.0, "mia": 50.0}, {"ua": 94.0, "ra": 100.0, "ta": [94.0, 94.0], "mia": 52.0})
        1.0
    """
    keys = tuple(keys)
    if not keys:
        raise ValueError("keys must name at least one metric")
    missing = [k for k in keys if k not in metrics] + [k for k in keys if k not in retrain]
    if missing:
        raise KeyError(
            f"avg_gap needs keys {keys} in both dicts; missing {sorted(set(missing))} "
            f"(metrics has {sorted(metrics)}, retrain has {sorted(retrain)})"
        )
    return sum(abs(_value(metrics[k], k, "metrics") - _value(retrain[k], k, "retrain")) for k in keys) / len(keys)
