"""The library's one on-disk cache: data pools, trained models and membership tables, keyed by their settings.

Everything the library keeps between runs goes through :class:`ArtefactCache`: decoded data
pools (:func:`lightning_unlearn.data.load_pool`), the original, retrained and RMIA reference
models (:mod:`lightning_unlearn.pipeline` and :mod:`lightning_unlearn.audit`) and
the references' membership tables and U-LiRA's forget tables. Each artefact kind has its own folder::

    <root>/<kind>/<key>.pt

where ``key`` (:func:`settings_key`) is a hash of the artefact kind, the cache format and the
*settings that change the artefact* (for a model: data, subset, recipe, seed, ...), so that
any changed setting gives another file and a stale artefact is never reused, while unrelated
changes (another method list, more seeds) reuse what is there.

**What a file holds.** One ``dict``, written atomically (:func:`lightning_unlearn.fileio.atomic_save`):
``format`` (:data:`CACHE_FORMAT`), ``kind``, ``key``, ``settings`` (canonical JSON),
``meta`` (JSON: training time and the like) and ``payload`` (tensors and plain values).

**What is checked on load** (:meth:`ArtefactCache.load`), before anything is used:

1. the file is read with ``torch.load(weights_only=True)`` only (:func:`lightning_unlearn.fileio.load_checked`;
   never the unsafe pickle path, whatever torch's error message suggests);
2. its format and kind are this cache's;
3. the key and settings stored *inside* equal the ones asked for: a file copied or renamed
   under another key is detected, not silently used as another model;
4. the payload restores (``restore``: e.g. the weights load into the model with
   ``strict=True``, a pool's tensors have consistent shapes and dtypes).

A file that fails any check is named in a log warning, removed (unless another process has
replaced it meanwhile), and rebuilt by :meth:`ArtefactCache.get_or_build`; it is never half-used.

**Several workers, one folder.** Processes on one or many hosts (one per GPU, SLURM array
tasks) may share one cache folder, also on a network file system: :meth:`ArtefactCache.get_or_build`
builds a key only while holding its lock (:class:`lightning_unlearn.cache_lock.BuildLock`,
``<key>.lock`` next to the entry), and looks in the cache again once it holds it, so a second
worker waits for the model and loads it instead of training it again. The lock of a killed
worker is taken over (same host: its pid has ended; another host: its heartbeat has stopped
for ``stale_after`` seconds, 300 by default, ``$LIGHTNING_UNLEARN_LOCK_TIMEOUT``); see
:mod:`lightning_unlearn.cache_lock` for the rule. Files stay whole whatever the lock does: they
are written atomically and verified on load. Inside :func:`no_waiting` a key that another live
process is building raises :class:`~lightning_unlearn.cache_lock.BuildBusyError` instead of
waiting, so that a worker trains another model meanwhile (the benchmark's workers do).

**Unwritable folders** are detected before any work by :func:`check_writable` (a real probe:
a temporary file is created and removed), which raises :class:`CacheNotWritableError` naming
the folder and how to choose another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from lightning_unlearn.cache_lock import BuildBusyError, BuildLock, LockPolicy
from lightning_unlearn.fileio import DamagedFileError, atomic_save, load_checked, temporaries_of

log = logging.getLogger(__name__)

#: Part of every key and stored in every file; bumped when the file layout changes.
CACHE_FORMAT = "lightning_unlearn-cache-v2"
#: The artefact kinds the library stores (one folder each).
KINDS = ("pools", "models", "membership")
_REQUIRED = ("format", "kind", "key", "settings", "meta", "payload")

T = TypeVar("T")


class CacheNotWritableError(OSError):
    """The cache folder cannot be created or written (raised before any work starts)."""


_WAIT_FOR_BUILDERS: ContextVar[bool] = ContextVar("lightning_unlearn_wait_for_builders", default=True)
_BUILDS: Counter[str] = Counter()


@contextmanager
def no_waiting() -> Iterator[None]:
    """Inside this block :meth:`ArtefactCache.get_or_build` does not wait for another live process
    building the same key: it raises :class:`~lightning_unlearn.cache_lock.BuildBusyError` (the
    caller builds something else and comes back; the entry is then loaded)."""
    token = _WAIT_FOR_BUILDERS.set(False)
    try:
        yield
    finally:
        _WAIT_FOR_BUILDERS.reset(token)


def build_count(kind: str) -> int:
    """How many artefacts of ``kind`` this process has built (trained, for ``"models"``) through any
    :class:`ArtefactCache` since it started: run statistics, e.g. "every model was trained once"."""
    return _BUILDS[kind]


def default_cache_dir() -> Path:
    """``$LIGHTNING_UNLEARN_CACHE``, else ``$XDG_CACHE_HOME/lightning_unlearn``, else ``~/.cache/lightning_unlearn``."""
    env = os.environ.get("LIGHTNING_UNLEARN_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lightning_unlearn"


def canonical_json(settings: dict[str, Any]) -> str:
    """Settings as JSON with sorted keys; tuples become lists, other non-JSON values their ``str``."""
    return json.dumps(settings, sort_keys=True, default=str)


def settings_key(kind: str, settings: dict[str, Any]) -> str:
    """The 24-hex-digit key of ``settings`` for artefact ``kind`` (independent of key order)."""
    blob = canonical_json({"__format__": CACHE_FORMAT, "__kind__": kind, **settings})
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def check_writable(root: str | os.PathLike) -> Path:
    """Prove that files can be written in ``root`` (or, while it does not exist, created under it).

    A real probe: a temporary file is created and removed in ``root``, or in its nearest
    existing ancestor when ``root`` does not exist yet (nothing is left behind, no folder is
    created). ``os.access`` would not do: it is always true for the root user.

    Returns:
        ``root`` as a ``Path``.

    Raises:
        CacheNotWritableError: naming the folder, the reason and how to choose another
            (``$LIGHTNING_UNLEARN_CACHE``, ``cache_dir=...`` / ``--cache-dir``).
    """
    root = Path(root).expanduser()
    base = root
    while not base.exists() and base.parent != base:
        base = base.parent
    try:
        if not base.is_dir():
            raise NotADirectoryError(20, "not a directory", str(base))
        fd, probe = tempfile.mkstemp(prefix=".lu-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise CacheNotWritableError(
            f"cache directory {str(root)!r} is not writable ({err.strerror or type(err).__name__}"
            + (f": {str(base)!r} is not a directory" if isinstance(err, NotADirectoryError) else "")
            + "); choose another with $LIGHTNING_UNLEARN_CACHE or cache_dir=... (--cache-dir on the command line)"
        ) from None
    return root


@dataclass
class Entry(Generic[T]):
    """One artefact: its key, settings, metadata, the restored value and where it came from."""

    key: str
    settings: dict[str, Any]
    meta: dict[str, Any]
    value: T
    from_cache: bool


@dataclass
class ArtefactCache:
    """Artefacts of one ``kind`` under ``root/kind``, keyed by their settings and verified on load.

    Args:
        root: the cache folder (e.g. :func:`default_cache_dir`).
        kind: the artefact kind, one folder (``"models"``, ``"pools"``, ``"membership"``).
        lock_policy: how builders of one key exclude each other and when a dead builder's lock
            is taken over (:class:`lightning_unlearn.cache_lock.LockPolicy`; default
            :meth:`~lightning_unlearn.cache_lock.LockPolicy.from_env`).

    Attributes:
        built: keys built (not loaded) through this object, in order.
        loaded: keys loaded from disk through this object.
        damaged: paths of damaged files found (and removed) by this object.

    Example:
        >>> import tempfile, torch
        >>> cache = ArtefactCache(tempfile.mkdtemp(), "models")
        >>> e = cache.get_or_build({"seed": 0}, lambda: ({"w": torch.ones(2)}, {"seconds": 0.1}))
        >>> e.from_cache, cache.get_or_build({"seed": 0}, lambda: 1 / 0).from_cache
        (False, True)
    """

    root: Path
    kind: str
    lock_policy: LockPolicy = field(default_factory=LockPolicy.from_env, kw_only=True)
    built: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    damaged: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser()
        if self.kind not in KINDS:
            raise ValueError(f"unknown artefact kind {self.kind!r}: expected one of {', '.join(KINDS)}")

    @property
    def folder(self) -> Path:
        return self.root / self.kind

    def key(self, settings: dict[str, Any]) -> str:
        return settings_key(self.kind, settings)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def lock_path(self, key: str) -> Path:
        """The build lock of ``key`` (:class:`~lightning_unlearn.cache_lock.BuildLock`), next to its entry."""
        return self.folder / f"{key}.lock"

    def check_writable(self) -> Path:
        """:func:`check_writable` on this kind's folder (call before any work)."""
        return check_writable(self.folder)

    # ------------------------------------------------------------------ reading
    def _verify(self, path: Path, key: str, settings: dict[str, Any], restore: Callable[[dict[str, Any]], T]) -> tuple[T, dict[str, Any]]:
        blob = load_checked(path, what=f"cached {self.kind[:-1]}", required_keys=_REQUIRED)
        if blob["format"] != CACHE_FORMAT or blob["kind"] != self.kind:
            raise DamagedFileError(path, f"holds a {blob['kind']!r} artefact of format {blob['format']!r}, not {self.kind!r} of {CACHE_FORMAT!r}")
        if blob["key"] != key or blob["settings"] != canonical_json(settings):
            raise DamagedFileError(path, f"was made for other settings (key {blob['key']!r}, not {key!r}): copied or renamed from another entry")
        if not isinstance(blob["payload"], dict):
            raise DamagedFileError(path, f"its payload is a {type(blob['payload']).__name__}, not a dict")
        try:
            meta = json.loads(blob["meta"])
            value = restore(blob["payload"])
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise DamagedFileError(path, f"its content does not fit ({type(err).__name__}: {first[:200]})") from None
        return value, meta

    def load(self, settings: dict[str, Any], restore: Callable[[dict[str, Any]], T] = lambda p: p) -> Entry[T] | None:  # type: ignore[assignment,return-value]
        """The verified entry of ``settings``, or ``None`` when absent or damaged (a damaged file is removed).

        Args:
            settings: the settings the artefact was made with (its key).
            restore: turns the stored payload into the value (e.g. a model with the weights
                loaded strictly); any ``ValueError``/``RuntimeError``/``KeyError``/``TypeError``
                it raises marks the file as damaged.
        """
        key = self.key(settings)
        path = self.path(key)
        try:
            seen = path.stat()  # what a damaged file is, so that only that file is removed
            value, meta = self._verify(path, key, settings, restore)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except DamagedFileError as err:
            self.damaged.append(path)
            if _unlink_if_unchanged(path, seen):
                log.warning("%s; removing it, it will be rebuilt", err)
            else:  # another process has replaced it meanwhile: its file is not ours to remove
                log.warning("%s; another process has replaced it meanwhile", err)
            return None
        self.loaded.append(key)
        log.info("%s %s loaded from the cache", self.kind, key)
        return Entry(key, settings, meta, value, from_cache=True)

    # ------------------------------------------------------------------ writing
    def save(self, settings: dict[str, Any], payload: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
        """Write the artefact of ``settings`` atomically (concurrent writers leave one complete file)."""
        key = self.key(settings)
        blob = {
            "format": CACHE_FORMAT,
            "kind": self.kind,
            "key": key,
            "settings": canonical_json(settings),
            "meta": json.dumps(meta or {}, sort_keys=True, default=str),
            "payload": payload,
        }
        return atomic_save(blob, self.path(key))

    def get_or_build(
        self,
        settings: dict[str, Any],
        build: Callable[[], tuple[dict[str, Any], dict[str, Any]]],
        restore: Callable[[dict[str, Any]], T] = lambda p: p,  # type: ignore[assignment,return-value]
    ) -> Entry[T]:
        """Load the artefact of ``settings``, or ``build() -> (payload, meta)`` it, store it and return it.

        The value of a fresh build also goes through ``restore``, so loaded and built entries
        are alike (a build whose payload does not restore is a bug and raises).

        Only one process builds a key at a time, also across hosts sharing the folder: the
        builder holds the key's :class:`~lightning_unlearn.cache_lock.BuildLock` (a lock whose
        holder died is taken over by the rule of :mod:`lightning_unlearn.cache_lock`); the
        others wait for it and then load what it stored, because the cache is checked again
        once the lock is held. Temporary files that a killed writer of this key left behind are
        removed then too. The ranks of one DDP job do not wait for each other: they build (or
        load) together, as they train together, and the rank holding the lock stores the result.

        Raises:
            CacheNotWritableError: the folder cannot be created (checked before building).
            BuildBusyError: inside :func:`no_waiting`, another live process is building the key.
        """
        hit = self.load(settings, restore)
        if hit is not None:
            return hit
        key = self.key(settings)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            check_writable(self.folder)  # raises the error that names the folder and the way out
            raise
        lock = BuildLock(self.lock_path(key), self.lock_policy, what=f"{self.kind} {key}")
        lock.acquire(wait=_WAIT_FOR_BUILDERS.get())
        try:
            hit = self.load(settings, restore)  # another process may have built it while we waited
            if hit is not None:
                return hit
            # A rank that joined the holder (another rank of its DDP job) neither removes leftovers
            # (one may be the holder's file in progress) nor writes: the holder does.
            if lock.held:
                self._remove_leftovers(key)
            payload, meta = build()
            if lock.held:
                self.save(settings, payload, meta)
        finally:
            lock.release()
        self.built.append(key)
        _BUILDS[self.kind] += 1
        meta = json.loads(json.dumps(meta, default=str))
        return Entry(key, settings, meta, restore(payload), from_cache=False)

    def _remove_leftovers(self, key: str) -> None:
        """Remove the temporary files of ``key`` that a killed writer left (call only while holding its lock)."""
        for tmp in temporaries_of(self.path(key)):
            tmp.unlink(missing_ok=True)
            log.info("%s %s: removed %s, left unfinished by a killed writer", self.kind, key, tmp.name)


def _unlink_if_unchanged(path: Path, seen: os.stat_result) -> bool:
    """Remove ``path`` if it is still the file ``seen`` (same inode, size and time); whether it did."""
    try:
        now = path.stat()
    except FileNotFoundError:
        return True
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (seen.st_ino, seen.st_size, seen.st_mtime_ns):
        return False
    path.unlink(missing_ok=True)
    return True


def state_dict_payload(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A CPU copy of a ``state_dict``, the payload of a cached model."""
    return {k: v.detach().cpu().clone() for k, v in state_dict.items()}


__all__ = [
    "CACHE_FORMAT",
    "KINDS",
    "ArtefactCache",
    "BuildBusyError",
    "CacheNotWritableError",
    "Entry",
    "canonical_json",
    "check_writable",
    "build_count",
    "default_cache_dir",
    "no_waiting",
    "settings_key",
    "state_dict_payload",
]
