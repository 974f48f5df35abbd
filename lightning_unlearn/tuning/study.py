"""Storage of tuning studies: one SQLite file per folder (or any optuna storage), one study per (method, objective).

:func:`open_study` creates the study ``"<method>/<objective>"`` in ``folder/tuning.sqlite3``
(or in the optuna storage it is given: an RDB URL such as ``sqlite:///out/study.sqlite3``, or a
storage object; or opens it), with the plan's declaration and seed in the study's user attributes. Opening
an existing study under another declaration (other space, budget, objective formula, sets,
seed, context, ...) raises :class:`StudyMismatchError` instead of mixing trials of two plans.

**Resume.** Opening also repairs what an interrupted run left (:func:`requeue_unfinished`):

* a ``RUNNING`` trial whose process is gone is marked ``FAIL`` and re-queued;
* a ``FAIL`` trial that did not diverge (its ``evaluate`` raised, or it was interrupted by
  ``KeyboardInterrupt``) is re-queued, once.

A re-queued trial is a new ``WAITING`` trial with the same parameters and slot, marked as
optuna marks retries (system attributes ``failed_trial`` and ``retry_history``); the engine
runs waiting trials first. The failed original stays in the study, so no trial is ever
counted twice: only ``COMPLETE`` and diverged trials count against the budget.

**Who is gone.** :func:`open_study` assumes one process per study (:func:`run_tuning`): every
``RUNNING`` trial it finds was left by a killed run. Processes sharing a study (the benchmark's
workers) open it with ``repair=False`` and repair it under their shared lock, where a ``RUNNING``
trial counts as left behind only when its holder is dead
(:meth:`lightning_unlearn.tuning.sharing.Claims.abandoned`: the holder record each worker writes on
the trials it runs, its pid or its heartbeat).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from lightning_unlearn.tuning.plan import TuningPlan
from lightning_unlearn.tuning.samplers import RETRY_HISTORY_KEY, RETRY_OF_KEY, SLOT_KEY
from lightning_unlearn.tuning.sharing import SQLITE_TIMEOUT_S, open_storage_url

#: the storage file in the folder the caller gives
DEFAULT_FILE_NAME = "tuning.sqlite3"
#: the study user attributes holding the plan's declaration and seed
DECLARATION_KEY = "declaration"
SEED_KEY = "seed"
#: the trial user attribute marking a diverged trial (``{"set": k, "reason": ...}``)
DIVERGED_KEY = "diverged"


class StudyMismatchError(ValueError):
    """An existing study was declared differently from the plan it is opened with."""


def storage_path(folder: str | Path, file_name: str = DEFAULT_FILE_NAME) -> Path:
    """``folder/file_name``, absolute (the folder is created when missing)."""
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / file_name


def open_storage(folder: str | Path, file_name: str = DEFAULT_FILE_NAME) -> optuna.storages.RDBStorage:
    """The optuna storage of ``folder/file_name`` (SQLite; created when missing)."""
    url = f"sqlite:///{storage_path(folder, file_name)}"
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})


def _differences(stored: Any, declared: Any, prefix: str = "") -> list[str]:
    """``"key: stored -> declared"`` for every leaf that differs (dicts recursed, other values compared whole)."""
    if isinstance(stored, dict) and isinstance(declared, dict):
        out = []
        for k in sorted(set(stored) | set(declared)):
            out += _differences(stored.get(k, "<absent>"), declared.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    if stored == declared:
        return []
    return [f"{prefix[:-1]}: {json.dumps(stored)[:120]} in the study, {json.dumps(declared)[:120]} now"]


def check_declaration(study: optuna.Study, plan: TuningPlan, where: str = "") -> None:
    """Raise :class:`StudyMismatchError` if ``study`` was declared otherwise than ``plan``.

    The error names every differing field (dotted path, stored and new value) and says how to
    proceed (another folder, or deleting the study's file to start over).
    """
    stored = study.user_attrs.get(DECLARATION_KEY)
    declared = plan.declaration()
    if stored is None:
        raise StudyMismatchError(f"the study {study.study_name!r}{where} holds no tuning declaration: it was not created by lightning_unlearn.tuning")
    diffs = _differences(stored, declared)
    if diffs:
        raise StudyMismatchError(
            f"the study {study.study_name!r}{where} was declared with another plan; resuming it would mix trials of two plans. "
            f"Differences: {'; '.join(diffs)}. Use another folder, or delete the file to start over."
        )


def resolve_storage(
    folder: str | Path | None, file_name: str = DEFAULT_FILE_NAME, storage: "str | optuna.storages.BaseStorage | None" = None
) -> tuple[optuna.storages.BaseStorage, str]:
    """``(storage, where)``: the storage object of ``storage`` (a URL or a storage) or else of
    ``folder/file_name``, and the words naming it in errors (a URL string: an RDB URL, or
    ``journal://PATH``, see :func:`~lightning_unlearn.tuning.sharing.open_storage_url`).

    Raises:
        ValueError: neither ``folder`` nor ``storage`` given.
    """
    if storage is not None:
        if isinstance(storage, str):
            return open_storage_url(storage), f" in {storage}"
        return storage, ""
    if folder is None:
        raise ValueError("a tuning study needs a folder (for its SQLite file) or a storage")
    return open_storage(folder, file_name), f" in {storage_path(folder, file_name)}"


def open_study(
    plan: TuningPlan,
    folder: str | Path | None = None,
    *,
    file_name: str = DEFAULT_FILE_NAME,
    storage: "str | optuna.storages.BaseStorage | None" = None,
    name: str | None = None,
    repair: bool = True,
) -> optuna.Study:
    """Create or reopen the study of ``plan`` in ``folder/file_name`` (or in ``storage``, an optuna
    storage or its URL), check its declaration and re-queue what an interrupted run left (see the
    module docstring).

    Args:
        plan: the tuning plan.
        folder, file_name, storage: where (see :func:`resolve_storage`).
        name: the study's name in the storage (default ``plan.study_name``; a benchmark run with a
            study name of its own keeps its tuning studies apart this way).
        repair: re-queue the trials an interrupted run left, taking every ``RUNNING`` trial for
            one (one process per study); ``False`` for workers sharing the study, which repair it
            under their lock.

    Raises:
        StudyMismatchError: the study exists with another declaration.
        ValueError: the plan has nothing to tune (every hyperparameter fixed).
    """
    storage, where = resolve_storage(folder, file_name, storage)
    study = optuna.create_study(
        storage=storage, study_name=name or plan.study_name, sampler=plan.make_sampler(), direction="minimize", load_if_exists=True
    )
    if DECLARATION_KEY not in study.user_attrs and not study.get_trials(deepcopy=False):
        study.set_user_attr(DECLARATION_KEY, plan.declaration())
        study.set_user_attr(SEED_KEY, plan.seed)
    check_declaration(study, plan, where)
    if repair:
        requeue_unfinished(study)
    return study


def is_diverged(trial: FrozenTrial) -> bool:
    """A failed trial that diverged (counted against the budget, never scored)."""
    return trial.state == TrialState.FAIL and DIVERGED_KEY in trial.user_attrs


def is_counted(trial: FrozenTrial) -> bool:
    """A trial that used up a slot of the budget: complete or diverged."""
    return trial.state == TrialState.COMPLETE or is_diverged(trial)


def needs_repair(trials: list[FrozenTrial], abandoned: Callable[[FrozenTrial], bool]) -> bool:
    """Whether :func:`requeue_unfinished` has something to do: an abandoned ``RUNNING`` trial, or a
    non-diverged ``FAIL`` trial not re-queued yet."""
    retried = {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY_KEY, [])}
    return any(
        (t.state == TrialState.RUNNING and abandoned(t)) or (t.state == TrialState.FAIL and not is_diverged(t) and t.number not in retried)
        for t in trials
    )


def requeue_unfinished(study: optuna.Study, abandoned: Callable[[FrozenTrial], bool] = lambda t: True) -> list[int]:
    """Fail the abandoned ``RUNNING`` trials and re-queue them and every unretried, non-diverged failed trial.

    Args:
        study: the study.
        abandoned: which ``RUNNING`` trials nobody works on any more (default: all of them, for one
            process per study; workers pass :meth:`~lightning_unlearn.tuning.sharing.Claims.abandoned`
            and call this under their lock).

    Returns:
        The numbers of the trials re-queued (their retries are new ``WAITING`` trials with the
        same parameters, slot and grid point).
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY_KEY, [])}
    requeued = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            if not abandoned(t):
                continue
            try:
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:  # finished meanwhile: nothing to repair
                continue
        elif not (t.state == TrialState.FAIL and not is_diverged(t) and t.number not in retried):
            continue
        kept = {k: v for k, v in t.system_attrs.items() if k in (SLOT_KEY, "grid_id", "search_space")}
        kept[RETRY_OF_KEY] = t.system_attrs.get(RETRY_OF_KEY, t.number)
        kept[RETRY_HISTORY_KEY] = [*t.system_attrs.get(RETRY_HISTORY_KEY, []), t.number]
        study.add_trial(
            optuna.trial.create_trial(state=TrialState.WAITING, params=t.params, distributions=t.distributions, system_attrs=kept)
        )
        requeued.append(t.number)
    return requeued


__all__ = [
    "DEFAULT_FILE_NAME",
    "StudyMismatchError",
    "check_declaration",
    "is_counted",
    "is_diverged",
    "needs_repair",
    "open_storage",
    "open_study",
    "requeue_unfinished",
    "resolve_storage",
    "storage_path",
]
