"""The relative gap reduction of one method against the best of the others, with a paired bootstrap interval.

A claim such as TRW's on U-LiRA ("the gap to the retrained models is 19% smaller than the best
prior method's") is a ratio of mean gaps::

    reduction = 1 − ḡ_claimant / min_m ḡ_m        (ḡ: a method's mean gap over its cells; m: the prior methods)

positive when the claimant is closer to retraining than every prior method. Its interval is a
percentile bootstrap over the declared unit (:mod:`lightning_unlearn.stats.design`): each method's
cells are reduced to the unit's values (the ``F`` forget-set means, the ``O`` original means or
the ``O·F`` cells; the two-way bootstrap resamples the ``(O, F)`` cells themselves), and every
method is resampled with the **same** draws (one seeded generator per method, same seed and
shape: :func:`~lightning_unlearn.stats.two_way_bootstrap_means`), so the methods stay paired by
unit. The best prior method is chosen again in each resample: the selection is part of what is
estimated. A resample whose best prior gap is 0 has no ratio; it is left out and counted.

With few units the bootstrap is coarse: three forget sets have 10 distinct resamples, so the
interval is a rough indication, not a calibrated 95% interval (see the module docstring of
:mod:`lightning_unlearn.stats.design`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lightning_unlearn.stats.design import DEFAULT_RESAMPLES, DEFAULT_UNIT, CellUnit, as_cells, check_unit, percentile_interval, two_way_bootstrap_means
from lightning_unlearn.stats.summary import DEFAULT_CONFIDENCE, check_confidence


@dataclass(frozen=True)
class GapReduction:
    """``1 − ḡ_claimant / min_m ḡ_m`` and its bootstrap interval (fractions: 0.19 is 19%).

    Attributes:
        claimant: the method the claim is about.
        best_prior: the prior method with the smallest mean gap (on the cells as measured).
        gap_claimant, gap_best_prior: their mean gaps over the cells.
        reduction: the point estimate; NaN when the best prior gap is 0.
        low, high: the percentile interval (NaN with a single unit or no defined resample).
        n, unit: the number of units resampled and their kind.
        confidence, resamples, seed: the interval's settings.
        undefined: resamples left out because their best prior gap was 0.
    """

    claimant: str
    best_prior: str
    gap_claimant: float
    gap_best_prior: float
    reduction: float
    low: float
    high: float
    n: int
    unit: str
    confidence: float
    resamples: int
    seed: int
    undefined: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict; NaN becomes ``None``."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(self).items()}


def unit_values(cells: np.ndarray, unit: str) -> np.ndarray:
    """The values a one-way unit resamples, as one row ``(1, n)``; the ``(O, F)`` cells themselves for the two-way bootstrap."""
    if unit == "two_way_bootstrap":
        return cells
    return {"forget_set": cells.mean(axis=0), "original": cells.mean(axis=1), "cell": cells.ravel()}[unit][None, :]


def _ratio(claimant: np.ndarray | float, best: np.ndarray | float) -> np.ndarray:
    claimant, best = np.asarray(claimant, dtype=np.float64), np.asarray(best, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(best > 0, 1.0 - claimant / np.where(best > 0, best, 1.0), np.nan)


def gap_reduction(
    claimant: tuple[str, Sequence[Sequence[float]] | np.ndarray],
    priors: Mapping[str, Sequence[Sequence[float]] | np.ndarray],
    *,
    unit: CellUnit = DEFAULT_UNIT,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> GapReduction:
    """The claimant's relative gap reduction against the best prior method, with its paired bootstrap interval.

    Args:
        claimant: ``(name, cells)``: the method the claim is about and its gaps, shape ``(O, F)``.
        priors: name -> gaps of each prior method, the same shape (cells paired by original and forget set).
        unit: ``"forget_set"`` (default), ``"original"``, ``"cell"`` or ``"two_way_bootstrap"`` (module docstring).
        confidence: nominal coverage in ``(0, 1)``, default 0.95.
        resamples, seed: the bootstrap's ``B`` (default 10,000) and generator seed (default 0).

    Returns:
        :class:`GapReduction`.

    Raises:
        ValueError: no prior method, cells of different shapes or not finite, a negative gap, an
            unknown unit, a bad confidence.

    Example:
        >>> r = gap_reduction(("trw", [[0.81, 1.62, 2.43]]), {"ga": [[1.0, 2.0, 3.0]], "ft": [[2.0, 3.0, 4.0]]})
        >>> r.best_prior, round(r.reduction, 6), round(r.low, 6), round(r.high, 6)   # 19% smaller in every forget set
        ('ga', 0.19, 0.19, 0.19)
    """
    check_unit(unit)
    confidence = check_confidence(confidence)
    if not priors:
        raise ValueError("gap_reduction: no prior method to compare the claimant with")
    name, claimant_cells = claimant
    arrays = {name: as_cells(claimant_cells, name=f"cells[{name!r}]")} | {m: as_cells(c, name=f"cells[{m!r}]") for m, c in priors.items()}
    shapes = {m: a.shape for m, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"gap_reduction: every method needs the same (originals, forget sets) shape to pair its cells; got {shapes}")
    negative = [m for m, a in arrays.items() if bool((a < 0).any())]
    if negative:
        raise ValueError(f"gap_reduction: gaps are distances (>= 0); {negative} have negative cells")
    means = {m: float(a.mean()) for m, a in arrays.items()}
    best = min(priors, key=lambda m: means[m])  # the first listed on a tie
    values = {m: unit_values(a, unit) for m, a in arrays.items()}
    n = int(values[name].size)
    common = dict(claimant=name, best_prior=best, gap_claimant=means[name], gap_best_prior=means[best], reduction=float(_ratio(means[name], means[best])),
                  unit=unit, confidence=confidence, resamples=int(resamples), seed=int(seed))
    if n == 1:
        return GapReduction(low=math.nan, high=math.nan, n=1, undefined=0, **common)
    boot = {m: two_way_bootstrap_means(v, resamples=resamples, seed=seed) for m, v in values.items()}  # same seed and shape: same draws
    ratios = _ratio(boot[name], np.min(np.stack([boot[m] for m in priors]), axis=0))
    defined = ratios[~np.isnan(ratios)]
    low, high = percentile_interval(defined, confidence=confidence) if len(defined) else (math.nan, math.nan)
    return GapReduction(low=low, high=high, n=n, undefined=int(len(ratios) - len(defined)), **common)


__all__ = ["GapReduction", "gap_reduction", "unit_values"]
