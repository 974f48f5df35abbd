"""Many workers on one run: the ``worker`` entry point, local worker processes (one per GPU), and the report from a storage.

A benchmark run lives in one optuna storage (:mod:`lightning_unlearn.pipeline.store`). Its
declaration (settings, design, tuning plans) is written by ``lightning-unlearn benchmark``; then
any number of processes may work on it, on one machine or many, as long as they share the storage
and the cache folder:

* :func:`run_worker` (``lightning-unlearn worker --storage URL``) reads the declaration, rebuilds
  the run's config from it (only the cache folder may differ: ``--cache-dir``), checks that this
  process declares the same run (same library and data), and runs
  :meth:`~lightning_unlearn.pipeline.stages.Experiment.run` as one worker until nothing is left;
* :func:`start_workers` / :func:`wait_workers` start N such processes on this machine, with one
  GPU each when there are GPUs (``CUDA_VISIBLE_DEVICES``, round robin: more workers than GPUs share
  the cards), for ``lightning-unlearn benchmark --workers N`` and the benchmark scripts;
* :func:`report_from_storage` (``lightning-unlearn report --storage URL --out DIR``) writes
  ``results.json``, ``report.md`` and the figures from the storage alone: the same numbers as the
  report of a single process, whoever measured what.

Each worker records what it did in the storage (:meth:`~lightning_unlearn.pipeline.store.RunStore.record_worker`);
:func:`workers_summary` adds the records up for a report.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_unlearn.pipeline.config import BenchmarkConfig, ConfigError
from lightning_unlearn.pipeline.progress import NullProgress, Progress
from lightning_unlearn.pipeline.store import RUNS_STUDY, RunStore

log = logging.getLogger(__name__)

#: seconds a worker waits, by default, for the run's declaration to appear in the storage
DECLARATION_WAIT_S = 600.0
#: the counts a worker records (and :func:`workers_summary` adds up)
COUNTS = ("models_trained", "models_loaded", "units_run", "units_reused")


def check_one_device(config: BenchmarkConfig) -> None:
    """Workers each run on one device (one per GPU): refuse a multi-process strategy.

    Raises:
        ConfigError: ``strategy`` is DDP-like (one ``benchmark`` process runs such a run; its other
            ranks are its own processes, not workers).
    """
    strategy = str(config.execution.strategy).lower()
    if strategy.startswith("ddp") or strategy in ("fsdp", "deepspeed"):
        raise ConfigError(
            f"strategy {config.execution.strategy!r} spreads one process over several devices; workers take one device each "
            "(run one worker per GPU with CUDA_VISIBLE_DEVICES, or one benchmark process without workers for DDP)"
        )


def wait_for_declaration(store: RunStore, wait_s: float, poll_s: float = 2.0) -> dict[str, Any]:
    """The run's declaration, waiting up to ``wait_s`` seconds for ``lightning-unlearn benchmark`` to write it.

    While waiting the storage is only read (an RDB's tables are never created from here: the
    process declaring the run creates them, and two first writers of one SQLite file would race).

    Raises:
        ConfigError: none appeared (naming the storage and what to start first).
    """
    deadline = time.monotonic() + wait_s
    probe = RunStore(store.url, study=store.study_name, create=False)
    while True:
        try:
            declaration = probe.existing_declaration()
        except Exception as err:  # the file exists but its tables are still being created: look again
            log.info("the storage %s cannot be read yet (%s); retrying", store.url, type(err).__name__)
            probe.forget_storage()
            declaration = None
        if declaration is not None:
            return declaration
        if time.monotonic() >= deadline:
            named = f" named {store.study_name!r}" if store.study_name != RUNS_STUDY else ""
            raise ConfigError(
                f"the storage {store.url} holds no benchmark run{named} (waited {wait_s:g} s): start "
                f"`lightning-unlearn benchmark ... --storage {store.url}` first, it declares the run the workers share"
            )
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def run_worker(
    storage: str,
    *,
    study: str = RUNS_STUDY,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    wait_s: float = DECLARATION_WAIT_S,
    poll_s: float | None = None,
) -> dict[str, Any]:
    """Work on the run declared in ``storage`` until nothing is left (see the module docstring).

    Args:
        storage: the run's storage URL (``sqlite:///...``, ``journal://...``, a database URL).
        study: the run's study name (``--study`` of the benchmark; default ``"runs"``).
        cache_dir: this worker's cache folder (default: the declared one). Workers that share
            it train every model once.
        progress: progress display (default: silent).
        wait_s: seconds to wait for the declaration when the storage holds none yet.
        poll_s: seconds between two looks while waiting for other workers (default: the cache
            locks' ``poll``, 1 s).

    Returns:
        What this worker did: ``models_trained``, ``models_loaded``, ``units_run``,
        ``units_reused``, ``seconds`` (also recorded in the storage).

    Raises:
        ConfigError: no run declared in time; a multi-process strategy; an unwritable cache; a
            run this process would declare otherwise (another library version or other data).
    """
    from lightning_unlearn.cache import KINDS, CacheNotWritableError, check_writable
    from lightning_unlearn.pipeline import protocol
    from lightning_unlearn.pipeline.stages import Experiment

    start = time.perf_counter()
    store = RunStore(storage, study=study, wait_s=poll_s)
    declaration = wait_for_declaration(store, wait_s)
    config = protocol.config_of(declaration)
    if cache_dir is not None:
        config = config.replace(cache_dir=str(cache_dir))
    config = config.validate()
    check_one_device(config)
    try:
        for kind in KINDS:
            check_writable(config.cache_root / kind)
    except CacheNotWritableError as err:
        raise ConfigError(str(err)) from None
    experiment = Experiment(config, store, progress=progress or NullProgress())
    mine = experiment.declaration()
    store.check(mine, fresh="this worker runs another library version or reads other data than the process that declared the run")
    store.start(mine)
    try:
        experiment.run()
    finally:
        store.close()
    summary = {**experiment.counts(), "seconds": time.perf_counter() - start}
    store.record_worker(summary)
    return summary


def workers_summary(records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The counts of several workers' records added up, ``seconds`` the longest, ``workers`` how many.

    Example:
        >>> workers_summary({"worker:a:1:7": {"units_run": 3, "models_trained": 2, "seconds": 10.0},
        ...                  "worker:a:2:9": {"units_run": 4, "models_trained": 1, "seconds": 12.5}})["units_run"]
        7
    """
    out: dict[str, Any] = {k: sum(int(r.get(k) or 0) for r in records.values()) for k in COUNTS}
    out["seconds"] = max((float(r.get("seconds") or 0.0) for r in records.values()), default=0.0)
    out["workers"] = len(records)
    return out


# ---------------------------------------------------------------------------- local worker processes
def visible_gpus() -> list[str]:
    """The GPUs this process may give to workers: ``$CUDA_VISIBLE_DEVICES`` when set, else every CUDA device (none without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # pragma: no cover - a broken CUDA install: run on the CPU
        return []


def worker_environments(n: int, accelerator: str = "auto", *, threads: int = 1, gpus: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The environment changes of ``n`` local workers: ``OMP_NUM_THREADS`` and, when GPUs are used,
    one ``CUDA_VISIBLE_DEVICES`` each, round robin over ``gpus`` (default :func:`visible_gpus`).

    Example:
        >>> [e["CUDA_VISIBLE_DEVICES"] for e in worker_environments(3, "gpu", gpus=["0", "1"])]
        ['0', '1', '0']
        >>> worker_environments(2, "cpu", gpus=["0"])
        [{'OMP_NUM_THREADS': '1'}, {'OMP_NUM_THREADS': '1'}]
    """
    use = [] if accelerator == "cpu" else list(visible_gpus() if gpus is None else gpus)
    envs = []
    for i in range(n):
        env = {"OMP_NUM_THREADS": str(threads)}
        if use:
            env["CUDA_VISIBLE_DEVICES"] = use[i % len(use)]
        envs.append(env)
    return envs


def worker_command(storage: str, *, study: str = RUNS_STUDY, cache_dir: str | os.PathLike | None = None, threads: int = 1,
                   quiet: bool = False, name: str | None = None) -> list[str]:
    """The command line of one ``lightning-unlearn worker`` on ``storage`` (this Python, ``-m lightning_unlearn.cli``)."""
    cmd = [sys.executable, "-m", "lightning_unlearn.cli", "worker", "--storage", storage, "--threads", str(threads)]
    if study != RUNS_STUDY:
        cmd += ["--study", study]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    if quiet:
        cmd.append("--quiet")
    if name:
        cmd += ["--name", name]
    return cmd


def start_workers(
    n: int, storage: str, *, study: str = RUNS_STUDY, cache_dir: str | os.PathLike | None = None, accelerator: str = "auto", threads: int = 1,
    quiet: bool = False, log_dir: str | os.PathLike | None = None,
) -> list[subprocess.Popen]:
    """Start ``n`` ``lightning-unlearn worker`` processes on ``storage`` (see :func:`worker_environments`).

    Their output goes to this process's stderr, or to ``log_dir/worker-<i>.log`` when given. The
    repository (or installed package) this process imports is on their ``PYTHONPATH``.
    """
    root = str(Path(__file__).resolve().parents[2])
    procs = []
    for i, extra in enumerate(worker_environments(n, accelerator, threads=threads)):
        env = {**os.environ, **extra, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
        cmd = worker_command(storage, study=study, cache_dir=cache_dir, threads=threads, quiet=quiet, name=f"worker {i}")
        out = None
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            out = open(Path(log_dir) / f"worker-{i}.log", "w")  # noqa: SIM115 - closed by the child's exit (inherited)
        procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out is not None else None))
        if out is not None:
            out.close()
        log.info("started worker %d (pid %d)%s", i, procs[-1].pid, f" on GPU {extra['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in extra else "")
    return procs


def wait_workers(procs: Sequence[subprocess.Popen], *, deadline: float | None = None) -> list[int]:
    """Wait for ``procs`` (until ``deadline``, a ``time.monotonic()`` value, after which the rest are
    terminated: their units are failed and taken again by the next worker). Returns the exit codes."""
    try:
        for p in procs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                p.wait(timeout=left)
            except subprocess.TimeoutExpired:
                break
    finally:
        stop_workers(procs)
    return [p.returncode for p in procs]


def stop_workers(procs: Sequence[subprocess.Popen], grace_s: float = 30.0) -> None:
    """Terminate the workers still running (SIGTERM: each fails its running trials and exits), then kill what is left after ``grace_s``."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    end = time.monotonic() + grace_s
    for p in running:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------- the report
def report_from_storage(storage: str, out_dir: str | os.PathLike, *, study: str = RUNS_STUDY, overwrite: bool = False) -> dict[str, Any]:
    """Write ``results.json``, ``report.md`` and the figures of the run in ``storage`` into ``out_dir``.

    The numbers are built from the storage alone (:func:`~lightning_unlearn.pipeline.results.build_results`),
    so they are those of a single-process run of the same declaration; ``run`` holds the workers'
    records added up (:func:`workers_summary`). A run not finished yet gives a report whose
    unfinished rows say "incomplete".

    Raises:
        ConfigError: the storage holds no run (of that name); ``out_dir`` cannot receive a report
            (as for the benchmark: a previous run's results need ``overwrite``).
    """
    from lightning_unlearn.pipeline.output import check_output_dir, publish
    from lightning_unlearn.pipeline.report import write_report
    from lightning_unlearn.pipeline.results import build_results, figure_data

    store = RunStore(storage, study=study)
    wait_for_declaration(store, 0.0)
    out = check_output_dir(out_dir, overwrite=overwrite)
    results = build_results(store, run=workers_summary(store.workers()))
    figures = figure_data(store)
    publish(out, lambda tmp: write_report(Path(tmp), results, figures), overwrite=overwrite)
    return results


__all__ = [
    "COUNTS", "DECLARATION_WAIT_S", "check_one_device", "report_from_storage", "run_worker", "start_workers", "stop_workers", "visible_gpus",
    "wait_for_declaration", "wait_workers", "worker_command", "worker_environments", "workers_summary",
]
