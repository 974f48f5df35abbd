"""The output folder: checked before any work, written at the end, and never a file the library did not write touched.

**Before the run** :func:`check_output_dir` raises :class:`ConfigError` (the command line's
exit code 2) when the folder cannot receive the report: a file in its place, no write
permission, the results of a previous run without ``overwrite``, or a file of the user's own
where the report would go (e.g. a ``report.md`` the library did not write, or a
``study.sqlite3`` it did not create). Nothing is left behind by its write probe.

**During the run** the run's storage, ``study.sqlite3``, lives in the folder (unless
``--storage`` puts it elsewhere): :func:`register_storage` creates the folder and records the
file in the manifest just before the first measured run is stored. A folder that holds such a
study but no results (an interrupted run) is not a previous run's results: a rerun with the same
settings resumes the study (:mod:`lightning_unlearn.pipeline.store`).

**At the end** :func:`publish` fills a staging folder and puts the files in place:

- a folder that does not exist yet is created in one step: the staging folder is a hidden
  sibling renamed into place, so the folder is absent or complete. Where that rename is not
  possible (another file system, a busy mount point) the files are placed one by one as below;
- into a folder that exists (an empty folder, a mount point, a folder holding the user's own
  files, the results of a previous run) the files are placed one by one, each atomically (a
  staging folder *inside* it, then ``os.replace`` per file, so it works on a mount point): the
  folder itself is never renamed or removed.

**The manifest.** The folder keeps ``.lightning-unlearn-manifest.json``, the list of the files
the library wrote with their SHA-256. A rerun with ``overwrite`` replaces only those files
(and removes those of them the new run does not produce), and only while their content is
still what the library wrote: a file the user added (a ``notes.txt``, a sub-folder) or
changed is never deleted or overwritten. While files are being replaced the manifest also
lists the previous ones, so an interrupted replacement never leaves a file of the library
unlisted. The storage file is listed apart (``"storage"``, without a digest: it changes as the
run goes on); ``overwrite`` never deletes it (the run empties its studies when it starts fresh).
A folder of results written before manifests existed (a ``results.json`` and no manifest)
counts as a previous run whose report files (:data:`REPORT_FILES`) are the library's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from lightning_unlearn.fileio import atomic_write, atomic_write_text
from lightning_unlearn.pipeline.config import ConfigError
from lightning_unlearn.pipeline.interrupt import deferred_signals

MANIFEST = ".lightning-unlearn-manifest.json"
MARKER = "results.json"
#: the run's storage inside the output folder (``--storage`` unset)
STUDY_FILE = "study.sqlite3"
#: every file :func:`lightning_unlearn.pipeline.report.write_report` may write
REPORT_FILES = (
    "results.json", "report.md", "rmia_roc.png", "avg_gap.png", "spectral_norms.png", "paired_differences.png",
    "paired_differences_avg_gap-mia_nn.png", "paired_differences_avg_gap-kl.png",
)
_STAGING = ".lightning-unlearn-staging-"
_FORMAT = 1


class OutputInTheWayError(ConfigError):
    """A file of the user's appeared where the report goes while the run was under way.

    Attributes:
        kept: the staging folder that holds the finished report (not removed).
    """

    def __init__(self, message: str, kept: Path) -> None:
        super().__init__(message)
        self.kept = kept


# ---------------------------------------------------------------------------- the manifest
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict[str, list[str]] | None:
    """``{relative path: [sha256, ...]}`` of the files the library wrote in ``folder``; ``None`` without a manifest.

    A file may carry two hashes while a replacement is under way (its previous and new content).
    A folder of results from before manifests (``results.json``, no manifest) gives its
    :data:`REPORT_FILES` with their current hashes.

    Raises:
        ConfigError: the manifest exists but cannot be read (named, with what to do).
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        if (Path(folder) / MARKER).is_file():
            return {n: [sha256(Path(folder) / n)] for n in REPORT_FILES if (Path(folder) / n).is_file()}
        return None
    try:
        blob = json.loads(path.read_text())
        files: dict[str, list[str]] = {str(n): [str(d)] for n, d in blob["files"].items()}
        for name, digests in blob.get("previous", {}).items():
            files.setdefault(str(name), []).extend(str(d) for d in digests)
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as err:
        raise ConfigError(
            f"the manifest {str(path)!r} of the output directory cannot be read ({type(err).__name__}); "
            "it lists the files a previous run wrote: remove it only if none of them is to be replaced"
        ) from None
    return files


