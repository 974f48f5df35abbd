"""The storage of a benchmark run: one optuna storage holding its declaration, every measured run and its tuning studies.

Everything a run measures lives in one optuna storage (by default ``sqlite:///OUT/study.sqlite3``
inside the output folder, ``--storage URL`` otherwise, in memory without either), and
``results.json`` / ``report.md`` are built from that storage alone
(:func:`lightning_unlearn.pipeline.results.build_results`). Layout:

* study ``"runs"`` (:data:`RUNS_STUDY`): one trial per **unit of work**, a measured run. The
  unit's key is the canonical JSON of what determines the run (:func:`unit_key`; e.g.
  ``{"method": "amun", "hparams": {...}, "original": 0, "forget_set": "random:0.2@1"}``); the
  trial's one fixed parameter, ``"unit"`` (:data:`UNIT_PARAM`, an integer), is its 52-bit hash
  (:func:`unit_id`; optuna needs one distribution per parameter name, so not the text), and the
  user attribute ``key`` the text. Its other user attributes hold the outcome: ``unit`` (the key
  as a dict), ``figures`` (every audit figure), ``cells`` (the
  gaps to the forget set's retrained models), ``hparams``, ``diagnostics``, ``seconds``, and for
  some units ``roc`` / ``fastclip_norms`` / ``models`` / ``star`` / ``sets``; its value is the
  run's wall seconds. A run that diverged is a ``FAIL`` trial with the user attribute
  ``diverged`` (``{"reason"}``): an outcome too, never rerun. The study's user attribute
  ``declaration`` holds the run's declaration (settings, design, recipes, tuning plans), written
  before the first unit runs.
* studies ``"<method>/<objective>"``: the tuning studies of :mod:`lightning_unlearn.tuning`
  (one per method and declared objective, each with its plan's declaration).

* study ``"runs.lock"``: the lock under which workers take units and tuning trials
  (:class:`~lightning_unlearn.tuning.sharing.Claims`; one short trial per decision).
* the study user attributes ``worker:<host>:<pid>:<start>`` of ``"runs"``: what each worker did
  (:meth:`RunStore.record_worker`: models trained and loaded, units run and found, seconds).

A run may be given another study name (``--study NAME``): its studies are then ``NAME``,
``NAME.lock`` and ``NAME/<method>/<objective>``, so one database can hold several runs.

**Units are idempotent and memoised.** :meth:`RunStore.run` looks the key up first and runs the
unit only when no outcome is stored, so the same unlearning run needed twice (the same grid point
under two objectives, a tuning trial TPE proposes again, a rerun of an interrupted job) runs once.

**Units are claimed.** Any number of processes may share the storage (:mod:`lightning_unlearn.tuning.sharing`):
a unit runs as a ``RUNNING`` trial created, under the run's lock, with the unit as fixed parameter and
the process's holder record, renewed by a heartbeat while the unit runs, then told ``COMPLETE`` (or
``FAIL`` with ``diverged``). A process that wants a unit another live process runs waits for its
outcome (:meth:`RunStore.run`) or does other work first (:meth:`RunStore.try_run`). A unit
interrupted by an exception or a signal is told ``FAIL`` and runs again when next claimed; one whose
process was killed stays ``RUNNING`` until a process judges its holder dead (same host: its pid has
ended; another host: no heartbeat for ``stale_after`` seconds), fails it and runs the unit. A
``RUNNING`` trial without a holder record (left by a release that assumed one process per storage)
counts as left behind. Failed trials are never outcomes, so nothing is counted twice.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from lightning_unlearn.cache_lock import Holder, LockPolicy
from lightning_unlearn.pipeline.config_values import ConfigError
from lightning_unlearn.tuning.divergence import DivergedError
from lightning_unlearn.tuning.sharing import Claims, open_storage_url, storage_file

log = logging.getLogger(__name__)

RUNS_STUDY = "runs"
UNIT_PARAM = "unit"
DECLARATION_KEY = "declaration"
DIVERGED_KEY = "diverged"
#: the storage file inside the output folder (``--storage`` unset)
STUDY_FILE = "study.sqlite3"
#: the prefix of the runs study's user attributes recording each worker (:meth:`RunStore.record_worker`)
WORKER_PREFIX = "worker:"
#: declaration fields that say where things are, not what is measured (not compared on resume)
UNCOMPARED = ("cache_dir", "storage")


class StoreMismatchError(ConfigError):
    """The storage holds a run declared otherwise (another config, design or library version)."""


def unit_key(**parts: Any) -> str:
    """The canonical JSON of a unit (sorted keys, no spaces): equal units, equal keys.

    Example:
        >>> unit_key(method="ft", original=0, hparams={"lr": 0.1, "epochs": 5}, forget_set="random:0.2@1")
        '{"forget_set":"random:0.2@1","hparams":{"epochs":5,"lr":0.1},"method":"ft","original":0}'
    """
    return json.dumps(jsonable(parts), sort_keys=True, separators=(",", ":"), allow_nan=False)


#: the distribution of the ``unit`` parameter: 52-bit unit ids (exact as optuna's float representation)
UNIT_DISTRIBUTION = IntDistribution(0, 2**52 - 1)


def unit_id(key: str) -> int:
    """The 52-bit id of a unit key (the first 13 hex digits of its SHA-256), the trial's ``unit`` parameter."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:13], 16)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: numpy and torch scalars as numbers, tuples as lists, non-finite floats as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # arrays and tensors
        return jsonable(value.tolist())
    if isinstance(value, float) or hasattr(value, "__float__"):
        f = float(value)
        if hasattr(value, "dtype") and "int" in str(value.dtype):
            return int(f)
        return f if math.isfinite(f) else None
    return str(value)


