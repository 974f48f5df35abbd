"""One builder per cache entry: a per-key lock that workers on one or many hosts share, with takeover of dead holders.

Several workers (one per GPU, SLURM array tasks, processes on one machine) may share one cache
folder, possibly on a network file system. :class:`BuildLock` makes sure that an artefact is
built by one of them only: the others wait, then load what it stored
(:meth:`lightning_unlearn.cache.ArtefactCache.get_or_build` double-checks the cache after the
lock is taken). For an entry ``<key>.pt`` it uses, next to it::

    <key>.lock        the lock itself (filelock.SoftFileLock: created with O_CREAT|O_EXCL)
    <key>.lock.json   the holder record: host, PID namespace, pid, process start, lock time, token
    <key>.lock.break  held for a moment by a waiter that removes a dead holder's lock

All three are gone once the holder releases the lock; nothing is left in the folder but the entry.

**Why** ``SoftFileLock`` **and not** ``FileLock``: ``FileLock`` (``fcntl``/``flock``) is released by
the kernel when its holder dies, but on several shared file systems it does not exclude across
hosts at all, and silently so: NFS mounted with ``nolock``, Lustre with ``localflock``, BeeGFS
with its default ``tuneUseGlobalFileLocks=false`` grant each host its own lock, and two workers
would train the same model. ``SoftFileLock`` only needs an exclusive create, which every one of
them (NFSv3 and later included) makes atomic across hosts. Its cost is that nobody removes the
lock of a killed worker: the takeover rule below does, from the holder record.

**Takeover rule** (:func:`judge`, decided anew each time a waiter polls):

1. The holder record is on the *same host* (same host name and PID namespace): the lock is stale
   when the holder's pid no longer runs, or now belongs to another process (a different process
   start time, e.g. after a reboot). A running holder is never taken over, however long it takes.
2. The holder record is from *another host* (or another PID namespace, e.g. another container):
   that pid cannot be probed, so the holder proves it is alive by touching its record every
   ``heartbeat`` seconds from a background thread (:class:`LockPolicy`); the lock is stale when the
   record has not been touched for ``stale_after`` seconds. The hosts' clocks must agree to well
   within ``stale_after`` (NTP), and ``stale_after`` must exceed a network file system's attribute
   caching (60 s by default on NFS): the default is 300 s, with a 30 s heartbeat.
3. There is *no usable record* (missing, malformed, or written for an earlier lock file: a holder
   killed between creating the lock and writing its record): the lock is stale when the lock file
   is older than ``stale_after``.

A waiter that finds the lock stale takes the ``.break`` lock, looks again, removes the record and
then the lock file, logs a warning naming the holder and the reason, and competes for the lock
anew (another waiter may win it; only one builds). A waiter logs once, at INFO, who it waits for.
A holder whose record was taken over (it was judged dead but was not) notices it at its next
heartbeat and logs a warning; its build still finishes and is stored atomically.

**Ranks of one DDP job** train each model together, so they must not wait for each other: a
process that is a rank of a multi-process job (``RANK`` or ``LOCAL_RANK`` set, with ``MASTER_ADDR``
and ``MASTER_PORT``, as Lightning's launcher and ``torchrun`` set them) and finds the lock held by
another rank of the same job (same rendezvous, or its parent or child: Lightning starts ranks
1, 2, ... from within rank 0's first fit) enters without the lock and builds or loads as that
rank does. Workers meant to be independent must therefore not be ranks of one ``torchrun``.

**What the lock is for.** It saves work; it is not what keeps files whole. Artefacts are written
atomically and verified on every load, so even a wrong takeover (rule 2 with a holder frozen past
``stale_after``, or clocks far apart) costs a second training run, never a damaged or mixed file.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from filelock import SoftFileLock, Timeout

from lightning_unlearn.fileio import atomic_write_text, temporaries_of

log = logging.getLogger(__name__)

#: The environment variable that sets :attr:`LockPolicy.stale_after` (seconds) for every cache.
STALE_AFTER_ENV = "LIGHTNING_UNLEARN_LOCK_TIMEOUT"

__all__ = [
    "STALE_AFTER_ENV",
    "BuildBusyError",
    "BuildLock",
    "Holder",
    "LockPolicy",
    "LockView",
    "Verdict",
    "judge",
    "ddp_job",
    "process_start",
    "runs",
]


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class LockPolicy:
    """How long a lock without a sign of life lives, and how often holders and waiters act.

    Args:
        stale_after: seconds without a heartbeat after which another host's lock (or a lock file
            without a holder record) is taken over; default 300.
        heartbeat: seconds between two touches of the holder record; default ``stale_after / 10``.
            At most ``stale_after / 3``, so that two missed beats do not yet count as death.
        poll: seconds a waiter sleeps between two attempts; default ``min(1, heartbeat)``.

    Raises:
        ValueError: naming the bad value and what is allowed.

    Example:
        >>> LockPolicy(stale_after=60)
        LockPolicy(stale_after=60.0, heartbeat=6.0, poll=1.0)
    """

    stale_after: float = 300.0
    heartbeat: float | None = None
    poll: float | None = None

    def __post_init__(self) -> None:
        stale_after = float(self.stale_after)
        if not 0 < stale_after < float("inf"):
            raise ValueError(f"stale_after must be a positive number of seconds, got {self.stale_after!r}")
        heartbeat = stale_after / 10 if self.heartbeat is None else float(self.heartbeat)
        if not 0 < heartbeat <= stale_after / 3:
            raise ValueError(f"heartbeat must be in (0, stale_after / 3] = (0, {stale_after / 3:g}] seconds, got {self.heartbeat!r}")
        poll = min(1.0, heartbeat) if self.poll is None else float(self.poll)
        if not 0 < poll < float("inf"):
            raise ValueError(f"poll must be a positive number of seconds, got {self.poll!r}")
        object.__setattr__(self, "stale_after", stale_after)
        object.__setattr__(self, "heartbeat", heartbeat)
        object.__setattr__(self, "poll", poll)

    @classmethod
    def from_env(cls) -> LockPolicy:
        """The default policy, with ``stale_after`` from ``$LIGHTNING_UNLEARN_LOCK_TIMEOUT`` when it is set."""
        value = os.environ.get(STALE_AFTER_ENV)
        if not value:
            return cls()
        try:
            return cls(stale_after=float(value))
        except ValueError:
            raise ValueError(f"${STALE_AFTER_ENV} must be a positive number of seconds, got {value!r}") from None


# ---------------------------------------------------------------------------- who holds a lock
@dataclass(frozen=True)
class Holder:
    """The identity a lock holder writes into its record (``<key>.lock.json``).

    Attributes:
        host: ``socket.gethostname()``.
        pid_ns: the PID namespace (``/proc/self/ns/pid``, ``""`` where there is none): a pid is
            only meaningful inside its namespace, and containers often share a host name.
        pid: the holder's process id.
        pid_started: the process start time in clock ticks since boot (``/proc/<pid>/stat``;
            ``None`` where unknown): tells a reused pid from the holder.
        started: when the lock was taken (Unix time; for people and logs).
        token: random, unique to this holding.
        lock_ino: the inode number of the lock file it holds; a record whose ``lock_ino`` is not the
            lock file's describes an earlier lock and is not used.
        ppid: the parent's pid.
        job: the rendezvous ``MASTER_ADDR:MASTER_PORT`` of the multi-process (DDP) job this process
            is a rank of (:func:`ddp_job`), else ``None``.
    """

    host: str
    pid_ns: str
    pid: int
    pid_started: int | None
    started: float
    token: str
    lock_ino: int
    ppid: int = 0
    job: str | None = None

    @classmethod
    def this_process(cls, lock_ino: int) -> Holder:
        pid = os.getpid()
        host, started, token = socket.gethostname(), time.time(), secrets.token_hex(8)
        return cls(host, _pid_namespace(), pid, process_start(pid), started, token, lock_ino, os.getppid(), ddp_job())

    def same_host(self, other: Holder) -> bool:
        """Whether ``other``'s pid can be probed from here (same host name and PID namespace)."""
        return (self.host, self.pid_ns) == (other.host, other.pid_ns)

    def same_job(self, other: Holder) -> bool:
        """Whether ``other`` is another rank of the multi-process job this process (``self``) is a rank of.

        True only inside such a job (``self.job`` set) and when ``other`` has the same rendezvous,
        or is this process's parent or child on this host (Lightning's launcher starts ranks 1, 2,
        ... as children of rank 0 during rank 0's first fit, before rank 0 knows its rendezvous).
        """
        if self.job is None or (self.same_host(other) and other.pid == self.pid):  # never itself (another thread)
            return False
        return other.job == self.job or (self.same_host(other) and (other.pid == self.ppid or other.ppid == self.pid))

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on host {self.host!r} (holding it since {when})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The holder written in ``text``, or ``None`` when it is not a complete record."""
        try:
            raw: Any = json.loads(text)
        except ValueError:
            return None
        types = {
            "host": str, "pid_ns": str, "pid": int, "pid_started": (int, type(None)), "started": (int, float), "token": str, "lock_ino": int,
            "ppid": int, "job": (str, type(None)),
        }
        if not isinstance(raw, dict) or set(raw) != set(types) or not all(isinstance(raw[k], t) for k, t in types.items()):
            return None
        return cls(**raw)


def ddp_job() -> str | None:
    """``MASTER_ADDR:MASTER_PORT`` of the DDP job this process is a rank of, else ``None``.

    A rank is a process with ``RANK`` or ``LOCAL_RANK`` set (``torchrun`` sets both; Lightning's
    launcher sets ``LOCAL_RANK``, also in rank 0 from its first fit on, and keeps it and the
    rendezvous after the fit, while it removes ``WORLD_SIZE``). A loopback address is
    qualified with the host name: two hosts may each run a job on ``127.0.0.1`` and one port.
    """
    env = os.environ
    addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
    if not (addr and port and ("RANK" in env or "LOCAL_RANK" in env)):
        return None
    loopback = addr in ("localhost", "::1") or addr.startswith("127.")
    return f"{socket.gethostname()}/{addr}:{port}" if loopback else f"{addr}:{port}"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or ``None`` where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 of proc(5); the command name (field 2) may hold spaces and parentheses, so count from the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def runs(holder: Holder) -> bool:
    """Whether ``holder``'s process still runs on this host: its pid exists and, where known, started when it did."""
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    if holder.pid_started is None:
        return True
    now_started = process_start(holder.pid)
    return now_started is None or now_started == holder.pid_started