def _manifest_blob(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def manifest_storage(folder: str | os.PathLike) -> str | None:
    """The storage file the manifest of ``folder`` lists (``study.sqlite3``), or ``None``."""
    storage = _manifest_blob(Path(folder)).get("storage")
    return storage if isinstance(storage, str) else None


def _write_manifest(folder: Path, files: dict[str, str], previous: dict[str, list[str]] | None = None, *, storage: str | None = None) -> None:
    blob: dict = {"written_by": "lightning-unlearn", "format": _FORMAT, "files": dict(sorted(files.items()))}
    storage = storage or manifest_storage(folder)
    if storage:
        blob["storage"] = storage
    if previous:
        blob["previous"] = {n: list(d) for n, d in sorted(previous.items())}
    atomic_write_text(folder / MANIFEST, json.dumps(blob, indent=1) + "\n")


def register_storage(folder: str | os.PathLike, name: str = STUDY_FILE) -> None:
    """Create ``folder`` (with its parents) and list ``name`` as the run's storage in its manifest
    (called just before the storage file is created, so the file is never unlisted)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    blob = _manifest_blob(folder)
    files = {str(n): str(d) for n, d in blob.get("files", {}).items()}
    previous = {str(n): [str(x) for x in d] for n, d in blob.get("previous", {}).items()} or None
    _write_manifest(folder, files, previous, storage=name)


def manifest_digest(folder: str | os.PathLike) -> str | None:
    """A fingerprint of the result files ``folder``'s manifest lists (``None`` without any): tells whether a run
    wrote its results there (the storage entry, added when a run starts, does not change it)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    files = _manifest_blob(Path(folder)).get("files") or {}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest() if files else None


def _owned(folder: Path, name: str, owned: dict[str, list[str]] | None) -> bool:
    """Whether ``folder/name`` is a file the library wrote and nobody changed since."""
    path = folder / name
    return owned is not None and name in owned and path.is_file() and not path.is_symlink() and sha256(path) in owned[name]


def _foreign(folder: Path, names: Iterable[str], owned: dict[str, list[str]] | None) -> list[str]:
    """The ``names`` that exist in ``folder`` but are not the library's (user files, changed files, folders;
    the storage file counts as the library's when the manifest lists it as such)."""
    storage = manifest_storage(folder)
    return [n for n in names if os.path.lexists(folder / n) and not _owned(folder, n, owned) and not (n == storage and (folder / n).is_file())]


def has_results(owned: dict[str, list[str]] | None) -> bool:
    """Whether a manifest's files (:func:`read_manifest`) include a previous run's results."""
    return owned is not None and MARKER in owned


# ---------------------------------------------------------------------------- before the run
def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_output_dir(out_dir: str | os.PathLike, *, overwrite: bool = False, names: Iterable[str] = REPORT_FILES + (STUDY_FILE,)) -> Path:
    """Raise :class:`ConfigError` unless ``out_dir`` can receive a report; returns its absolute path.

    Allowed: a path that does not exist yet under a writable folder, and any writable folder
    (empty, a mount point, holding the user's own files, holding the study of an interrupted
    run) where none of ``names`` is a file the library did not write. A folder holding a
    previous run's results needs ``overwrite``.
    """
    out = Path(out_dir).expanduser().absolute()
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"output directory {str(out)!r} is a file, not a directory")
    if out.is_dir():
        owned = read_manifest(out)
        if has_results(owned) and not overwrite:
            listed = ", ".join(sorted(owned)[:4]) + (", ..." if len(owned) > 4 else "")
            raise ConfigError(
                f"output directory {str(out)!r} holds the results of a previous run ({listed}); pass --overwrite to replace "
                "them (files lightning-unlearn did not write are kept) or choose another directory"
            )
        foreign = _foreign(out, names, owned)
        if foreign:
            raise ConfigError(
                f"output directory {str(out)!r} holds {', '.join(map(repr, foreign))}, not written by lightning-unlearn (or changed "
                "since); the report would replace it: move it away or choose another directory"
            )
        base = out
    else:
        base = _nearest_existing(out.parent)
        if not base.is_dir():
            raise ConfigError(f"output directory {str(out)!r} is not writable: {str(base)!r} is not a directory")
    try:  # a real probe: os.access is always True for root
        probe = tempfile.mkdtemp(prefix=".lu-probe-", dir=base)
        os.rmdir(probe)
    except OSError as err:
        raise ConfigError(f"output directory {str(out)!r} is not writable ({err.strerror or err})") from None
    return out


