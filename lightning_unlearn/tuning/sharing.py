"""One optuna storage shared by many worker processes: who holds each running trial, when a holder is dead, and a mutex.

Any number of processes (one per GPU, SLURM array tasks on several hosts) may work on the studies
of one storage: an SQLite file on one machine, a journal file on a shared file system
(``journal:///path/run.log``, optuna's ``JournalStorage`` with a ``JournalFileBackend``), or a
database server (``postgresql://...``). :class:`Claims` is what they agree on:

* **Holder records.** A worker that starts a trial (a unit of work or a tuning trial) writes, in the
  trial's system attributes, who it is (:data:`HOLDER_KEY`: the
  :class:`~lightning_unlearn.cache_lock.Holder` record of the cache's build locks: host, PID
  namespace, pid, process start) and when it last beat (:data:`BEAT_KEY`, Unix time); a background
  thread renews the beat every ``heartbeat`` seconds while the trial runs (:meth:`Claims.hold`).
* **Dead holders** (:meth:`Claims.abandoned`): a ``RUNNING`` trial is abandoned when its holder is
  dead by the cache locks' takeover rule (:func:`~lightning_unlearn.cache_lock.judge`): on the same
  host when its pid no longer runs (at once), on another host when it has not beaten for
  ``stale_after`` seconds (300 by default, ``$LIGHTNING_UNLEARN_LOCK_TIMEOUT``). A ``RUNNING``
  trial without a record was left by a process of an earlier release (one process per storage) and
  is abandoned. Its work is then done again by whoever claims it next; nothing it stored is lost.
* **The mutex** (:meth:`Claims.lock`): every decision "which trial do I start" (reading the
  studies, failing and re-queuing abandoned trials, creating the trial and its holder record) is
  taken while holding one lock per run, so two workers never start the same unit or the same
  tuning slot. The lock is itself a study of the storage (works on every storage, on any number of
  hosts): a worker enters by creating a ``RUNNING`` trial with its holder record in the lock study
  and holds the lock once no live ``RUNNING`` trial with a smaller id is left (trial ids grow in
  creation order, so two entrants always agree on who is first: a bakery lock); it leaves by
  completing its trial. The lock is held for milliseconds (storage reads and writes, a TPE
  proposal), never while a unit runs.

A private storage (in memory, one process) uses the same code with :meth:`Claims.private`: no
lock, and every ``RUNNING`` trial this process does not hold is abandoned.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from lightning_unlearn.cache_lock import Holder, LockPolicy, LockView, judge

log = logging.getLogger(__name__)

#: the trial system attribute holding the holder record (JSON of :class:`~lightning_unlearn.cache_lock.Holder`)
HOLDER_KEY = "lightning_unlearn:holder"
#: the trial system attribute holding the holder's last heartbeat (Unix time)
BEAT_KEY = "lightning_unlearn:beat"
#: the URL scheme of a journal file (optuna's ``JournalStorage`` with a ``JournalFileBackend``)
JOURNAL_SCHEME = "journal://"
#: seconds an SQLite connection waits for a lock held by another connection
SQLITE_TIMEOUT_S = 60

__all__ = ["BEAT_KEY", "HOLDER_KEY", "JOURNAL_SCHEME", "Claims", "open_storage_url", "storage_file"]


# ---------------------------------------------------------------------------- storage URLs
def storage_file(url: str | None) -> Path | None:
    """The file of a ``sqlite:///`` or ``journal://`` URL, absolute (``None`` for other URLs).

    Example:
        >>> str(storage_file("sqlite:////runs/a/study.sqlite3")), str(storage_file("journal:///runs/a/run.log"))
        ('/runs/a/study.sqlite3', '/runs/a/run.log')
        >>> storage_file("postgresql://host/db") is None
        True
    """
    if not url:
        return None
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if url.startswith(JOURNAL_SCHEME):
        return Path(url[len(JOURNAL_SCHEME) :]).expanduser().absolute()
    return None


def open_storage_url(url: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """The optuna storage of ``url``: ``journal://PATH`` a journal file (``JournalStorage`` with a
    ``JournalFileBackend``, for a file system shared by several hosts), anything else an RDB URL
    (``sqlite:///PATH``: SQLite, waiting up to 60 s for another process's write lock;
    ``postgresql://...``, ``mysql://...``: a database server).

    Args:
        url: the URL.
        create: create an RDB's tables when missing. ``False`` only reads (an error while the
            tables do not exist yet): a worker waiting for a run uses it, so that it never races
            the process creating the tables.
    """
    if url.startswith(JOURNAL_SCHEME):
        from optuna.storages.journal import JournalFileBackend

        path = storage_file(url)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite:") else {}
    if not create:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=True, skip_compatibility_check=True)
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


# ---------------------------------------------------------------------------- claims
def _started(trial: FrozenTrial) -> float:
    start = trial.datetime_start
    return start.timestamp() if start is not None else 0.0


class Claims:
    """Who works on what in one shared optuna storage (see the module docstring).

    Args:
        storage: the storage (the lock study is created in it on first use).
        lock_study: the name of the lock study (one per run).
        policy: ``stale_after``, ``heartbeat`` and ``poll`` (default
            :meth:`~lightning_unlearn.cache_lock.LockPolicy.from_env`: 300 s, 30 s, 1 s).
        wait_s: seconds :meth:`wait` sleeps (default ``policy.poll``).

    Example:
        >>> claims = Claims.private()
        >>> with claims.lock():  # nothing to wait for in one process
        ...     pass
    """

    def __init__(
        self, storage: optuna.storages.BaseStorage | None, *, lock_study: str = "lock", policy: LockPolicy | None = None, wait_s: float | None = None,
    ) -> None:
        self.storage = storage
        self.lock_study = lock_study
        self.policy = policy or LockPolicy.from_env()
        self.wait_s = float(self.policy.poll if wait_s is None else wait_s)  # type: ignore[arg-type]
        self._held: set[int] = set()  # trial ids this process holds
        self._beating: dict[int, optuna.storages.BaseStorage] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
        self._depth = 0
        self._lock_study_id: int | None = None
        self._me = Holder.this_process(lock_ino=0)

    @classmethod
    def private(cls) -> Claims:
        """Claims of a storage only this process uses (in memory): no lock, no records."""
        return cls(None)

    @property
    def is_private(self) -> bool:
        return self.storage is None

    # ------------------------------------------------------------------ holders
    def record(self) -> dict[str, object]:
        """The system attributes that name this process as a trial's holder (holder record and first beat)."""
        return {HOLDER_KEY: self._me.to_json(), BEAT_KEY: time.time()}

    def mark(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        """Write this process's holder record on a trial it has just created or popped (inside :meth:`lock`)."""
        self._held.add(trial_id)
        if self.is_private:
            return
        for key, value in self.record().items():
            storage.set_trial_system_attr(trial_id, key, value)  # type: ignore[arg-type]

    def holder(self, trial: FrozenTrial) -> Holder | None:
        """The holder record of ``trial`` (``None`` without one)."""
        text = trial.system_attrs.get(HOLDER_KEY)
        return Holder.from_json(text) if isinstance(text, str) else None

    def abandoned(self, trial: FrozenTrial) -> bool:
        """Whether ``trial`` is ``RUNNING`` and nobody works on it any more (see the module docstring)."""
        if trial.state != TrialState.RUNNING:
            return False
        if trial._trial_id in self._held:
            return False
        holder = self.holder(trial)
        if self.is_private or holder is None:
            return True
        if holder.same_host(self._me) and holder.pid == self._me.pid and holder.pid_started == self._me.pid_started:
            return True  # this process's, and it does not hold it any more
        beat = trial.system_attrs.get(BEAT_KEY)
        view = LockView(holder.lock_ino, _started(trial), holder, float(beat) if isinstance(beat, (int, float)) else None)
        return judge(view, here=self._me, now=time.time(), stale_after=self.policy.stale_after).stale

    def live(self, trial: FrozenTrial) -> bool:
        """``RUNNING`` and not abandoned: somebody (maybe this process) works on it."""
        return trial.state == TrialState.RUNNING and not self.abandoned(trial)

    @contextmanager
    def hold(self, storage: optuna.storages.BaseStorage, trial_id: int) -> Iterator[None]:
        """While the block runs, this process holds ``trial_id`` and beats on it every ``heartbeat`` seconds."""
        self._held.add(trial_id)
        if not self.is_private:
            with self._guard:
                self._beating[trial_id] = storage
                if self._heart is None or not self._heart.is_alive():
                    self._stop.clear()
                    self._heart = threading.Thread(target=self._beat, name="lightning-unlearn-claims-heartbeat", daemon=True)
                    self._heart.start()
        try:
            yield
        finally:
            self._held.discard(trial_id)
            with self._guard:
                self._beating.pop(trial_id, None)

    def _beat(self) -> None:
        while not self._stop.wait(self.policy.heartbeat):  # type: ignore[arg-type]
            with self._guard:
                beating = list(self._beating.items())
            for trial_id, storage in beating:
                try:
                    storage.set_trial_system_attr(trial_id, BEAT_KEY, time.time())
                except UpdateFinishedTrialError:  # finished meanwhile (or judged dead by another worker)
                    with self._guard:
                        self._beating.pop(trial_id, None)
                except Exception as err:  # a storage hiccup must not end the heartbeat
                    log.warning("heartbeat of trial %d: %s", trial_id, err)

    # ------------------------------------------------------------------ the mutex
    def _lock_id(self) -> int:
        assert self.storage is not None
        if self._lock_study_id is None:
            try:
                self._lock_study_id = self.storage.create_new_study([StudyDirection.MINIMIZE], self.lock_study)
            except DuplicatedStudyError:
                self._lock_study_id = self.storage.get_study_id_from_name(self.lock_study)
        return self._lock_study_id

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's mutex for the block (reentrant within this process; no-op when private)."""
        if self.is_private or self._depth > 0:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        storage, study_id = self.storage, self._lock_id()
        assert storage is not None
        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None, datetime_start=datetime.datetime.now(), datetime_complete=None,
            params={}, distributions={}, user_attrs={}, system_attrs=self.record(), intermediate_values={}, trial_id=-1,
        )
        mine = storage.create_new_trial(study_id, template)
        start = time.monotonic()
        try:
            delay = 0.005
            while True:
                ahead = [t for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)) if t._trial_id < mine]
                waiting = False
                for t in ahead:
                    if self.abandoned(t):
                        log.warning("the run's lock: %s is no longer running; taking over", (self.holder(t) or self._me).describe())
                        try:
                            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                        except UpdateFinishedTrialError:
                            pass
                    else:
                        waiting = True
                if not waiting:
                    break
                time.sleep(delay)
                delay = min(2 * delay, 0.25)
            self._depth = 1
            yield
        finally:
            self._depth = 0
            try:
                storage.set_trial_state_values(mine, TrialState.COMPLETE, values=[time.monotonic() - start])
            except UpdateFinishedTrialError:  # judged dead while holding it (frozen past stale_after)
                log.warning("the run's lock was taken over while this process (pid %d) held it", os.getpid())

    def wait(self) -> None:
        """Sleep before looking again (for work another worker may free, or a trial it may finish)."""
        time.sleep(self.wait_s)

    def close(self) -> None:
        """Stop the heartbeat thread."""
        self._stop.set()
        if self._heart is not None:
            self._heart.join(timeout=5)
            self._heart = None
