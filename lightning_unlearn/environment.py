"""Where numbers come from: the compute device and the provenance of a results folder."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def device_name(accelerator: str = "auto") -> str:
    """The CUDA card's name, or ``"CPU (<processor>, <cores> cores visible, <threads> torch threads)"``.

    Args:
        accelerator: ``"cpu"`` describes the CPU even where a GPU is present (a run pinned to
            the CPU); anything else describes GPU 0 when CUDA is available.
    """
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads)"


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def run_provenance(*, accelerator: str = "auto", argv: Sequence[str] | None = None) -> dict[str, Any]:
    """What made a results folder: command line, code version, library versions, device.

    Returns:
        ``{"command", "commit", "dirty", "python", "torch", "lightning", "lightning_unlearn", "device"}``:
        ``command`` is the interpreter's name and ``sys.argv`` (or ``argv``) joined with spaces
        (under ``python -m`` the module's file stands for ``-m module``); ``commit`` the git
        commit of the package's source tree, ``"unknown"`` outside a git checkout (an
        installed wheel), and ``dirty`` whether that tree had uncommitted changes to tracked
        files (``None`` when unknown).
    """
    import lightning

    import lightning_unlearn

    source = Path(lightning_unlearn.__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], source)
    status = _git(["status", "--porcelain", "--untracked-files=no"], source) if commit else None
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv] if argv is None else argv),
        "commit": commit or "unknown",
        "dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "lightning_unlearn": lightning_unlearn.__version__,
        "device": device_name(accelerator),
    }


__all__ = ["device_name", "run_provenance"]