def default_storage_url(out: str | Path) -> str:
    """``sqlite:///OUT/study.sqlite3`` (absolute)."""
    return f"sqlite:///{Path(out).expanduser().absolute() / STUDY_FILE}"


def sqlite_path(url: str | None) -> Path | None:
    """The file of a ``sqlite:///`` URL (``None`` for other URLs)."""
    if url and url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def check_study_name(name: str) -> str:
    """``name`` if it can name a run's studies (not empty, no ``/`` or ``:``, not ending in ``.lock``).

    Raises:
        ConfigError: naming the bad name and what is allowed.
    """
    if not name or "/" in name or ":" in name or name.endswith(".lock") or name != name.strip():
        raise ConfigError(f"--study must be a name without '/', ':' or surrounding spaces, not ending in '.lock'; got {name!r}")
    return name


def differences(stored: Any, declared: Any, prefix: str = "") -> list[str]:
    """``"key: stored -> declared"`` for every leaf that differs (dicts recursed; lists compared whole)."""
    if isinstance(stored, dict) and isinstance(declared, dict):
        out = []
        for k in sorted(set(stored) | set(declared)):
            if k in UNCOMPARED:
                continue
            out += differences(stored.get(k, "<absent>"), declared.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    if stored == declared:
        return []
    return [f"{prefix[:-1]} {json.dumps(stored)[:60]} in the study, {json.dumps(declared)[:60]} now"]


def _unit(key: str, unit: Mapping[str, Any] | None) -> Any:
    """The unit as a dict: ``unit``, else the key's JSON, else ``{"key": key}``."""
    if unit is not None:
        return jsonable(unit)
    try:
        return json.loads(key)
    except ValueError:
        return {"key": key}


@dataclass(frozen=True)
class Outcome:
    """The stored outcome of one unit: ``state`` ``"complete"`` or ``"diverged"`` and its user attributes."""

    key: str
    state: str
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.state == "diverged"

    @property
    def reason(self) -> str | None:
        return (self.record.get(DIVERGED_KEY) or {}).get("reason")

    @property
    def figures(self) -> dict[str, Any]:
        return self.record.get("figures") or {}

    @property
    def cells(self) -> dict[str, Any]:
        return self.record.get("cells") or {}


def unit_seconds(outcomes: Mapping[str, Outcome], kind_of: Callable[[Outcome], str | None]) -> dict[str, list[float]]:
    """The recorded ``seconds`` of the stored units (the wall time each took when it ran, whichever process
    ran it), grouped by ``kind_of(outcome)``; a unit whose kind is ``None`` or that recorded no seconds is left out."""
    by_kind: dict[str, list[float]] = {}
    for out in outcomes.values():
        kind, seconds = kind_of(out), out.record.get("seconds")
        if kind is not None and seconds is not None:
            by_kind.setdefault(kind, []).append(float(seconds))
    return by_kind

class RunStore:
    """The optuna storage of one run (see the module docstring).

    The storage is opened (and an SQLite file created) only when the first unit runs
    (:meth:`start`), so a run interrupted before it leaves no file behind; :meth:`existing_declaration`
    reads a previous run's declaration without creating anything.

    Args:
        url: the storage URL (``None``: in memory, this process only; ``journal://PATH``: a
            journal file; else an RDB URL, see :func:`~lightning_unlearn.tuning.sharing.open_storage_url`).
        study: the name of the run's study (default ``"runs"``; see the module docstring).
        on_create: called once, before the file of ``url`` is created (e.g. to record it in
            the output folder's manifest).
        policy: when a worker's holder counts as dead (default
            :meth:`~lightning_unlearn.cache_lock.LockPolicy.from_env`, as for the cache's locks).
        wait_s: seconds between two looks while waiting for another worker (default ``policy.poll``).
        create: create an RDB's tables when missing (``False``: read only, see
            :func:`~lightning_unlearn.tuning.sharing.open_storage_url`).
    """

    def __init__(
        self, url: str | None, *, study: str = RUNS_STUDY, on_create: Callable[[], None] | None = None, policy: LockPolicy | None = None,
        wait_s: float | None = None, create: bool = True,
    ) -> None:
        self.url = url
        self._create = create
        self.study_name = check_study_name(study)
        self._on_create = on_create
        self._policy = policy
        self._wait_s = wait_s
        self._storage: optuna.storages.BaseStorage | None = None
        self._claims: Claims | None = None
        self._study: optuna.Study | None = None
        self._declaration: dict[str, Any] | None = None
        self._done: dict[str, Outcome] = {}
        self._ran: set[str] = set()  # units this process measured
        self._used: set[str] = set()  # units this process needed (measured, found stored, or measured by another worker)

    # ------------------------------------------------------------------ the storage
    def exists(self) -> bool:
        """Whether the storage may hold something already (an SQLite or journal file that exists, or any other URL)."""
        path = storage_file(self.url)
        return path.is_file() if path is not None else self.url is not None

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        """The optuna storage (created on first use; an SQLite or journal file's folder too)."""
        if self._storage is None:
            path = storage_file(self.url)
            if path is not None and not path.is_file():
                if self._on_create is not None:
                    self._on_create()
                path.parent.mkdir(parents=True, exist_ok=True)
            self._storage = optuna.storages.InMemoryStorage() if self.url is None else open_storage_url(self.url, create=self._create)
        return self._storage

    def close(self) -> None:
        """Stop the heartbeat of this process's claims (when any were made; nothing is opened)."""
        if self._claims is not None:
            self._claims.close()

    def forget_storage(self) -> None:
        """Drop the open storage (the next use opens it again)."""
        self._storage, self._study, self._claims = None, None, None

    @property
    def claims(self) -> Claims:
        """Who works on what in this storage (private in memory): the lock, holder records, heartbeats."""
        if self._claims is None:
            if self.url is None:
                self._claims = Claims.private()
            else:
                self._claims = Claims(self.storage, lock_study=f"{self.study_name}.lock", policy=self._policy, wait_s=self._wait_s)
        return self._claims

    def tuning_study_name(self, plan_study: str) -> str:
        """The storage's name of the tuning study ``plan_study`` (``"<method>/<objective>"``; prefixed by a non-default run name)."""
        return plan_study if self.study_name == RUNS_STUDY else f"{self.study_name}/{plan_study}"

    def _load(self) -> optuna.Study | None:
        try:
            self.storage.get_study_id_from_name(self.study_name)
        except KeyError:
            return None
        return optuna.load_study(study_name=self.study_name, storage=self.storage, sampler=optuna.samplers.RandomSampler(seed=0))

    def existing_declaration(self) -> dict[str, Any] | None:
        """The declaration of the run the storage holds, or ``None`` (nothing is created)."""
        if not self.exists():
            return None
        study = self._load()
        return None if study is None else study.user_attrs.get(DECLARATION_KEY)

    def check(self, declaration: Mapping[str, Any], *, fresh: str) -> None:
        """Raise :class:`StoreMismatchError` if the storage holds a run declared otherwise than ``declaration``.

        Args:
            declaration: this run's declaration.
            fresh: the words telling how to start fresh (named in the error).
        """
        stored = self.existing_declaration()
        if stored is None:
            return
        diffs = differences(stored, jsonable(declaration))
        if diffs:
            where = self.url or "memory"
            shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
            raise StoreMismatchError(f"the storage {where} holds a run with other settings ({shown}); resuming would mix two runs: {fresh}")

    def _owns(self, study_name: str) -> bool:
        """Whether ``study_name`` is one of this run's studies (its runs study, lock and tuning studies)."""
        if study_name in (self.study_name, f"{self.study_name}.lock"):
            return True
        if self.study_name == RUNS_STUDY:  # the default run: the tuning studies "<method>/<objective>" of one run per storage
            return "/" in study_name and study_name.count("/") == 1
        return study_name.startswith(f"{self.study_name}/")

    def delete(self) -> None:
        """Remove every study of the storage that belongs to this run (its runs study, its lock and its tuning studies)."""
        if not self.exists():
            return
        for summary in optuna.get_all_study_summaries(self.storage, include_best_trial=False):
            if self._owns(summary.study_name):
                optuna.delete_study(study_name=summary.study_name, storage=self.storage)
        self._study, self._done = None, {}
        self._claims = None

    def start(self, declaration: Mapping[str, Any]) -> None:
        """Remember ``declaration`` (written with the runs study when the first unit runs)."""
        self._declaration = jsonable(declaration)

    @property
    def study(self) -> optuna.Study:
        """The runs study, created with the declaration on first use."""
        if self._study is None:
            study = self._load()
            if study is None:
                if self._declaration is None:
                    raise RuntimeError("RunStore.start(declaration) must come before the first unit")
                study = optuna.create_study(
                    storage=self.storage, study_name=self.study_name, sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True
                )
                if DECLARATION_KEY not in study.user_attrs:
                    study.set_user_attr(DECLARATION_KEY, self._declaration)
            self._study = study
        return self._study

    def declaration(self) -> dict[str, Any]:
        """The stored declaration (this run's when nothing is stored yet)."""
        stored = self.existing_declaration() if self._study is None else self._study.user_attrs.get(DECLARATION_KEY)
        if stored is None and self._declaration is None:
            named = f" named {self.study_name!r}" if self.study_name != RUNS_STUDY else ""
            raise ValueError(f"the storage {self.url or 'memory'} holds no benchmark run{named}")
        return stored if stored is not None else self._declaration  # type: ignore[return-value]

    @property
    def ran(self) -> int:
        """Units this process measured."""
        return len(self._ran)

    @property
    def reused(self) -> int:
        """Units this process needed and found measured (stored before, or by another worker)."""
        return len(self._used - self._ran)

    def mark_used(self, key: str) -> None:
        """Count unit ``key``, found measured, among the units this process needed."""
        self._used.add(key)

    # ------------------------------------------------------------------ workers
    def record_worker(self, summary: Mapping[str, Any]) -> str:
        """Store what this process did (``summary``: counts, seconds; ``host`` and ``pid`` are added) as the
        runs study's user attribute ``worker:<host>:<pid>:<start>``; returns that name."""
        me = Holder.this_process(lock_ino=0)
        name = f"{WORKER_PREFIX}{me.host}:{me.pid}:{me.pid_started}"
        self.study.set_user_attr(name, jsonable({**summary, "host": me.host, "pid": me.pid}))
        return name

    def workers(self) -> dict[str, dict[str, Any]]:
        """``{name: summary}`` of every worker that recorded itself (:meth:`record_worker`)."""
        study = self._study or (self._load() if self.exists() or self._storage is not None else None)
        if study is None:
            return {}
        return {k: v for k, v in sorted(study.user_attrs.items()) if k.startswith(WORKER_PREFIX)}

    # ------------------------------------------------------------------ units
    def _trials(self) -> list[FrozenTrial]:
        if self._study is None:
            self._study = self._load()  # kept: its storage caches the finished trials
        return [] if self._study is None else self._study.get_trials(deepcopy=False)

    @staticmethod
    def _key_of(trial: FrozenTrial) -> str | None:
        key = trial.user_attrs.get("key")
        return key if key is not None and trial.params.get(UNIT_PARAM) == unit_id(key) else None

    def outcomes(self) -> dict[str, Outcome]:
        """Every stored outcome by unit key (complete and diverged runs; a complete one wins)."""
        if not self.exists() and self._storage is None:
            return {}
        out: dict[str, Outcome] = {}
        for t in self._trials():
            key = self._key_of(t)
            if key is None:
                continue
            if t.state == TrialState.COMPLETE:
                out[key] = Outcome(key, "complete", dict(t.user_attrs))
            elif t.state == TrialState.FAIL and DIVERGED_KEY in t.user_attrs and out.get(key) is None:
                out[key] = Outcome(key, "diverged", dict(t.user_attrs))
        return out

    def lookup(self, key: str) -> Outcome | None:
        """The stored outcome of ``key``, or ``None``."""
        if key not in self._done:
            self._done.update(self.outcomes())
        return self._done.get(key)

    def running(self, key: str) -> list[FrozenTrial]:
        """The ``RUNNING`` trials of unit ``key`` (live or left behind)."""
        return [t for t in self._trials() if t.state == TrialState.RUNNING and self._key_of(t) == key]

    def taken(self) -> tuple[set[str], set[str]]:
        """``(keys with an outcome, keys a live worker is running)``, from one read of the storage (nothing is claimed)."""
        self._done.update(self.outcomes())
        live = {key for t in self._trials() if t.state == TrialState.RUNNING and (key := self._key_of(t)) is not None and self.claims.live(t)}
        return set(self._done), live

    def run(self, key: str, execute: Callable[[], Mapping[str, Any]], unit: Mapping[str, Any] | None = None) -> Outcome:
        """The outcome of unit ``key``: the stored one, or ``execute()``'s, stored first.

        While another live worker runs the unit, this waits for its outcome (polling).
        ``execute`` returns the outcome's user attributes (plain JSON after :func:`jsonable`) or
        raises :class:`~lightning_unlearn.tuning.DivergedError` (stored as a diverged outcome).
        Any other exception (or a signal) fails the trial and propagates; the unit runs again next time.
        """
        while True:
            outcome = self.try_run(key, execute, unit)
            if outcome is not None:
                return outcome
            self.claims.wait()

    def try_run(self, key: str, execute: Callable[[], Mapping[str, Any]], unit: Mapping[str, Any] | None = None) -> Outcome | None:
        """Like :meth:`run`, but ``None`` at once while another live worker runs the unit."""
        found = self.lookup(key)
        if found is not None:
            self._used.add(key)
            return found
        if any(self.claims.live(t) for t in self.running(key)):
            return None
        study, claims = self.study, self.claims
        with claims.lock():
            self._done.update(self.outcomes())
            found = self._done.get(key)
            if found is not None:
                self._used.add(key)
                return found
            running = self.running(key)
            if any(claims.live(t) for t in running):
                return None
            for t in running:  # left behind by a dead worker
                with contextlib.suppress(UpdateFinishedTrialError):
                    study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            template = FrozenTrial(
                number=-1, state=TrialState.RUNNING, value=None, values=None, datetime_start=datetime.datetime.now(), datetime_complete=None,
                params={UNIT_PARAM: unit_id(key)}, distributions={UNIT_PARAM: UNIT_DISTRIBUTION}, user_attrs={"key": key},
                system_attrs=claims.record() if not claims.is_private else {}, intermediate_values={}, trial_id=-1,
            )
            trial_id = study._storage.create_new_trial(study._study_id, template)
            claims.mark(study._storage, trial_id)
        with claims.hold(study._storage, trial_id):
            outcome = self._execute(study, optuna.Trial(study, trial_id), key, execute, unit)
        self._done[key] = outcome
        self._ran.add(key)
        self._used.add(key)
        return outcome

    def _execute(self, study: optuna.Study, trial: optuna.Trial, key: str, execute: Callable[[], Mapping[str, Any]], unit: Mapping[str, Any] | None) -> Outcome:
        start = time.perf_counter()
        try:
            record = dict(jsonable(execute()))
        except DivergedError as err:
            record = {"unit": _unit(key, unit), DIVERGED_KEY: {"reason": str(err)}, "seconds": time.perf_counter() - start}
            self._finish(study, trial, record, state=TrialState.FAIL)
            return Outcome(key, "diverged", record)
        except BaseException:
            with contextlib.suppress(Exception):
                study.tell(trial, state=TrialState.FAIL)
            raise
        record.setdefault("unit", _unit(key, unit))
        record.setdefault("seconds", time.perf_counter() - start)
        self._finish(study, trial, record, value=float(record["seconds"]))
        return Outcome(key, "complete", record)

    @staticmethod
    def _finish(study: optuna.Study, trial: optuna.Trial, record: Mapping[str, Any], *, value: float | None = None, state: TrialState | None = None) -> None:
        """Store ``record`` in the trial's user attributes and tell it (unless another worker judged this one dead and failed it)."""
        try:
            for k, v in record.items():
                trial.set_user_attr(k, v)
            study.tell(trial, value, state=state)
        except UpdateFinishedTrialError:
            log.warning("unit trial %d was failed by another worker meanwhile (this one was judged dead); the unit runs again there", trial.number)


# ---------------------------------------------------------------------------- working through units
@dataclass(frozen=True)
class Task:
    """A unit of work for :func:`work_through`: its key, what measures it, its unit dict, and the keys that must be measured first."""

    key: str
    execute: Callable[[], Mapping[str, Any]]
    unit: Mapping[str, Any] | None = None
    after: tuple[str, ...] = ()


def take_next(store: RunStore, tasks: list[Task], *, failed: set[str] | None = None) -> tuple[Task, Outcome] | None:
    """Measure the first task (in order) that nobody has measured or is measuring and whose ``after`` keys are measured;
    ``(task, outcome)``, or ``None`` when there is none (every task done, taken by a live worker, or waiting).

    Args:
        store: the run's storage.
        tasks: in the order they are taken.
        failed: when given, a task whose ``execute`` raises is logged and added to it (and skipped
            from then on) instead of raising; its trial is failed either way.
    """
    done, live = store.taken()
    for task in tasks:
        if task.key in done:
            store.mark_used(task.key)
            continue
        if task.key in live or (failed is not None and task.key in failed) or not all(k in done for k in task.after):
            continue
        try:
            outcome = store.try_run(task.key, task.execute, task.unit)
        except Exception:
            if failed is None:
                raise
            log.exception("unit %s failed; it is left for a rerun or another worker", task.key)
            failed.add(task.key)
            continue
        if outcome is not None:
            return task, outcome
    return None


def work_through(
    store: RunStore, tasks: list[Task], *, on_done: Callable[[Task, Outcome], None] | None = None, deadline: float | None = None,
    keep_going: bool = False,
) -> list[str]:
    """Measure ``tasks`` as one worker among any number sharing ``store`` (:func:`take_next` until none is left).

    While the tasks left are being measured by other live workers (or wait for tasks they measure),
    this waits for them; it returns once every task has an outcome, or when nothing is left that
    this worker can take and nobody is working (a task failed here and waits for a rerun), or at
    ``deadline`` (a ``time.monotonic()`` value; no task is started after it).

    Args:
        store: the run's storage.
        tasks: in the order they are taken.
        on_done: called with each task this worker measured (or found measured on taking it) and its outcome.
        deadline: stop taking tasks then.
        keep_going: a task whose ``execute`` raises is logged and left to a rerun (or another worker)
            instead of ending the call (its trial is failed either way).

    Returns:
        The keys of the tasks left without an outcome (``[]``: all measured).
    """
    failed: set[str] = set()
    while deadline is None or time.monotonic() < deadline:
        taken = take_next(store, tasks, failed=failed if keep_going else None)
        if taken is not None:
            if on_done is not None:
                on_done(*taken)
            continue
        done, live = store.taken()
        if all(t.key in done for t in tasks) or not live:
            break
        store.claims.wait()
    done, _ = store.taken()
    return [t.key for t in tasks if t.key not in done]


__all__ = [
    "DECLARATION_KEY", "RUNS_STUDY", "STUDY_FILE", "UNIT_PARAM", "WORKER_PREFIX", "Outcome", "RunStore", "StoreMismatchError", "Task", "check_study_name",
    "default_storage_url", "differences", "jsonable", "sqlite_path", "take_next", "unit_id", "unit_key", "work_through",
]
