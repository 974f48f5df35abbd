"""Statistics that decide: intervals over a declared unit, paired differences to the best method, verdicts.

The design, the units and the default are described in docs/protocol.md, section 11.

Plain numpy (no scipy): the t quantile is computed in :mod:`lightning_unlearn.stats.distribution`.

- :func:`summarize` -- mean, sample SD, ``n`` and the t-interval of independent values;
- :func:`summarize_cells` -- the same for an originals × forget sets array of cells, over the unit
  ``"forget_set"`` (default), ``"original"``, ``"two_way_bootstrap"`` or ``"cell"``
  (:mod:`lightning_unlearn.stats.design` says what each is and why the default);
- :func:`paired_differences` -- each method minus the best one, paired by cell, with its interval
  and :func:`verdict` (``"better"``, ``"worse"``, ``"not distinguishable"``);
- :func:`gap_reduction` -- a claim's relative gap reduction against the best other method, paired bootstrap interval;
- :func:`noise_floor` -- the retrained models' leave-one-out gaps in the same form;
- :class:`Summary`, :class:`PairedDifference` -- the frozen, JSON-able results (``to_dict()``).

Example:
    >>> from lightning_unlearn.stats import paired_differences, summarize_cells
    >>> cells = {"amun": [[4.0, 5.0, 6.0]], "rl": [[6.0, 6.5, 8.0]]}   # one row: independent replicates
    >>> summarize_cells(cells["amun"], method="amun").to_dict()["n"]
    3
    >>> [(d.method, d.reference, d.verdict) for d in paired_differences(cells)]
    [('rl', 'amun', 'worse')]
"""

from lightning_unlearn.stats.design import (
    CELL_UNITS,
    DEFAULT_RESAMPLES,
    DEFAULT_UNIT,
    CellUnit,
    forget_set_means,
    original_means,
    summarize_cells,
    two_way_bootstrap,
    two_way_bootstrap_means,
)
from lightning_unlearn.stats.distribution import betainc, t_quantile, t_sf
from lightning_unlearn.stats.noise import NOISE_FLOOR, noise_floor
from lightning_unlearn.stats.paired import PairedDifference, Verdict, best_method, paired_differences, verdict
from lightning_unlearn.stats.ratio import GapReduction, gap_reduction
from lightning_unlearn.stats.summary import DEFAULT_CONFIDENCE, Summary, summarize, t_interval

__all__ = [
    "CELL_UNITS",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "DEFAULT_UNIT",
    "GapReduction",
    "NOISE_FLOOR",
    "CellUnit",
    "PairedDifference",
    "Summary",
    "Verdict",
    "best_method",
    "betainc",
    "forget_set_means",
    "gap_reduction",
    "noise_floor",
    "original_means",
    "paired_differences",
    "summarize",
    "summarize_cells",
    "t_interval",
    "t_quantile",
    "t_sf",
    "two_way_bootstrap",
    "two_way_bootstrap_means",
    "verdict",
]
