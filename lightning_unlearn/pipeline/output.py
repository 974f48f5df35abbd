"""The output directory: checked before any work, written in one atomic step at the end.

:func:`check_output_dir` runs before training and raises :class:`ConfigError` for an
unwritable location (nothing is left behind by the probe). :func:`publish` writes every file
into a temporary sibling folder and renames it into place, so the output directory never
holds a half-written report: it is either absent (or the previous run's) or complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from lightning_unlearn.pipeline.config import ConfigError

MARKER = "results.json"


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    """Raise :class:`ConfigError` unless ``out_dir`` can receive a report.

    Allowed: a path that does not exist yet under a writable folder, an empty folder, or the
    folder of a previous run (it holds ``results.json`` and is replaced as a whole).
    """
    out = Path(out_dir).expanduser().absolute()
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"output directory {str(out)!r} is a file, not a directory")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise ConfigError(f"output directory {str(out)!r} is not empty and holds no previous {MARKER}; choose a new or empty directory")
    base = _nearest_existing(out.parent)
    if not base.is_dir():
        raise ConfigError(f"output directory {str(out)!r} is not writable: {str(base)!r} is not a directory")
    try:  # a real probe: os.access is always True for root
        probe = tempfile.mkdtemp(prefix=".lu-probe-", dir=base)
        os.rmdir(probe)
    except OSError as err:
        raise ConfigError(f"output directory {str(out)!r} is not writable ({err.strerror or err})") from None
    return out


def publish(out_dir: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``out_dir``, then rename it into place.

    On any error the temporary folder is removed and ``out_dir`` is untouched.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rmdir(old)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
