"""Test utilities shared by the test files: importing a script as a module, and two-process gloo DDP runs.

- :func:`load_script`: run a file of ``benchmarks/`` or ``examples/`` (not packages) as a module;
- :func:`spawn_gloo`: run ``fn(rank, world, *args)`` in ``world`` CPU processes joined by a gloo
  process group (``torch.multiprocessing.spawn``; ``fn`` must be a module-level function);
- :func:`run_ddp_script`: run a script of ``tests/ddp/`` in a subprocess (Lightning's DDP launcher
  re-executes the script for the other ranks, so it cannot run inside the pytest process).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str | Path, name: str | None = None) -> ModuleType:
    """Execute ``path`` (relative to the repository root, or absolute) as module ``name`` (default: its stem).

    The module is registered in ``sys.modules`` first: dataclasses defined in it look their
    module up there.
    """
    path = ROOT / path
    name = name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_worker(rank: int, world: int, port: int, fn: Callable[..., None], args: tuple) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def spawn_gloo(fn: Callable[..., None], *args, world: int = 2) -> None:
    """Run ``fn(rank, world, *args)`` on ``world`` processes inside one gloo process group; raises if a rank fails."""
    import torch.multiprocessing as mp

    mp.spawn(_gloo_worker, args=(world, free_port(), fn, args), nprocs=world, join=True)


def run_ddp_script(name: str, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``tests/ddp/<name>`` with ``args`` from the repository root (one thread per process).

    Raises ``AssertionError`` with the tail of the script's output when it exits non-zero.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "ddp" / name), *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc
