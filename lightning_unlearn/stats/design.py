"""Intervals for the originals × forget sets design, over a declared unit.

The benchmarks' replicate design: ``O`` original models (training seeds) × ``F`` forget sets,
each forget set with its own ``R`` retrained models. A *cell* ``(o, f)`` holds one number per
method, e.g. its Avg. Gap measured against the mean of forget set ``f``'s retrained models. The
cells are not independent: the cells of one forget set share its forget set and its retrained
models (the reference every gap is measured against), the cells of one original share that
model. A t-interval over all ``O·F`` cells therefore treats correlated values as independent and
is too narrow. The units offered (``cells`` has shape ``(O, F)``):

* ``"forget_set"`` (the default, :data:`DEFAULT_UNIT`) -- average each forget set's cells over
  the originals, then Student's t interval over the ``F`` forget-set means (``n = F``);
* ``"original"`` -- average each original's cells over the forget sets, t-interval over ``O``;
* ``"two_way_bootstrap"`` -- resample originals and forget sets independently with replacement
  (``B`` resamples from a seeded generator), take the grand mean of the resampled cells (a cell
  drawn ``i`` times as an original and ``j`` times as a forget set counts ``i·j`` times), and
  report the percentile interval of the ``B`` means (``n = O·F``; Owen's "pigeonhole" bootstrap);
* ``"cell"`` -- every cell as an independent value (``n = O·F``): too narrow; kept to show how
  much too narrow, and for designs whose cells really are independent.

Why the report uses ``"forget_set"`` by default: the retrained models, the reference of every
gap, are shared exactly by the cells of one forget set, and so is the forget set itself (which
samples are forgotten drives how hard unlearning is); the forget-set means are independent of one
another given the originals, and their t-interval has the right small-sample width (``t`` with
``F - 1`` degrees of freedom, no resampling noise, no seed). What it leaves out is the spread
between originals: the interval is conditional on the ``O`` originals at hand. The two-way
bootstrap adds that spread, but a percentile bootstrap over few levels (a factor with 3 levels has
10 distinct resamples) is too narrow -- it has no small-sample correction, the percentiles of
the resampled means under-cover for small ``O`` or ``F`` -- so it is offered as a check for
designs with many originals and forget sets, not as the default.

Today's benchmarks give each seed its own original and forget set; those replicates are
independent and are passed as one row, shape ``(1, n)``: the ``"forget_set"`` unit is then the
replicate and the bootstrap the ordinary one-way bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from lightning_unlearn.stats.summary import DEFAULT_CONFIDENCE, Summary, as_finite, check_confidence, summarize

CellUnit = Literal["forget_set", "original", "two_way_bootstrap", "cell"]
CELL_UNITS: tuple[str, ...] = get_args(CellUnit)
DEFAULT_UNIT: CellUnit = "forget_set"
DEFAULT_RESAMPLES = 10_000


def as_cells(cells: Sequence[Sequence[float]] | np.ndarray, *, name: str = "cells") -> np.ndarray:
    """``cells`` as a float64 array of shape ``(O, F)``, ``O, F >= 1``, all finite; else ValueError naming the bad cell."""
    return as_finite(
        cells,
        ndim=2,
        name=name,
        expected="an array of shape (originals, forget sets) with at least one cell",
        position=lambda i: f"cell (original {i[0]}, forget set {i[1]})",
    )


def check_unit(unit: str, allowed: Sequence[str] = CELL_UNITS) -> str:
    if unit not in allowed:
        raise ValueError(f"unknown unit {unit!r}; allowed: {', '.join(allowed)}")
    return unit


def check_resamples(resamples: int) -> int:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    return int(resamples)


def forget_set_means(cells: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The mean of each forget set's cells over the originals: shape ``(O, F)`` -> ``(F,)``.

    Example:
        >>> forget_set_means([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]).tolist()
        [2.0, 3.0, 4.0]
    """
    return as_cells(cells).mean(axis=0)


