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
again (it can, on categorical axes) is not re-evaluated; its trial copies the outcome of the
trial of the smallest earlier slot with the same point (the user attribute ``duplicate_of``
names that slot) and still counts against the budget.

**One trial at a time, from any number of processes.** :func:`run_next_trial` starts the next
trial of a study if it may start now (:func:`next_trial`: the waiting retries first; a grid slot
or a TPE startup slot at once; a later TPE slot once every earlier slot has finished, so its
proposal is the one a single process makes) and runs it. Workers sharing the storage pass their
:class:`~lightning_unlearn.tuning.sharing.Claims` (the lock under which the trial is taken, the
holder record and heartbeat while it runs); :func:`run_tuning` is the single-process loop over it.

Example (a synthetic objective)::

    plan = plan_tuning("ft", budget=21, n_sets=2, seed=0)
    declaration = plan.declaration()                   # write it to results before any run
    result = run_tuning(plan, evaluate, "results/tuning")
    result.chosen                                      # {"gamma": 0.1, "lr": ..., "step_size": ...}
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from lightning_unlearn.tuning.divergence import DivergedError
from lightning_unlearn.tuning.plan import TuningPlan
from lightning_unlearn.tuning.samplers import RETRY_OF_KEY, SLOT_KEY, is_retry
from lightning_unlearn.tuning.sharing import Claims
from lightning_unlearn.tuning.study import DEFAULT_FILE_NAME, DIVERGED_KEY, is_counted, is_diverged, needs_repair, open_study, requeue_unfinished

log = logging.getLogger(__name__)

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


def _slot(trial: FrozenTrial) -> int:
    return int(trial.system_attrs.get(SLOT_KEY, trial.number))


def _earlier_twin(study: optuna.Study, slot: int, params: Mapping[str, Any], claims: Claims) -> FrozenTrial | None:
    """The counted trial with ``params`` in the smallest slot before ``slot``, if any; while such a trial
    is still running in another live process, wait for it (so any number of workers records the
    duplicates a single process records). An earlier twin whose process died is not waited for (its
    retry may come after this trial): this trial is then evaluated (the same values, memoised units)
    and records no ``duplicate_of``."""
    while True:
        same = [t for t in study.get_trials(deepcopy=False) if _slot(t) < slot and t.params == params]
        if not any(claims.live(t) for t in same):
            counted = [t for t in same if is_counted(t)]
            return min(counted, key=lambda t: (_slot(t), t.number), default=None)
        claims.wait()


def _copy_twin(trial: optuna.Trial, twin: FrozenTrial) -> float:
    """Give ``trial`` the outcome of its earlier twin (no re-evaluation)."""
    slot = _slot(twin)
    trial.set_user_attr(DUPLICATE_KEY, slot)
    trial.set_user_attr(SETS_KEY, twin.user_attrs.get(SETS_KEY, []))
    if is_diverged(twin):
        trial.set_user_attr(DIVERGED_KEY, twin.user_attrs[DIVERGED_KEY])
        raise DivergedError(f"the same parameters diverged in slot {slot}: {twin.user_attrs[DIVERGED_KEY]['reason']}")
    trial.set_user_attr("seconds", 0.0)
    assert twin.value is not None
    return twin.value


def _objective(plan: TuningPlan, evaluate: Evaluate, claims: Claims) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        sampled = plan.space.suggest(trial)
        twin = _earlier_twin(trial.study, int(trial.study._storage.get_trial_system_attrs(trial._trial_id).get(SLOT_KEY, trial.number)), sampled, claims)
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


@dataclass(frozen=True)
class NextTrial:
    """Where a study stands, for the process deciding whether to start a trial (:func:`next_trial`).

    Attributes:
        done: every slot of the budget has a counted trial (complete or diverged).
        slot: the slot the next ``study.ask()`` takes (a waiting retry's, else the next fresh one);
            ``None`` when every slot is taken (counted, running or waiting).
        ready: that slot may start now: a retry or a slot with its parameters, a grid slot, a TPE
            startup slot, or a TPE slot whose earlier slots have all finished.
        repair: a trial needs :func:`~lightning_unlearn.tuning.study.requeue_unfinished` (a running
            trial whose process is gone, a failed one not re-queued yet).
    """

    done: bool
    slot: int | None
    ready: bool
    repair: bool


