"""A tuning plan: one method's space, budget, objective, tuning sets and seed, declared up front.

:func:`plan_tuning` builds a :class:`TuningPlan`; its :meth:`~TuningPlan.declaration` is the
plain-JSON record of everything that decides the outcome (the caller writes it to its results
before any evaluation run, and the study stores it so that a study is never resumed under
another plan).

**Equal budget.** Every method gets the same budget N: a space of G ≤ N grid points (every axis
categorical) is searched exhaustively by a grid sampler in G trials (more trials would only
repeat points); any other space gets N trials of seeded TPE, the first
``n_startup_trials`` of them drawn at random.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

from lightning_unlearn.search_space import SearchSpace
from lightning_unlearn.seeding import derive_seed
from lightning_unlearn.tuning.methods import method_class, method_space
from lightning_unlearn.tuning.objectives import DEFAULT_OBJECTIVE, Objective, get_objective
from lightning_unlearn.tuning.samplers import SlotGridSampler, SlotTPESampler

#: layout version of the declaration; bump it when its meaning changes
DECLARATION_VERSION = 1
#: TPE's random startup trials: half the budget, at most this many (optuna's default)
MAX_STARTUP_TRIALS = 10
DIVERGENCE_RULE = (
    "a trial diverges when its loss, weights or outputs become non-finite on any of its tuning sets "
    "(the remaining sets are not run): it is failed in the study, counts against the budget and is never scored"
)
SELECTION_RULE = "the lowest mean objective over the tuning sets; ties go to the smallest parameters in canonical JSON order"

SamplerKind = Literal["grid", "tpe", "none"]


def _jsonable(value: Any, what: str) -> Any:
    """``value`` after a JSON round trip (tuples become lists), or ``ValueError`` naming ``what``."""
    try:
        return json.loads(json.dumps(value, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be plain JSON (numbers, strings, booleans, lists, dicts): {err}") from None


def default_startup_trials(budget: int) -> int:
    """``min(10, max(1, budget // 2))``: random trials before TPE's model takes over."""
    return min(MAX_STARTUP_TRIALS, max(1, budget // 2))


@dataclass(frozen=True)
class TuningPlan:
    """What a tuning study of one method is: built by :func:`plan_tuning` (which validates it).

    Attributes:
        method: the registry name.
        space: the search space (schedule axes + the method's own, less fixed ones).
        objective: the declared objective.
        budget: N, the trials every method is given.
        n_sets: K, the tuning sets each trial is evaluated on (its value is the mean over them).
        seed: the study seed.
        kind: the forgetting setting (``"random"``, ``"class"``), or ``None`` when not declared.
        startup_trials: TPE's random startup trials.
        constant_liar: TPE's option for processes sharing a study.
        context: plain-JSON facts the caller wants a resumed study to match (data, forget sets, epochs, ...).
    """

    method: str
    space: SearchSpace
    objective: Objective
    budget: int
    n_sets: int
    seed: int
    kind: str | None = None
    startup_trials: int = MAX_STARTUP_TRIALS
    constant_liar: bool = True
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def study_name(self) -> str:
        """``"<method>/<objective>"``: one study per (method, objective) in a storage file."""
        return f"{self.method}/{self.objective.name}"

    @property
    def sampler_kind(self) -> SamplerKind:
        """``"grid"`` when the space has at most ``budget`` grid points, ``"tpe"`` otherwise, ``"none"`` without axes."""
        if self.space.is_empty:
            return "none"
        return "grid" if self.space.grid_size() <= self.budget else "tpe"

    @property
    def n_trials(self) -> int:
        """The trials the study runs: the grid size for a grid, ``budget`` for TPE, 0 without axes."""
        kind = self.sampler_kind
        return 0 if kind == "none" else int(self.space.grid_size()) if kind == "grid" else self.budget

    def grid_seed(self) -> int:
        return derive_seed(self.seed, "tuning", self.study_name, "grid")

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """The study's sampler: :class:`~lightning_unlearn.tuning.samplers.SlotGridSampler` or
        :class:`~lightning_unlearn.tuning.samplers.SlotTPESampler` (see :attr:`sampler_kind`)."""
        kind = self.sampler_kind
        if kind == "grid":
            return SlotGridSampler(self.space.grid(), seed=self.grid_seed())
        if kind == "tpe":
            return SlotTPESampler(seed=self.seed, key=self.study_name, n_startup_trials=self.startup_trials, constant_liar=self.constant_liar)
        raise ValueError(f"{self.method}: nothing to tune (every hyperparameter is fixed), so the plan has no sampler")

    def sampler_declaration(self) -> dict[str, Any]:
        kind = self.sampler_kind
        if kind == "grid":
            return {"kind": "grid", "order_seed": self.grid_seed()}
        if kind == "tpe":
            return {
                "kind": "tpe", "n_startup_trials": self.startup_trials, "multivariate": True, "constant_liar": self.constant_liar,
                "trial_seed": "derive_seed(seed, 'tuning', study, 'tpe', slot)", "optuna": optuna.__version__,
            }
        return {"kind": "none"}

    def declaration(self) -> dict[str, Any]:
        """Everything that decides the outcome, as plain JSON (stored in the study; compared on resume).

        Keys: ``version``, ``study``, ``method``, ``kind``, ``objective`` (``name``, ``formula``,
        ``requires``), ``budget``, ``n_trials``, ``n_sets``, ``seed``, ``space`` (axes, constants,
        grid size), ``sampler`` (kind and its settings; for TPE the optuna version, since its
        proposals may change between versions), ``divergence``, ``selection``, ``context``.
        """
        return _jsonable(
            {
                "version": DECLARATION_VERSION,
                "study": self.study_name,
                "method": self.method,
                "kind": self.kind,
                "objective": {"name": self.objective.name, "formula": self.objective.formula, "requires": list(self.objective.requires)},
                "budget": self.budget,
                "n_trials": self.n_trials,
                "n_sets": self.n_sets,
                "seed": self.seed,
                "space": self.space.describe(),
                "sampler": self.sampler_declaration(),
                "divergence": DIVERGENCE_RULE,
                "selection": SELECTION_RULE,
                "context": dict(self.context),
            },
            f"the tuning declaration of {self.method!r}",
        )


def _check_int(value: Any, name: str, minimum: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{why}, got {value!r}")
    return value


def plan_tuning(
    method: str,
    *,
    budget: int,
    n_sets: int,
    seed: int,
    objective: str = DEFAULT_OBJECTIVE,
    fixed: Mapping[str, Any] | None = None,
    kind: Literal["random", "class"] | None = None,
    context: Mapping[str, Any] | None = None,
    startup_trials: int | None = None,
    constant_liar: bool = True,
) -> TuningPlan:
    """The tuning plan of ``method`` (see the module docstring for the budget rule).

    Args:
        method: a registered method name.
        budget: N >= 1, the trials every method is given.
        n_sets: K >= 2, the tuning sets each trial is evaluated on (one set would let the
            chosen values fit the noise of a single forget set).
        seed: the study seed (grid order, TPE draws).
        objective: a name of :data:`~lightning_unlearn.tuning.OBJECTIVES` (default ``"avg_gap"``).
        fixed: hyperparameters given by the user: passed to every trial, their axes removed.
            Pass everything else that shapes a run here too (e.g. ``epochs``), so a resumed
            study checks it.
        kind: the forgetting setting; when given, the objective and the method must apply to it.
        context: plain-JSON facts a resumed study must match (data set, forget sets, ...).
        startup_trials: TPE's random startup trials (default :func:`default_startup_trials`).
        constant_liar: TPE's option for processes sharing the study (default ``True``).

    Raises:
        ValueError: a bad budget, ``n_sets``, seed, objective, kind, fixed hyperparameter,
            startup count or non-JSON ``fixed``/``context``, each naming the value and what is allowed.

    Example:
        >>> plan = plan_tuning("ft", budget=21, n_sets=2, seed=0)
        >>> plan.sampler_kind, plan.n_trials, plan.study_name
        ('grid', 21, 'ft/avg_gap')
        >>> plan_tuning("salun", budget=21, n_sets=2, seed=0).sampler_kind
        'tpe'
    """
    cls = method_class(method)
    budget = _check_int(budget, "budget", 1)
    n_sets = _check_int(n_sets, "n_sets", 2, " (the objective is a mean over at least two tuning sets)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    obj = get_objective(objective)
    if kind is not None:
        if kind not in ("random", "class"):
            raise ValueError(f"kind must be 'random' or 'class', got {kind!r}")
        if kind not in obj.kinds:
            raise ValueError(f"objective {obj.name!r} applies to {' and '.join(obj.kinds)} forgetting, not to {kind} forgetting")
        if not any(k == kind for k, _ in cls.supported):
            raise ValueError(f"method {cls.name!r} does not apply to {kind} forgetting")
    space = method_space(cls, _jsonable(dict(fixed or {}), "fixed hyperparameters"))
    start = default_startup_trials(budget) if startup_trials is None else _check_int(startup_trials, "startup_trials", 1)
    return TuningPlan(
        method=cls.name, space=space, objective=obj, budget=budget, n_sets=n_sets, seed=seed, kind=kind,
        startup_trials=start, constant_liar=bool(constant_liar), context=_jsonable(dict(context or {}), "context"),
    )


__all__ = ["DECLARATION_VERSION", "TuningPlan", "default_startup_trials", "plan_tuning"]
