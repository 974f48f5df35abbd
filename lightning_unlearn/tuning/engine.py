"""The tuning engine: run a plan's trials against the caller's ``evaluate`` and choose the best.

The caller (the benchmark pipeline, or a user) supplies one function,

    evaluate(method: str, hparams: dict, set_index: int) -> Mapping[str, float | None]

which unlearns ``method`` with ``hparams`` on tuning set ``set_index`` (0 … K−1), measures the
result, and returns its figures (at least those the objective reads, e.g. ``avg_gap``). It
raises :class:`~lightning_unlearn.tuning.DivergedError` when the run diverged (see
:func:`~lightning_unlearn.tuning.check_finite`).

A trial evaluates its hyperparameters on the K sets in order; its value is the mean of the K
objective values. The trial's user attribute ``sets`` keeps, per set, ``{"value": objective,
"metrics": figures}`` (the figures' plain scalars). A set that diverges (or whose objective is
not finite) fails the whole trial, without running the sets after it: the trial keeps the user
attribute ``diverged`` (``{"set": k, "reason": ...}``) and the sets done before, counts against
the budget and is never scored. Any other
exception from ``evaluate`` fails the trial and stops the run; the next :func:`run_tuning` on
the same folder re-queues it (see :mod:`lightning_unlearn.tuning.study`).

``evaluate`` must be deterministic (the benchmark seeds every run): a point that TPE proposes
again (it can, on categorical axes) is not re-evaluated; its trial copies the earlier trial's
sets and outcome (the user attribute ``duplicate_of`` names that trial's slot) and still
counts against the budget.

Example (a synthetic objective)::

    plan = plan_tuning("ft", budget=21, n_sets=2, seed=0)
    declaration = plan.declaration()                   # write it to results before any run
    result = run_tuning(plan, evaluate, "results/tuning")
    result.chosen                                      # {"gamma": 0.1, "lr": ..., "step_size": ...}
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lightning_unlearn.tuning.divergence import DivergedError
from lightning_unlearn.tuning.plan import TuningPlan
from lightning_unlearn.tuning.samplers import RETRY_OF_KEY, SLOT_KEY
from lightning_unlearn.tuning.study import DEFAULT_FILE_NAME, DIVERGED_KEY, is_counted, is_diverged, open_study

Evaluate = Callable[[str, dict[str, Any], int], Mapping[str, Any]]
#: the trial user attributes holding the per-set values and figures, and the slot a repeated point copies
SETS_KEY = "sets"
DUPLICATE_KEY = "duplicate_of"


@dataclass(frozen=True)
class TuningResult:
    """The outcome of a tuning study (plain JSON through :meth:`to_dict`).

    Attributes:
        method, objective: what was tuned, by what.
        chosen: the hyperparameters of the best trial, constants included (what to pass to the
            method); ``None`` when no trial was scored (every trial diverged).
        best_value: its mean objective (``None`` likewise).
        best_slot: its slot (``None`` likewise).
        n_trials: trials counted against the budget (complete + diverged).
        n_complete, n_diverged: of which scored, of which diverged.
        history: one record per trial, by slot then trial number (see :func:`trial_record`).
        declaration: the plan's declaration (as stored in the study).
    """

    method: str
    objective: str
    chosen: dict[str, Any] | None
    best_value: float | None
    best_slot: int | None
    n_trials: int
    n_complete: int
    n_diverged: int
    history: list[dict[str, Any]]
    declaration: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The plain scalar figures of ``metrics`` (numbers, strings, booleans, ``None``; non-finite floats as strings)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or v is None or isinstance(v, (str, int)):
            out[str(k)] = v
        elif isinstance(v, float) or (hasattr(v, "__float__") and getattr(v, "ndim", 0) == 0):  # numpy scalars, 0-d tensors
            f = float(v)
            out[str(k)] = f if math.isfinite(f) else repr(f)
    return out


def _state(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        return "diverged" if is_diverged(trial) else "interrupted"
    return trial.state.name.lower()


def trial_record(trial: FrozenTrial, plan: TuningPlan) -> dict[str, Any]:
    """One trial as plain JSON.

    Keys: ``slot``, ``number`` (optuna's), ``state`` (``complete``, ``diverged``, ``interrupted``
    (its process died or ``evaluate`` raised; re-queued), ``running``, ``waiting``),
    ``hparams`` (constants + sampled values), ``value`` (mean objective or ``None``),
    ``sets`` (per tuning set evaluated: ``{"value", "metrics"}``), ``diverged``
    (``{"set", "reason"}`` or ``None``), ``retry_of`` (the trial number it repeats, or
    ``None``), ``duplicate_of`` (the slot whose outcome a repeated point copied, or ``None``),
    ``seconds``.
    """
    return {
        "slot": trial.system_attrs.get(SLOT_KEY),
        "number": trial.number,
        "state": _state(trial),
        "hparams": plan.space.hyperparameters(trial.params),
        "value": trial.value if trial.state == TrialState.COMPLETE else None,
        "sets": trial.user_attrs.get(SETS_KEY, []),
        "diverged": trial.user_attrs.get(DIVERGED_KEY),
        "retry_of": trial.system_attrs.get(RETRY_OF_KEY),
        "duplicate_of": trial.user_attrs.get(DUPLICATE_KEY),
        "seconds": trial.user_attrs.get("seconds"),
    }


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True)


def choose(trials: list[FrozenTrial], n_trials: int) -> FrozenTrial | None:
    """The complete trial of slot < ``n_trials`` with the lowest value; ties to the smallest
    parameters in canonical JSON order (so the choice does not depend on trial order)."""
    scored = [t for t in trials if t.state == TrialState.COMPLETE and int(t.system_attrs.get(SLOT_KEY, t.number)) < n_trials]
    return min(scored, key=lambda t: (t.value, _canonical(t.params)), default=None)


def tuning_result(study: optuna.Study, plan: TuningPlan) -> TuningResult:
    """The :class:`TuningResult` of a study as it stands (runs nothing)."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: (t.system_attrs.get(SLOT_KEY, t.number), t.number))
    best = choose(trials, plan.n_trials)
    return TuningResult(
        method=plan.method,
        objective=plan.objective.name,
        chosen=None if best is None else plan.space.hyperparameters(best.params),
        best_value=None if best is None else best.value,
        best_slot=None if best is None else int(best.system_attrs[SLOT_KEY]),
        n_trials=sum(is_counted(t) for t in trials),
        n_complete=sum(t.state == TrialState.COMPLETE for t in trials),
        n_diverged=sum(is_diverged(t) for t in trials),
        history=[trial_record(t, plan) for t in trials],
        declaration=study.user_attrs.get("declaration", plan.declaration()),
    )


