"""Atomic file writes and checked, safe loads: the one place the library touches files it keeps.

Every artefact the library keeps on disk (decoded data pools, trained models, reference models,
membership tables, reports) is written by :func:`atomic_write`: the bytes go to a temporary
file in the same folder, which is then renamed over the target with ``os.replace``. A reader
therefore sees either the previous complete file or the new complete file, never half of one,
also when several processes (DDP ranks, parallel benchmark jobs) write the same path.

Every artefact is read back by :func:`load_checked`: ``torch.load(weights_only=True)`` (never
the unsafe pickle path, whatever torch's error message suggests), with any failure turned into
:class:`DamagedFileError`, which names the file and what was wrong with it, so callers can
remove and rebuild it.
"""

from __future__ import annotations

import glob
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["DamagedFileError", "atomic_save", "atomic_write", "atomic_write_text", "load_checked", "temporaries_of"]

_TMP_SUFFIX = ".tmp"


class DamagedFileError(RuntimeError):
    """A kept file could not be read, or its content is not what its name promises.

    Attributes:
        path: the file.
        reason: one line saying what is wrong (truncated, wrong format, wrong settings, ...).
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"damaged file {str(self.path)!r}: {reason}")


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None], *, mode: int = 0o644) -> Path:
    """Write ``path`` in one atomic step: ``write(f)`` fills a temporary sibling, then it is renamed.

    Args:
        path: the target file; its folder is created if missing.
        write: called with a binary file object open for writing.
        mode: permission bits of the result (``tempfile`` creates 0600 files; caches may be shared).

    Returns:
        ``path`` as a :class:`~pathlib.Path`. On any error (including ``KeyboardInterrupt``) the
        temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def temporaries_of(path: str | os.PathLike) -> list[Path]:
    """The temporary files of :func:`atomic_write` calls on ``path``: in progress, or left by a killed writer.

    They are hidden siblings ``.NAME.XXXXXXXX.tmp`` (``tempfile.mkstemp``'s 8 random characters),
    never read as ``path``. Remove them only while no other writer of ``path`` can be running
    (e.g. under its build lock).
    """
    path = Path(path)
    return sorted(path.parent.glob(glob.escape(_tmp_prefix(path)) + "?" * 8 + _TMP_SUFFIX))


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def load_checked(path: str | os.PathLike, *, what: str, required_keys: tuple[str, ...] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with every failure named.

    Args:
        path: the file.
        what: what the file should hold, for the message (``"data pool"``, ``"model"``).
        required_keys: the file must hold a ``dict`` with at least these keys.

    Raises:
        FileNotFoundError: ``path`` does not exist (not damage: the caller builds it).
        DamagedFileError: truncated, not a torch file, holds objects outside the safe
            ``weights_only`` set, or lacks ``required_keys``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DamagedFileError(path, f"cannot be read as a {what} ({type(err).__name__}: {first[:200]})") from None
    if required_keys:
        if not isinstance(obj, dict):
            raise DamagedFileError(path, f"holds a {type(obj).__name__}, not a {what} (a dict with {', '.join(required_keys)})")
        missing = [k for k in required_keys if k not in obj]
        if missing:
            raise DamagedFileError(path, f"is not a {what}: missing {', '.join(missing)}")
    return obj