# ---------------------------------------------------------------------------- at the end
def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _place(src: Path, dst: Path) -> None:
    """Move ``src`` over ``dst`` atomically (a copy through a temporary file across file systems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        with open(src, "rb") as f:
            atomic_write(dst, lambda out: shutil.copyfileobj(f, out))
        src.unlink()


def _merge(stage: Path, out: Path, overwrite: bool) -> list[str]:
    """Put the files of ``stage`` into the existing folder ``out``, file by file (see the module docstring)."""
    owned = read_manifest(out)
    if has_results(owned) and not overwrite:
        raise ConfigError(f"output directory {str(out)!r} received the results of another run meanwhile; pass --overwrite or choose another directory")
    names = _files(stage)
    foreign = _foreign(out, names, owned)
    if foreign:
        raise OutputInTheWayError(
            f"output directory {str(out)!r} now holds {', '.join(map(repr, foreign))}, not written by lightning-unlearn; "
            f"the results are kept in {str(stage)!r}",
            stage,
        )
    new = {n: sha256(stage / n) for n in names}
    with deferred_signals():
        _write_manifest(out, new, previous=owned)  # lists old and new files while both may be present
        for n in names:
            _place(stage / n, out / n)
        for n in sorted(set(owned or ()) - set(new)):
            if _owned(out, n, owned):
                (out / n).unlink()
        _write_manifest(out, new)
    shutil.rmtree(stage, ignore_errors=True)
    return names


def publish(out_dir: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Call ``write(folder)`` to fill a staging folder, then put its files into ``out_dir``.

    Args:
        out_dir: the output folder (created with its parents if missing).
        write: writes the report's files into the folder it is given.
        overwrite: replace the library's files of a previous run (see the module docstring).

    On any error or interruption before the files are placed, the staging folder is removed and
    ``out_dir`` is untouched. Returns ``out_dir``.

    Raises:
        ConfigError: a previous run's results without ``overwrite``, or a file of the user's
            in the way (see :func:`check_output_dir`).
    """
    out = Path(out_dir).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    existed = out.is_dir()
    parent = out if existed else out.parent
    stage = Path(tempfile.mkdtemp(prefix=_STAGING if existed else f".{out.name}.tmp-", dir=parent))
    try:
        write(stage)
        if not existed:
            _write_manifest(stage, {n: sha256(stage / n) for n in _files(stage)})
            os.chmod(stage, 0o755)  # mkdtemp creates 0700
            try:
                with deferred_signals():
                    os.replace(stage, out)
                return out
            except OSError:  # e.g. EXDEV/EBUSY: the folder cannot be renamed into place
                (stage / MANIFEST).unlink()
                out.mkdir(exist_ok=True)
        _merge(stage, out, overwrite)
    except OutputInTheWayError:
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


__all__ = [
    "MANIFEST", "REPORT_FILES", "STUDY_FILE", "OutputInTheWayError", "check_output_dir", "has_results", "manifest_digest", "manifest_storage", "publish",
    "read_manifest", "register_storage",
]