def original_means(cells: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The mean of each original's cells over the forget sets: shape ``(O, F)`` -> ``(O,)``."""
    return as_cells(cells).mean(axis=1)


def two_way_bootstrap_means(cells: Sequence[Sequence[float]] | np.ndarray, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """The grand means of ``resamples`` two-way bootstrap resamples of ``cells`` (shape ``(O, F)``) -> ``(B,)``.

    Resample ``b`` draws ``O`` originals and ``F`` forget sets with replacement from
    ``numpy.random.default_rng(seed)`` (originals first, then forget sets, each as one
    ``(B, O)`` / ``(B, F)`` draw); with ``u_bo`` / ``v_bf`` the number of times original ``o`` /
    forget set ``f`` was drawn, its mean is ``sum_of u_bo v_bf cells[o, f] / (O F)``.
    Memory ``O(B (O + F))``; time ``O(B O F)``.
    """
    x = as_cells(cells)
    resamples = check_resamples(resamples)
    n_orig, n_forget = x.shape
    rng = np.random.default_rng(seed)
    draws_o = rng.integers(0, n_orig, size=(resamples, n_orig))
    draws_f = rng.integers(0, n_forget, size=(resamples, n_forget))
    rows = np.arange(resamples)[:, None]
    u = np.zeros((resamples, n_orig))
    v = np.zeros((resamples, n_forget))
    np.add.at(u, (np.broadcast_to(rows, draws_o.shape), draws_o), 1.0)
    np.add.at(v, (np.broadcast_to(rows, draws_f.shape), draws_f), 1.0)
    return np.einsum("bo,of,bf->b", u, x, v) / (n_orig * n_forget)


def percentile_interval(means: np.ndarray, *, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of ``means`` (numpy's linear interpolation)."""
    confidence = check_confidence(confidence)
    low, high = np.quantile(np.asarray(means, dtype=np.float64), [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)


def two_way_bootstrap(
    cells: Sequence[Sequence[float]] | np.ndarray,
    *,
    method: str | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Summary:
    """The two-way (originals × forget sets) percentile bootstrap interval of the grand mean of ``cells``.

    ``mean`` is the grand mean of the ``O·F`` cells, ``sd`` their sample SD, ``n = O·F``; the
    interval is :func:`percentile_interval` of :func:`two_way_bootstrap_means`. With ``O == 1``
    it is the one-way bootstrap over forget sets (``scipy.stats.bootstrap(..., method="percentile")``
    up to resampling noise), with ``F == 1`` over originals; a single cell has no interval (NaN).

    Example:
        >>> s = two_way_bootstrap([[2.0, 2.0], [2.0, 2.0]])  # every cell equal: a zero-width interval
        >>> (s.low, s.high, s.n, s.unit)
        (2.0, 2.0, 4, 'two_way_bootstrap')
    """
    confidence = check_confidence(confidence)
    x = as_cells(cells)
    resamples = check_resamples(resamples)
    mean = float(x.mean())
    common = dict(mean=mean, n=int(x.size), unit="two_way_bootstrap", method=method, confidence=confidence, resamples=resamples, seed=seed)
    if x.size == 1:
        return Summary(sd=math.nan, low=math.nan, high=math.nan, **common)
    low, high = percentile_interval(two_way_bootstrap_means(x, resamples=resamples, seed=seed), confidence=confidence)
    return Summary(sd=float(x.std(ddof=1)), low=low, high=high, **common)


def summarize_cells(
    cells: Sequence[Sequence[float]] | np.ndarray,
    *,
    unit: CellUnit = DEFAULT_UNIT,
    method: str | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Summary:
    """Mean, SD and interval of one method's cells over the declared ``unit`` (see the module docstring).

    Args:
        cells: shape ``(O, F)``: ``cells[o, f]`` is the value in (original ``o``, forget set ``f``).
        unit: ``"forget_set"`` (default), ``"original"``, ``"two_way_bootstrap"`` or ``"cell"``.
        method: the row's name, recorded in the result.
        confidence: nominal coverage in ``(0, 1)``, default 0.95.
        resamples, seed: the bootstrap's ``B`` (default 10,000) and generator seed (default 0);
            ignored by the t-interval units.

    Returns:
        :class:`~lightning_unlearn.stats.Summary`: for a t unit, ``sd`` and ``n`` are those of the
        unit means (``F`` forget-set means, ``O`` original means or ``O·F`` cells); the mean is the
        grand mean of the cells in every unit.

    Raises:
        ValueError: ``cells`` not 2-D or not finite, an unknown ``unit``, a bad ``confidence`` or ``resamples``.

    Example:
        >>> s = summarize_cells([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]], method="amun")  # forget-set means 2, 3, 4
        >>> s.mean, s.sd, s.n, s.unit
        (3.0, 1.0, 3, 'forget_set')
    """
    check_unit(unit)
    x = as_cells(cells)
    if unit == "two_way_bootstrap":
        return two_way_bootstrap(x, method=method, confidence=confidence, resamples=resamples, seed=seed)
    per_unit = {"forget_set": x.mean(axis=0), "original": x.mean(axis=1), "cell": x.ravel()}[unit]
    return summarize(per_unit, unit=unit, method=method, confidence=confidence)
