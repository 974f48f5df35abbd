"""Search spaces: typed axes, the shared schedule space, and one method's whole space.

A tuning **axis** is one hyperparameter and the values a sampler may give it:

* :class:`Categorical`: a finite tuple of values (a grid axis; TPE treats it as unordered);
* :class:`FloatRange` / :class:`IntRange`: an interval, optionally on a log scale (TPE samples
  it; it has no finite grid).

Every method is tuned over the **same schedule axes**, defined once in :data:`SCHEDULE_SPACE`:
the learning rate ``lr`` in the AMUN reference code's seven values {0.1, 0.05, 0.01, 0.005,
1e-3, 1e-4, 1e-5} and the StepLR period ``step_size`` in {1, 5, 10} epochs, with the decay
factor ``gamma = 0.1`` held constant (the reference tuning script ``hyperparam_tune.py`` of
Ali-E/AMUN runs every method over these 21 points). A method class adds only **its own** axes,
in its ``search_axes`` class attribute (SalUn's ``mask_ratio``, TRW's ``beta`` and ``tau``,
...); :func:`lightning_unlearn.tuning.method_space` joins the two.

This module imports nothing from the rest of the library (the method classes import it to
declare their axes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # annotations only
    import optuna

#: the value types an axis may hold: those optuna stores and ``GridSampler`` accepts, and JSON writes
GRID_VALUE_TYPES = (str, int, float, bool)


def _check_excluded_by(excluded_by: Iterable[str]) -> tuple[str, ...]:
    names = tuple(excluded_by)
    if any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"excluded_by must name hyperparameters, got {names!r}")
    return names


@dataclass(frozen=True)
class Categorical:
    """A finite axis: one of ``values`` (at least one; distinct; ``str``, ``int``, ``float`` or ``bool``).

    Args:
        values: the grid values, in the order they are listed in declarations.
        excluded_by: hyperparameters whose fixed value removes this axis (e.g. TRW's ``beta`` is
            not tuned when ``expected_similarity`` is given, because the two exclude each other).

    Example:
        >>> Categorical((1, 5, 10)).size
        3
    """

    values: tuple[Any, ...]
    excluded_by: tuple[str, ...] = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        values = tuple(self.values)
        if not values:
            raise ValueError("a Categorical axis needs at least one value")
        bad = [v for v in values if not isinstance(v, GRID_VALUE_TYPES) or (isinstance(v, float) and not math.isfinite(v))]
        if bad:
            raise ValueError(f"Categorical values must be finite str, int, float or bool, got {bad!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"Categorical values must be distinct, got {values!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "excluded_by", _check_excluded_by(self.excluded_by))

    @property
    def size(self) -> int:
        return len(self.values)

    def suggest(self, trial: "optuna.Trial", name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def describe(self) -> dict[str, Any]:
        return {"type": "categorical", "values": list(self.values)}


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    log: bool = False
    excluded_by: tuple[str, ...] = field(default=(), kw_only=True)

    kind: ClassVar[str] = "range"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or not self.low < self.high:
            raise ValueError(f"a {type(self).__name__} needs finite low < high, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale {type(self).__name__} needs low > 0, got low={self.low!r}")
        object.__setattr__(self, "excluded_by", _check_excluded_by(self.excluded_by))

    @property
    def size(self) -> float:
        """``inf``: a range has no finite grid (only categorical axes form one)."""
        return math.inf

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class FloatRange(_Range):
    """A float in ``[low, high]``, sampled on a log scale when ``log`` (then ``low > 0``).

    Example:
        >>> FloatRange(1.0, 100.0, log=True).describe()
        {'type': 'float', 'low': 1.0, 'high': 100.0, 'log': True}
    """

    kind: ClassVar[str] = "float"

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        super().__post_init__()

    def suggest(self, trial: "optuna.Trial", name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class IntRange(_Range):
    """An integer in ``[low, high]`` (both included), on a log scale when ``log``."""

    kind: ClassVar[str] = "int"

    def __post_init__(self) -> None:
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v for v in (self.low, self.high)):
            raise ValueError(f"an IntRange needs integer bounds, got low={self.low!r}, high={self.high!r}")
        object.__setattr__(self, "low", int(self.low))
        object.__setattr__(self, "high", int(self.high))
        super().__post_init__()

    def suggest(self, trial: "optuna.Trial", name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


Axis = Categorical | FloatRange | IntRange


@dataclass(frozen=True)
class SearchSpace:
    """Named axes to tune and constants every trial passes unchanged.

    Args:
        axes: hyperparameter name -> :data:`Axis`.
        constants: hyperparameter name -> value given to every trial (the schedule's ``gamma``,
            the user's fixed hyperparameters); a name is an axis or a constant, never both.

    A trial's hyperparameters are ``{**constants, **sampled}``. Axes are suggested in sorted
    name order, so a seeded sampler draws them in the same order every time.

    Example:
        >>> SCHEDULE_SPACE.grid_size()
        21
        >>> SCHEDULE_SPACE.without(["step_size"]).grid_size()
        7
    """

    axes: Mapping[str, Axis]
    constants: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        axes = {k: self.axes[k] for k in sorted(self.axes)}
        bad = [k for k, a in axes.items() if not isinstance(a, (Categorical, FloatRange, IntRange))]
        if bad:
            raise TypeError(f"axes {bad} are not Categorical, FloatRange or IntRange")
        both = sorted(set(axes) & set(self.constants))
        if both:
            raise ValueError(f"{both} are both axes and constants of the search space")
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "constants", dict(sorted(self.constants.items())))

    @property
    def is_empty(self) -> bool:
        """No axis left: nothing to tune."""
        return not self.axes

    def grid_size(self) -> float:
        """The number of grid points: the product of the axes' sizes (1 without axes), ``inf``
        unless every axis is :class:`Categorical`."""
        return math.prod(a.size for a in self.axes.values())

    def grid(self) -> dict[str, list[Any]]:
        """``{name: values}`` of every axis (the ``GridSampler`` search space).

        Raises:
            ValueError: an axis is a range (no finite grid).
        """
        ranges = [k for k, a in self.axes.items() if not isinstance(a, Categorical)]
        if ranges:
            raise ValueError(f"the search space has no finite grid: {ranges} are ranges, not categorical axes")
        return {k: list(a.values) for k, a in self.axes.items()}  # type: ignore[union-attr]

    def grid_points(self) -> list[dict[str, Any]]:
        """Every grid point as a dict, in ``itertools.product`` order of the sorted axes."""
        grid = self.grid()
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]

    def suggest(self, trial: "optuna.Trial") -> dict[str, Any]:
        """The trial's sampled values, one ``suggest_*`` call per axis in sorted name order."""
        return {name: axis.suggest(trial, name) for name, axis in self.axes.items()}

    def hyperparameters(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """``{**constants, **sampled}``: what a trial passes to the method."""
        return {**self.constants, **sampled}

    def without(self, names: Iterable[str]) -> "SearchSpace":
        """The space less the axes ``names`` (unknown names are ignored)."""
        drop = set(names)
        return SearchSpace({k: a for k, a in self.axes.items() if k not in drop}, self.constants)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: ``{"axes": {name: {...}}, "constants": {...}, "grid_size": int | None}``."""
        size = self.grid_size()
        return {
            "axes": {k: a.describe() for k, a in self.axes.items()},
            "constants": dict(self.constants),
            "grid_size": int(size) if math.isfinite(size) else None,
        }


#: the AMUN reference code's learning rates (``hyperparam_tune.py``: 1e-1 … 1e-5 and 0.05, 0.005), largest first
SCHEDULE_LRS: tuple[float, ...] = (0.1, 0.05, 0.01, 0.005, 1e-3, 1e-4, 1e-5)
#: the reference's StepLR periods in epochs
SCHEDULE_STEPS: tuple[int, ...] = (1, 5, 10)
#: the reference's StepLR decay factor, held constant
SCHEDULE_GAMMA = 0.1

#: the schedule axes every method is tuned over: 7 learning rates x 3 StepLR periods (21 points), gamma 0.1
SCHEDULE_SPACE = SearchSpace({"lr": Categorical(SCHEDULE_LRS), "step_size": Categorical(SCHEDULE_STEPS)}, {"gamma": SCHEDULE_GAMMA})


__all__ = [
    "Axis",
    "Categorical",
    "FloatRange",
    "IntRange",
    "SCHEDULE_GAMMA",
    "SCHEDULE_LRS",
    "SCHEDULE_SPACE",
    "SCHEDULE_STEPS",
    "SearchSpace",
]