# ---------------------------------------------------------------------------- the takeover rule
class LockView(NamedTuple):
    """What a waiter sees of a held lock.

    Attributes:
        lock_ino: inode number of the lock file.
        lock_mtime: its modification time (Unix time): when it was created.
        holder: the holder record, or ``None`` when missing or malformed.
        beat: the record's modification time (its last heartbeat), ``None`` without a record.
    """

    lock_ino: int
    lock_mtime: float
    holder: Holder | None
    beat: float | None


class Verdict(NamedTuple):
    """The takeover rule's answer: whether the lock is stale, and why (one phrase for the log)."""

    stale: bool
    reason: str


def judge(view: LockView, *, here: Holder, now: float, stale_after: float, alive: Callable[[Holder], bool] = runs) -> Verdict:
    """Whether a held lock is stale (its holder is dead), by the rule in this module's docstring.

    Args:
        view: the lock file and its holder record as seen now.
        here: this process's identity (only its host and PID namespace are used).
        now: the current Unix time.
        stale_after: seconds without a heartbeat that make another host's lock stale.
        alive: probes a same-host holder (default :func:`runs`).

    Example:
        >>> me = Holder("a", "", 1, None, 0.0, "t", 7)
        >>> other_host = Holder("b", "", 1, None, 0.0, "u", 7)
        >>> judge(LockView(7, 0.0, other_host, 100.0), here=me, now=500.0, stale_after=300).stale
        True
        >>> judge(LockView(7, 0.0, other_host, 250.0), here=me, now=500.0, stale_after=300).stale
        False
    """
    holder = view.holder
    if holder is None or holder.lock_ino != view.lock_ino or view.beat is None:
        age = now - view.lock_mtime
        what = "without a holder record" if holder is None else f"whose record belongs to an earlier lock ({holder.describe()})"
        return Verdict(age > stale_after, f"a lock file {what}, {age:.0f} s old (timeout {stale_after:g} s)")
    if holder.same_host(here):
        if alive(holder):
            return Verdict(False, f"{holder.describe()} is running")
        return Verdict(True, f"{holder.describe()} has ended")
    silent = now - view.beat
    return Verdict(silent > stale_after, f"no heartbeat from {holder.describe()} for {silent:.0f} s (timeout {stale_after:g} s)")


