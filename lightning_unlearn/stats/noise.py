"""The noise floor: how far one retrained model lies from the others of its forget set.

Each forget set ``f`` has ``R`` retrained models. Scoring retrained model ``r`` as if it were an
unlearned model, against the mean of the other ``R - 1`` (leave one out), gives the gap that
retraining itself leaves: a method whose gap is inside this floor is as close to retraining as
another retraining is. ``loo_gaps[f, r]`` holds those gaps, shape ``(F, R)``.

The retrained models are nested in their forget set (there are no originals here), so the units
are those of :mod:`lightning_unlearn.stats.design` with the forget set on top:

* ``"forget_set"`` (default) -- the mean of each forget set's ``R`` gaps, t-interval over ``F``;
* ``"two_way_bootstrap"`` -- the bootstrap of the same design: forget sets resampled with
  replacement, each with its ``R`` models (recorded as unit ``"forget_set_bootstrap"``);
* ``"cell"`` -- every retrained model as an independent value (recorded as ``"retrained_model"``;
  too narrow, since a forget set's models share their forget set and each other as references).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from lightning_unlearn.stats.design import DEFAULT_RESAMPLES, DEFAULT_UNIT, CellUnit, as_cells, check_unit, summarize_cells
from lightning_unlearn.stats.summary import DEFAULT_CONFIDENCE, Summary

NOISE_FLOOR = "noise floor"


def noise_floor(
    loo_gaps: Sequence[Sequence[float]] | np.ndarray,
    *,
    unit: CellUnit = DEFAULT_UNIT,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Summary:
    """Mean, SD and interval of the retrained models' leave-one-out gaps, ``method="noise floor"``.

    Args:
        loo_gaps: shape ``(F, R)``: ``loo_gaps[f, r]`` is retrained model ``r`` of forget set ``f``
            scored against the mean of the other ``R - 1`` of that forget set.
        unit: ``"forget_set"`` (default), ``"two_way_bootstrap"`` (resamples forget sets) or ``"cell"``.
        confidence, resamples, seed: as for :func:`~lightning_unlearn.stats.summarize_cells`.

    Raises:
        ValueError: ``unit="original"`` (the noise floor has no originals), or what
            :func:`~lightning_unlearn.stats.summarize_cells` rejects.

    Example:
        >>> s = noise_floor([[1.0, 3.0], [2.0, 4.0], [3.0, 5.0]])  # forget-set means 2, 3, 4
        >>> s.method, s.mean, s.sd, s.n, s.unit
        ('noise floor', 3.0, 1.0, 3, 'forget_set')
    """
    check_unit(unit, allowed=("forget_set", "two_way_bootstrap", "cell"))
    x = as_cells(loo_gaps, name="loo_gaps")
    options = dict(method=NOISE_FLOOR, confidence=confidence, resamples=resamples, seed=seed)
    if unit == "forget_set":
        return summarize_cells(x.T, unit="forget_set", **options)  # (R, F): rows play the originals' part
    if unit == "cell":
        return replace(summarize_cells(x, unit="cell", **options), unit="retrained_model")
    # one row of forget-set means: the two-way bootstrap with a single row resamples forget sets only
    return replace(summarize_cells(x.mean(axis=1)[None, :], unit="two_way_bootstrap", **options), unit="forget_set_bootstrap")
