"""Paired differences to the best method, and the verdict each interval supports.

Two methods run in the same cell (original ``o``, forget set ``f``) are measured against the
same retrained models, so their difference in that cell, ``d[o, f] = x_method[o, f] -
x_best[o, f]``, removes what the cell contributes to both. The interval of a difference is
therefore the interval of the cell-wise differences ``d`` in the same unit as the methods'
own summaries (:func:`~lightning_unlearn.stats.summarize_cells`); for the t units this is the
paired t interval (``scipy.stats.ttest_rel(...).confidence_interval()`` over the unit means),
for the bootstrap every method's differences are resampled with the same draws (same seed).

The best method is the one with the lowest mean (``lower_is_better=True``, as for Avg. Gap), the
first one listed on a tie. :func:`verdict` reads an interval of ``method - best``: it says
"better" or "worse" only where the interval excludes 0, "not distinguishable" otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lightning_unlearn.stats.design import DEFAULT_RESAMPLES, DEFAULT_UNIT, CellUnit, as_cells, check_unit, summarize_cells
from lightning_unlearn.stats.summary import DEFAULT_CONFIDENCE, Summary

Verdict = Literal["better", "worse", "not distinguishable"]


@dataclass(frozen=True, kw_only=True)
class PairedDifference(Summary):
    """The interval of ``method - reference`` over paired cells, and what it says.

    The fields of :class:`~lightning_unlearn.stats.Summary` describe the difference (``mean`` is
    the mean difference, ``sd`` the SD of the unit differences); in addition:

    Attributes:
        reference: the method the differences are taken to (the best one).
        verdict: :func:`verdict` of ``(low, high)``: ``"better"``, ``"worse"`` or ``"not distinguishable"``.
    """

    reference: str
    verdict: Verdict


def verdict(low: float, high: float, *, lower_is_better: bool = True) -> Verdict:
    """What an interval ``[low, high]`` of ``method - reference`` says about ``method``.

    ``"worse"`` when the whole interval lies on the bad side of 0 (above 0 when lower is better),
    ``"better"`` when it lies on the good side, ``"not distinguishable"`` when it contains 0 or is
    undefined (NaN: a single unit).

    Example:
        >>> verdict(0.5, 2.0), verdict(-2.0, -0.1), verdict(-1.0, 1.0), verdict(0.0, 1.0)
        ('worse', 'better', 'not distinguishable', 'not distinguishable')
        >>> verdict(0.5, 2.0, lower_is_better=False)
        'better'
    """
    if not (low <= high):  # NaN, or a malformed interval
        if low > high:
            raise ValueError(f"verdict: low {low!r} is above high {high!r}")
        return "not distinguishable"
    if low > 0:
        return "worse" if lower_is_better else "better"
    if high < 0:
        return "better" if lower_is_better else "worse"
    return "not distinguishable"


def best_method(summaries: Mapping[str, Summary], *, lower_is_better: bool = True) -> str:
    """The name with the lowest (``lower_is_better``) or highest mean; the first listed on a tie."""
    if not summaries:
        raise ValueError("best_method: no methods given")
    sign = 1.0 if lower_is_better else -1.0
    return min(summaries, key=lambda name: sign * summaries[name].mean)


def paired_differences(
    cells: Mapping[str, Sequence[Sequence[float]] | np.ndarray],
    *,
    unit: CellUnit = DEFAULT_UNIT,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    lower_is_better: bool = True,
) -> list[PairedDifference]:
    """Every method's difference to the best method, paired by cell, with its interval and verdict.

    Args:
        cells: method name -> its cells, shape ``(O, F)``, the same shape for every method;
            ``cells[m][o, f]`` and ``cells[b][o, f]`` share original, forget set and retrained models.
        unit: the unit of the intervals (:func:`~lightning_unlearn.stats.summarize_cells`), default ``"forget_set"``.
        confidence: nominal coverage in ``(0, 1)``, default 0.95.
        resamples, seed: the bootstrap's settings (``unit="two_way_bootstrap"`` only).
        lower_is_better: True for gaps (the best is the lowest mean).

    Returns:
        One :class:`PairedDifference` per method other than the best, in the order of ``cells``;
        ``method`` is the method, ``reference`` the best, ``mean``/``low``/``high`` are of
        ``method - best``. Empty when only one method is given.

    Raises:
        ValueError: no methods, cells of different shapes, or what
            :func:`~lightning_unlearn.stats.summarize_cells` rejects.

    Example:
        >>> diffs = paired_differences({"a": [[1.0, 2.0, 3.0]], "b": [[2.0, 3.5, 4.0]], "c": [[0.0, 4.0, 3.0]]})
        >>> [(d.method, d.reference, d.mean, d.verdict) for d in diffs]
        [('b', 'a', 1.1666666666666667, 'worse'), ('c', 'a', 0.3333333333333333, 'not distinguishable')]
    """
    check_unit(unit)
    if not cells:
        raise ValueError("paired_differences: no methods given")
    arrays = {name: as_cells(c, name=f"cells[{name!r}]") for name, c in cells.items()}
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"paired_differences: every method needs the same (originals, forget sets) shape to pair its cells; got {shapes}")
    options = dict(unit=unit, confidence=confidence, resamples=resamples, seed=seed)
    summaries = {name: summarize_cells(a, method=name, **options) for name, a in arrays.items()}
    best = best_method(summaries, lower_is_better=lower_is_better)
    out = []
    for name, a in arrays.items():
        if name == best:
            continue
        d = summarize_cells(a - arrays[best], method=name, **options)
        fields = {k: getattr(d, k) for k in Summary.__dataclass_fields__}
        out.append(PairedDifference(**fields, reference=best, verdict=verdict(d.low, d.high, lower_is_better=lower_is_better)))
    return out