def next_trial(study: optuna.Study, plan: TuningPlan, abandoned: Callable[[FrozenTrial], bool] = lambda t: False) -> NextTrial:
    """Where ``study`` stands (reads only; see :class:`NextTrial`).

    Args:
        study: the plan's study.
        plan: its plan.
        abandoned: which ``RUNNING`` trials nobody works on any more (default: none).
    """
    trials = study.get_trials(deepcopy=False)
    counted = {_slot(t) for t in trials if is_counted(t)}
    done = all(s in counted for s in range(plan.n_trials))
    repair = needs_repair(trials, abandoned)

    def earlier_done(slot: int) -> bool:
        fresh_ok = plan.sampler_kind == "grid" or slot < plan.startup_trials
        return fresh_ok or all(s in counted for s in range(slot))

    waiting = [t for t in trials if t.state == TrialState.WAITING]
    if waiting:
        first = min(waiting, key=lambda t: t.number)
        slot = _slot(first)
        return NextTrial(done, slot, bool(first.params) or earlier_done(slot), repair)
    slot = len(trials) - sum(is_retry(t) for t in trials)
    if slot >= plan.n_trials:
        return NextTrial(done, None, False, repair)
    return NextTrial(done, slot, earlier_done(slot), repair)


def run_next_trial(plan: TuningPlan, evaluate: Evaluate, study: optuna.Study, claims: Claims | None = None) -> bool:
    """Start and run the next trial of ``study`` if one may start now (:func:`next_trial`).

    The trial is taken under ``claims``' lock (repairing what dead processes left first) and run
    with this process's holder record and heartbeat, so any number of processes may call this on
    one study. A diverged trial is failed and counted; any other exception (or ``KeyboardInterrupt``)
    fails the trial, which the next repair re-queues, and propagates.

    Args:
        plan: the plan of ``study``.
        evaluate: ``evaluate(method, hparams, set_index) -> figures`` (module docstring).
        study: from :func:`~lightning_unlearn.tuning.study.open_study`.
        claims: the storage's :class:`~lightning_unlearn.tuning.sharing.Claims` (default: one
            process, :meth:`~lightning_unlearn.tuning.sharing.Claims.private`).

    Returns:
        ``True`` if a trial ran; ``False`` if none may start now (the study is done, every slot is
        taken, or the next TPE slot waits for earlier ones that other processes run).
    """
    claims = claims or Claims.private()
    state = next_trial(study, plan, claims.abandoned)
    if not (state.ready or state.repair):
        return False
    with claims.lock():
        # Under the lock every other process's trial carries its holder record (each marks its trial
        # before releasing), so a RUNNING trial judged abandoned here is one whose process is gone.
        if next_trial(study, plan, claims.abandoned).repair:
            requeue_unfinished(study, claims.abandoned)
        state = next_trial(study, plan, claims.abandoned)
        if not state.ready:
            return False
        trial = study.ask()
        claims.mark(study._storage, trial._trial_id)
    with claims.hold(study._storage, trial._trial_id):
        _run(study, trial, _objective(plan, evaluate, claims))
    return True


def _run(study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], float]) -> None:
    """Run ``objective`` on ``trial`` and tell the study: its value, ``FAIL`` when it diverged, ``FAIL`` and raise otherwise."""
    try:
        value = objective(trial)
    except DivergedError:
        _tell(study, trial, state=TrialState.FAIL)
    except BaseException:
        with contextlib.suppress(Exception):
            _tell(study, trial, state=TrialState.FAIL)
        raise
    else:
        _tell(study, trial, value)


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None, state: TrialState | None = None) -> None:
    try:
        study.tell(trial, value, state=state)
    except UpdateFinishedTrialError:  # another process judged this one dead and failed the trial (it is re-queued)
        log.warning("trial %d of %s was failed by another process meanwhile; its retry runs it again", trial.number, study.study_name)


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
    first with their parameters (:func:`~lightning_unlearn.tuning.study.open_study`: one process
    per study; processes sharing one call :func:`run_next_trial` with their claims). A plan
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
    claims = Claims.private()
    while run_next_trial(plan, evaluate, study, claims):
        pass
    return tuning_result(study, plan)


__all__ = ["Evaluate", "NextTrial", "TuningResult", "choose", "next_trial", "run_next_trial", "run_tuning", "trial_record", "tuning_result"]