def _earlier_twin(trial: optuna.Trial, params: Mapping[str, Any]) -> FrozenTrial | None:
    """The first counted trial before ``trial`` with the same parameters, if any."""
    for t in trial.study.get_trials(deepcopy=False):
        if t.number != trial.number and is_counted(t) and t.params == params:
            return t
    return None


def _copy_twin(trial: optuna.Trial, twin: FrozenTrial) -> float:
    """Give ``trial`` the outcome of its earlier twin (no re-evaluation)."""
    slot = int(twin.system_attrs.get(SLOT_KEY, twin.number))
    trial.set_user_attr(DUPLICATE_KEY, slot)
    trial.set_user_attr(SETS_KEY, twin.user_attrs.get(SETS_KEY, []))
    if is_diverged(twin):
        trial.set_user_attr(DIVERGED_KEY, twin.user_attrs[DIVERGED_KEY])
        raise DivergedError(f"the same parameters diverged in slot {slot}: {twin.user_attrs[DIVERGED_KEY]['reason']}")
    trial.set_user_attr("seconds", 0.0)
    assert twin.value is not None
    return twin.value


def _objective(plan: TuningPlan, evaluate: Evaluate) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        sampled = plan.space.suggest(trial)
        twin = _earlier_twin(trial, sampled)
        if twin is not None:
            return _copy_twin(trial, twin)
        hparams = plan.space.hyperparameters(sampled)
        sets: list[dict[str, Any]] = []
        start = time.perf_counter()
        for k in range(plan.n_sets):
            try:
                figures = evaluate(plan.method, dict(hparams), k)
                if not isinstance(figures, Mapping):
                    raise TypeError(f"evaluate must return a mapping of figures, got {type(figures).__name__}")
                value = plan.objective.value(figures)
                if not math.isfinite(value):
                    raise DivergedError(f"the objective {plan.objective.name!r} is {value} on tuning set {k}")
            except DivergedError as err:
                trial.set_user_attr(SETS_KEY, sets)
                trial.set_user_attr(DIVERGED_KEY, {"set": k, "reason": str(err)})
                raise
            sets.append({"value": value, "metrics": _json_metrics(figures)})
        trial.set_user_attr(SETS_KEY, sets)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return statistics.fmean(s["value"] for s in sets)

    return objective


def run_tuning(
    plan: TuningPlan,
    evaluate: Evaluate,
    folder: str | Path | None = None,
    *,
    file_name: str = DEFAULT_FILE_NAME,
    storage: "str | optuna.storages.BaseStorage | None" = None,
) -> TuningResult:
    """Run (or resume) the study of ``plan`` in ``folder/file_name`` (or in ``storage``) until its budget is used.

    Completed and diverged trials are never rerun; trials an interrupted run left are rerun
    first with their parameters (:func:`~lightning_unlearn.tuning.study.open_study`). A plan
    with nothing to tune (every hyperparameter fixed) runs nothing and chooses its constants.

    Args:
        plan: from :func:`~lightning_unlearn.tuning.plan_tuning`.
        evaluate: ``evaluate(method, hparams, set_index) -> figures`` (module docstring).
        folder: where the SQLite file lives (created when missing).
        file_name: the file's name (default ``tuning.sqlite3``; one file may hold every method's study).
        storage: an optuna storage or its URL (e.g. ``sqlite:///out/study.sqlite3``), used instead
            of ``folder/file_name`` (the benchmark keeps every study of a run in one storage).

    Returns:
        The :class:`TuningResult`.

    Raises:
        StudyMismatchError: the folder holds this study under another declaration.
        Exception: whatever ``evaluate`` raises other than :class:`DivergedError` (the trial is
            failed and re-queued by the next call).
    """
    if plan.sampler_kind == "none":
        return TuningResult(plan.method, plan.objective.name, dict(plan.space.constants), None, None, 0, 0, 0, [], plan.declaration())
    study = open_study(plan, folder, file_name=file_name, storage=storage)
    remaining = plan.n_trials - sum(is_counted(t) for t in study.get_trials(deepcopy=False))
    if remaining > 0:
        study.optimize(_objective(plan, evaluate), n_trials=remaining, catch=(DivergedError,))
    return tuning_result(study, plan)


__all__ = ["Evaluate", "TuningResult", "choose", "run_tuning", "trial_record", "tuning_result"]