# ---------------------------------------------------------------------------- the lock
class BuildBusyError(RuntimeError):
    """A live process holds the lock that :meth:`BuildLock.acquire` was asked not to wait for (``wait=False``).

    Attributes:
        path: the lock file.
        holder: the holder's record (``None`` when it has written none yet).
    """

    def __init__(self, what: str, path: Path, holder: Holder | None) -> None:
        who = holder.describe() if holder is not None else "a process that wrote no holder record yet"
        super().__init__(f"{what} is being built by {who}")
        self.path, self.holder = path, holder


class BuildLock:
    """The exclusive right to build one cache entry, for processes on any host sharing the folder.

    Use as a context manager; entering waits (indefinitely: a live holder may train for hours)
    until the lock is free or its holder is judged dead (:func:`judge`), then holds it and keeps
    its record alive from a background thread until exit. Not reentrant. ``acquire(wait=False)``
    does not wait for a live holder: it raises :class:`BuildBusyError` instead (a worker then
    builds something else first).

    The ranks of one multi-process (DDP) job build together: each trains its part of the same
    model. A rank that finds the lock held by another rank of its own job
    (:meth:`Holder.same_job`) does not wait (that would deadlock the job's collective fit): it
    enters *without* holding the lock, ``held`` is ``False``, and it looks in the cache and
    builds or loads exactly as the holder does.

    Args:
        path: the lock file, ``<key>.lock`` next to the entry; the record is ``<path>.json``.
        policy: timeouts and intervals (default :meth:`LockPolicy.from_env`).
        what: names the entry in log messages.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with BuildLock(folder / "k.lock") as lock:
        ...     sorted(p.name for p in folder.iterdir())
        ['k.lock', 'k.lock.json']
        >>> list(folder.iterdir())
        []
    """

    def __init__(self, path: str | os.PathLike, policy: LockPolicy | None = None, *, what: str = "") -> None:
        self.path = Path(path)
        self.record = self.path.with_name(self.path.name + ".json")
        self.policy = policy or LockPolicy.from_env()
        self.what = what or self.path.stem
        self.holder: Holder | None = None
        self.held = False  # True while this object holds the lock (False when it joined another rank of its job)
        self._lock = SoftFileLock(str(self.path))
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None

    # ------------------------------------------------------------------ acquiring
    def acquire(self, *, wait: bool = True) -> BuildLock:
        """Wait for the lock (taking over a dead holder's), then write this process's record; or join a rank of this job.

        Args:
            wait: ``False``: raise :class:`BuildBusyError` instead of waiting for a live holder
                (a dead holder's lock is still taken over, and a rank of this job still joins).
        """
        here = Holder.this_process(lock_ino=-1)  # host, PID namespace: what judge compares
        announced, since = False, time.monotonic()
        while True:
            try:
                self._lock.acquire(timeout=0)
                break
            except Timeout:
                pass
            view = self._view()
            if view is not None and view.holder is not None and view.holder.lock_ino == view.lock_ino and here.same_job(view.holder):
                log.info("%s is being built by %s, a rank of this job: building it together", self.what, view.holder.describe())
                return self
            if view is not None:
                verdict = judge(view, here=here, now=time.time(), stale_after=self.policy.stale_after)
                if verdict.stale:
                    self._take_over(view, here)
                    continue
                if not wait:
                    raise BuildBusyError(self.what, self.path, view.holder)
                # Once, and preferably with a name: a new holder writes its record just after the lock.
                if not announced and (view.holder is not None or time.monotonic() - since > self.policy.heartbeat):
                    who = view.holder.describe() if view.holder is not None else "a process that wrote no holder record"
                    log.info("%s is being built by %s; waiting for it", self.what, who)
                    announced = True
            time.sleep(self.policy.poll)
        try:
            for tmp in temporaries_of(self.record):  # a record half-written by a killed holder
                tmp.unlink(missing_ok=True)
            self.holder = Holder.this_process(os.stat(self.path).st_ino)
            atomic_write_text(self.record, self.holder.to_json())
        except BaseException:
            self._lock.release()
            raise
        self.held = True
        self._stop.clear()
        self._heart = threading.Thread(target=self._beat, name=f"lock-heartbeat-{self.path.name}", daemon=True)
        self._heart.start()
        return self

    def _view(self) -> LockView | None:
        """The lock file and its record as they are now, or ``None`` when the lock file is gone."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        try:
            holder, beat = Holder.from_json(self.record.read_text()), os.stat(self.record).st_mtime
        except (OSError, UnicodeDecodeError):
            holder, beat = None, None
        return LockView(st.st_ino, st.st_mtime, holder, beat)

    def _take_over(self, seen: LockView, here: Holder) -> None:
        """Remove a stale lock, under the ``.break`` lock and after looking again (another waiter may have been first)."""
        guard_path = self.path.with_name(self.path.name + ".break")
        guard = SoftFileLock(str(guard_path))
        try:
            guard.acquire(timeout=0)
        except Timeout:
            # Another waiter is removing it right now (a matter of milliseconds); a guard that
            # outlived stale_after belongs to a waiter killed meanwhile.
            try:
                if time.time() - os.stat(guard_path).st_mtime > self.policy.stale_after:
                    guard_path.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            return
        try:
            view = self._view()
            if view is None or view.lock_ino != seen.lock_ino:
                return  # released or already taken over meanwhile
            verdict = judge(view, here=here, now=time.time(), stale_after=self.policy.stale_after)
            if not verdict.stale:
                return
            # The record goes first: a lock file without a record is only taken over once it is
            # stale_after old, so a newcomer that wins the lock before writing its record is safe.
            self.record.unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)
            log.warning("%s: taking over the lock of a dead builder: %s", self.what, verdict.reason)
        finally:
            guard.release()

    # ------------------------------------------------------------------ holding
    def _beat(self) -> None:
        """Touch the record every ``heartbeat`` seconds while it is ours; warn once and stop when it is not."""
        assert self.holder is not None
        while not self._stop.wait(self.policy.heartbeat):
            try:
                current = Holder.from_json(self.record.read_text())
                if current is not None and current.token == self.holder.token:
                    os.utime(self.record)
                    continue
            except (OSError, UnicodeDecodeError):
                pass
            log.warning(
                "%s: another process judged this builder dead and took over its lock (no heartbeat for %g s?); "
                "building goes on, the cache keeps one complete file",
                self.what, self.policy.stale_after,
            )
            return

    def release(self) -> None:
        """Stop the heartbeat, remove the record (if still ours) and then the lock file (nothing after joining another rank)."""
        if not self.held:
            return
        self.held = False
        self._stop.set()
        if self._heart is not None:
            self._heart.join()
            self._heart = None
        try:
            current = Holder.from_json(self.record.read_text())
            if current is not None and self.holder is not None and current.token == self.holder.token:
                self.record.unlink(missing_ok=True)
        except (OSError, UnicodeDecodeError):
            pass
        self.holder = None
        # After a (wrong) takeover the lock file is the successor's. filelock 4 leaves a lock
        # file it did not create alone; older releases remove it, which may let a third worker
        # build too: more work, never a damaged file.
        self._lock.release()

    def __enter__(self) -> BuildLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
