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

**Units are idempotent and memoised.** :meth:`RunStore.run` looks the key up first and runs the
unit only when no outcome is stored, so the same unlearning run needed twice (the same grid point
under two objectives, a tuning trial TPE proposes again, a rerun of an interrupted job) runs once.
A unit runs as an optuna trial (``study.ask`` with the unit as fixed parameter, then ``tell``): a
unit interrupted by an exception or a signal is told ``FAIL`` and runs again next time; one whose
process was killed stays ``RUNNING`` and is failed when the storage is next opened by a run (one
process per storage: the workers of a shared storage need optuna's heartbeat instead).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from lightning_unlearn.pipeline.config_values import ConfigError
from lightning_unlearn.tuning.divergence import DivergedError

RUNS_STUDY = "runs"
UNIT_PARAM = "unit"
DECLARATION_KEY = "declaration"
DIVERGED_KEY = "diverged"
#: the storage file inside the output folder (``--storage`` unset)
STUDY_FILE = "study.sqlite3"
#: seconds an SQLite connection waits for a lock held by another connection
SQLITE_TIMEOUT_S = 60
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


class RunStore:
    """The optuna storage of one run (see the module docstring).

    The storage is opened (and an SQLite file created) only when the first unit runs
    (:meth:`start`), so a run interrupted before it leaves no file behind; :meth:`existing_declaration`
    reads a previous run's declaration without creating anything.

    Args:
        url: the storage URL (``None``: in memory).
        on_create: called once, before the SQLite file of ``url`` is created (e.g. to record it in
            the output folder's manifest).
    """

    def __init__(self, url: str | None, *, on_create: Callable[[], None] | None = None) -> None:
        self.url = url
        self._on_create = on_create
        self._storage: optuna.storages.BaseStorage | None = None
        self._study: optuna.Study | None = None
        self._declaration: dict[str, Any] | None = None
        self._done: dict[str, Outcome] = {}
        self.ran = 0  # units run by this process
        self.reused = 0  # units found in the storage

    # ------------------------------------------------------------------ the storage
    def exists(self) -> bool:
        """Whether the storage may hold something already (an SQLite file that exists, or any other URL)."""
        path = sqlite_path(self.url)
        return path.is_file() if path is not None else self.url is not None

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        """The optuna storage (created on first use; an SQLite file's folder too)."""
        if self._storage is None:
            path = sqlite_path(self.url)
            if path is not None and not path.is_file():
                if self._on_create is not None:
                    self._on_create()
                path.parent.mkdir(parents=True, exist_ok=True)
            if self.url is None:
                self._storage = optuna.storages.InMemoryStorage()
            else:
                kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if path is not None else {}
                self._storage = optuna.storages.RDBStorage(self.url, engine_kwargs=kwargs)
        return self._storage

    def _load(self) -> optuna.Study | None:
        try:
            self.storage.get_study_id_from_name(RUNS_STUDY)
        except KeyError:
            return None
        return optuna.load_study(study_name=RUNS_STUDY, storage=self.storage, sampler=optuna.samplers.RandomSampler(seed=0))

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

    def delete(self) -> None:
        """Remove every study of the storage that this library wrote (the runs study and the tuning studies)."""
        if not self.exists():
            return
        for summary in optuna.get_all_study_summaries(self.storage, include_best_trial=False):
            if summary.study_name == RUNS_STUDY or "/" in summary.study_name:
                optuna.delete_study(study_name=summary.study_name, storage=self.storage)
        self._study, self._done = None, {}

    def start(self, declaration: Mapping[str, Any]) -> None:
        """Remember ``declaration`` (written with the runs study when the first unit runs)."""
        self._declaration = jsonable(declaration)

    @property
    def study(self) -> optuna.Study:
        """The runs study: created with the declaration on first use; trials a killed process left
        ``RUNNING`` are failed (they run again)."""
        if self._study is None:
            study = self._load()
            if study is None:
                if self._declaration is None:
                    raise RuntimeError("RunStore.start(declaration) must come before the first unit")
                study = optuna.create_study(storage=self.storage, study_name=RUNS_STUDY, sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True)
                if DECLARATION_KEY not in study.user_attrs:
                    study.set_user_attr(DECLARATION_KEY, self._declaration)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            self._study = study
        return self._study

    def declaration(self) -> dict[str, Any]:
        """The stored declaration (this run's when nothing is stored yet)."""
        stored = self.existing_declaration() if self._study is None else self._study.user_attrs.get(DECLARATION_KEY)
        if stored is None and self._declaration is None:
            raise ValueError(f"the storage {self.url or 'memory'} holds no benchmark run")
        return stored if stored is not None else self._declaration  # type: ignore[return-value]

    # ------------------------------------------------------------------ units
    def outcomes(self) -> dict[str, Outcome]:
        """Every stored outcome by unit key (complete and diverged runs; a complete one wins)."""
        if not self.exists() and self._storage is None:
            return {}
        study = self._study or self._load()
        if study is None:
            return {}
        out: dict[str, Outcome] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            key = t.user_attrs.get("key")
            if key is None or t.params.get(UNIT_PARAM) != unit_id(key):
                continue
            if t.state == TrialState.COMPLETE:
                out[key] = Outcome(key, "complete", dict(t.user_attrs))
            elif DIVERGED_KEY in t.user_attrs and out.get(key) is None:
                out[key] = Outcome(key, "diverged", dict(t.user_attrs))
        return out

    def lookup(self, key: str) -> Outcome | None:
        """The stored outcome of ``key``, or ``None``."""
        if key not in self._done:
            self._done.update(self.outcomes())
        return self._done.get(key)

    def run(self, key: str, execute: Callable[[], Mapping[str, Any]], unit: Mapping[str, Any] | None = None) -> Outcome:
        """The outcome of unit ``key``: the stored one, or ``execute()``'s, stored first.

        ``execute`` returns the outcome's user attributes (plain JSON after :func:`jsonable`) or
        raises :class:`~lightning_unlearn.tuning.DivergedError` (stored as a diverged outcome).
        Any other exception (or a signal) fails the trial and propagates; the unit runs again next time.
        """
        found = self.lookup(key)
        if found is not None:
            self.reused += 1
            return found
        study = self.study
        trial = study.ask()
        # the unit's fixed parameter, set as the sampler would set a drawn one (the same storage call)
        study._storage.set_trial_param(trial._trial_id, UNIT_PARAM, UNIT_DISTRIBUTION.to_internal_repr(unit_id(key)), UNIT_DISTRIBUTION)
        trial.set_user_attr("key", key)
        start = time.perf_counter()
        try:
            record = dict(jsonable(execute()))
        except DivergedError as err:
            record = {"unit": _unit(key, unit), DIVERGED_KEY: {"reason": str(err)}, "seconds": time.perf_counter() - start}
            for k, v in record.items():
                trial.set_user_attr(k, v)
            study.tell(trial, state=TrialState.FAIL)
            outcome = Outcome(key, "diverged", record)
        except BaseException:
            with contextlib.suppress(Exception):
                study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            record.setdefault("unit", _unit(key, unit))
            record.setdefault("seconds", time.perf_counter() - start)
            for k, v in record.items():
                trial.set_user_attr(k, v)
            study.tell(trial, float(record["seconds"]))
            outcome = Outcome(key, "complete", record)
        self._done[key] = outcome
        self.ran += 1
        return outcome


__all__ = [
    "DECLARATION_KEY", "RUNS_STUDY", "STUDY_FILE", "UNIT_PARAM", "Outcome", "RunStore", "StoreMismatchError", "default_storage_url", "differences",
    "jsonable", "sqlite_path", "unit_id", "unit_key",
]
