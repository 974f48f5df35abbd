"""The result record of every interval, and the t-interval over independent values.

:class:`Summary` is what every function of :mod:`lightning_unlearn.stats` returns: the mean, the
sample standard deviation, the interval, how many units it rests on and what a unit is. It is a
frozen dataclass with :meth:`Summary.to_dict` for ``results.json`` (NaN written as ``null``).

The interval of :func:`summarize` is Student's t interval of the mean of ``n`` independent values::

    mean ± t_{(1 + confidence) / 2, n - 1} · sd / sqrt(n),   sd = sqrt(sum (x_i - mean)^2 / (n - 1))

which is ``scipy.stats.t.interval(confidence, n - 1, loc=mean, scale=sd / sqrt(n))``. With one
value there is no spread to estimate: ``sd``, ``low`` and ``high`` are NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lightning_unlearn.stats.distribution import t_quantile

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True, kw_only=True)
class Summary:
    """A mean with its sample SD and confidence interval over ``n`` units of kind ``unit``.

    Attributes:
        mean: the mean of the values the interval is about.
        sd: the sample standard deviation (``ddof=1``) of the ``n`` unit values; NaN when ``n == 1``.
        low, high: the interval's ends; NaN when ``n == 1``.
        n: how many units the interval rests on (for ``unit="two_way_bootstrap"``: cells).
        unit: what one unit is: ``"forget_set"`` (a forget set's mean over originals), ``"original"``,
            ``"cell"`` (one (original, forget set) value), ``"two_way_bootstrap"``,
            ``"forget_set_bootstrap"``, ``"retrained_model"``, or the label given to :func:`summarize`.
        method: the row the numbers belong to (a method name, ``"noise floor"``), or ``None``.
        confidence: the interval's nominal coverage, e.g. 0.95.
        resamples: bootstrap resamples behind the interval; ``None`` for a t-interval.
        seed: the bootstrap generator's seed; ``None`` for a t-interval.
    """

    mean: float
    sd: float
    low: float
    high: float
    n: int
    unit: str
    method: str | None = None
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict; NaN becomes ``None`` (JSON has no NaN)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """The inverse of :meth:`to_dict` (``None`` read back as NaN for the float fields)."""
        floats = {"mean", "sd", "low", "high", "confidence"}
        return cls(**{k: (math.nan if k in floats and v is None else v) for k, v in data.items()})


def check_confidence(confidence: float) -> float:
    """``confidence`` as a float in ``(0, 1)``, else ValueError naming it."""
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    return c


def as_finite(values, *, ndim: int, name: str, expected: str, position: Callable[[tuple[int, ...]], str] = lambda i: f"entry {i[0]}") -> np.ndarray:
    """``values`` as a non-empty float64 array with ``ndim`` dimensions, all finite; else ValueError naming the bad entry.

    ``expected`` says what was wanted (quoted in the error); ``position`` names an index in the error.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be {expected}, got {values!r}") from err
    if arr.ndim != ndim or arr.size == 0:
        raise ValueError(f"{name} must be {expected}, got shape {arr.shape}")
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise ValueError(f"{name} must be finite; {position(index)} is {float(arr[index])!r}")
    return arr


def as_values(values: Sequence[float] | np.ndarray, *, name: str = "values") -> np.ndarray:
    """``values`` as a non-empty 1-D float64 array of finite numbers, else ValueError naming the bad entry."""
    return as_finite(values, ndim=1, name=name, expected="a non-empty 1-D sequence of numbers")


def t_interval(values: Sequence[float] | np.ndarray, *, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Student's t interval of the mean of independent ``values`` (shape ``(n,)``); ``(nan, nan)`` for ``n == 1``.

    Example:
        >>> low, high = t_interval([1.0, 2.0, 3.0])  # 2 ± 4.3027 · 1 / sqrt(3)
        >>> round(low, 4), round(high, 4)
        (-0.4841, 4.4841)
    """
    s = summarize(values, confidence=confidence)
    return s.low, s.high


def summarize(
    values: Sequence[float] | np.ndarray,
    *,
    unit: str = "replicate",
    method: str | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Summary:
    """Mean, sample SD (``ddof=1``), ``n`` and the t-interval of independent ``values``.

    Each value is one independent unit; ``unit`` names what that unit is and is recorded as is.
    Values that share models (cells of one forget set, say) are not independent: reduce them to
    one value per unit first, which :func:`~lightning_unlearn.stats.summarize_cells` does.

    Args:
        values: shape ``(n,)``, finite.
        unit: what one value is (recorded in the result), default ``"replicate"``.
        method: the row's name, recorded in the result.
        confidence: nominal coverage in ``(0, 1)``, default 0.95.

    Returns:
        :class:`Summary`; ``sd``, ``low`` and ``high`` are NaN when ``n == 1``.

    Raises:
        ValueError: empty, non-1-D or non-finite ``values``, or ``confidence`` outside ``(0, 1)``.

    Example:
        >>> s = summarize([4.0, 6.0, 8.0], unit="seed", method="amun")
        >>> s.mean, s.sd, s.n, round(s.high - s.mean, 4)
        (6.0, 2.0, 3, 4.9683)
    """
    confidence = check_confidence(confidence)
    x = as_values(values)
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean=mean, sd=math.nan, low=math.nan, high=math.nan, n=1, unit=unit, method=method, confidence=confidence)
    sd = float(x.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return Summary(mean=mean, sd=sd, low=mean - half, high=mean + half, n=n, unit=unit, method=method, confidence=confidence)
