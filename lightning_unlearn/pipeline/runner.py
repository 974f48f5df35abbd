"""``run_experiment``: one call from a :class:`BenchmarkConfig` to the run's storage, ``results.json`` and the report.

The call declares the run in its storage and then works on it as one worker
(:meth:`~lightning_unlearn.pipeline.stages.Experiment.run`), or starts ``workers`` worker processes
(:mod:`lightning_unlearn.pipeline.workers`) and waits for them; other workers may join from
anywhere (``lightning-unlearn worker --storage URL``). The report is written once every unit is
measured."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from lightning_unlearn.cache import KINDS, CacheNotWritableError, check_writable
from lightning_unlearn.pipeline.config import BenchmarkConfig, ConfigError
from lightning_unlearn.pipeline.output import STUDY_FILE, check_output_dir, publish, register_storage
from lightning_unlearn.pipeline.progress import NullProgress, Progress
from lightning_unlearn.pipeline.report import write_report
from lightning_unlearn.pipeline.results import build_results, figure_data
from lightning_unlearn.pipeline.stages import Experiment
from lightning_unlearn.pipeline.store import RUNS_STUDY, RunStore, default_storage_url, differences, jsonable
from lightning_unlearn.pipeline.workers import check_one_device, start_workers, stop_workers, workers_summary

log = logging.getLogger(__name__)


def is_rank_zero() -> bool:
    """False in the extra processes a DDP launcher starts (they rerun the same command)."""
    return all(int(os.environ.get(v, "0") or 0) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def storage_url(config: BenchmarkConfig, out: Path | None) -> str | None:
    """The run's storage: ``--storage``, else ``sqlite:///OUT/study.sqlite3``, else ``None`` (in memory)."""
    if config.execution.storage:
        return config.execution.storage
    return default_storage_url(out) if out is not None else None


def open_store(config: BenchmarkConfig, out: Path | None, *, study: str = RUNS_STUDY) -> RunStore:
    """The run's :class:`RunStore`; its SQLite file in ``out`` is listed in the folder's manifest when it is created.

    A process of rank > 0 under DDP gets an in-memory copy of what the storage holds (it runs the
    same units as rank 0, which alone writes).
    """
    url = storage_url(config, out)
    inside = out is not None and url == default_storage_url(out)
    store = RunStore(url, study=study, on_create=(lambda: register_storage(out, STUDY_FILE)) if inside else None)
    if is_rank_zero():
        return store
    copy = RunStore(None, study=study)
    if store.exists():
        memory = copy.storage
        for summary in optuna.get_all_study_summaries(store.storage, include_best_trial=False):
            optuna.copy_study(from_study_name=summary.study_name, from_storage=store.storage, to_storage=memory)
    return copy


def _fresh_words(config: BenchmarkConfig, out: Path | None) -> str:
    if config.execution.storage:
        return "rerun with those settings to resume, pass --overwrite to start afresh (it deletes the run's studies there), or choose another --storage"
    return f"rerun with those settings to resume, pass --overwrite to start afresh (it empties {STUDY_FILE}), or choose another --out"


def run_experiment(
    config: BenchmarkConfig, out_dir: str | os.PathLike | None = None, *, progress: Progress | None = None, overwrite: bool = False,
    workers: int = 1, study: str = RUNS_STUDY,
) -> dict[str, Any]:
    """Run a whole benchmark: data, models (cached), tuning, unlearning, audit, report.

    Every measured run is a unit of work stored in the run's storage (``--storage``, by default
    ``OUT/study.sqlite3``): a run interrupted for any reason keeps what it measured, and calling
    ``run_experiment`` again with the same settings resumes it, rerunning nothing that was stored.
    ``results.json`` and the report are built from the storage alone
    (:func:`~lightning_unlearn.pipeline.results.build_results`). Any number of
    ``lightning-unlearn worker`` processes may share the storage and the cache meanwhile; the
    report is written once every unit is measured, with the same numbers whoever measured them.

    Args:
        config: the settings (validated here).
        out_dir: where ``results.json``, ``report.md``, the PNG figures and (by default) the storage
            go; the report files are written at the end, each atomically, never touching a file the
            library did not write (:mod:`lightning_unlearn.pipeline.output`; ``None``: nothing is
            written and the storage is in memory unless ``storage`` is set).
        progress: a :class:`~lightning_unlearn.pipeline.progress.Progress` (default: silent).
        overwrite: replace the results of a previous run in ``out_dir``; a storage holding a run
            with other settings is emptied and the run starts afresh (default: refuse both).
        workers: 1 (default): this process is the run's worker. N > 1: start N worker processes
            on this machine (one GPU each when there are GPUs, see
            :func:`~lightning_unlearn.pipeline.workers.worker_environments`), wait for them, and
            measure here whatever a failed worker left.
        study: the name of the run's study in the storage (default ``"runs"``; another name lets
            one database hold several runs).

    Under a multi-process strategy (``strategy="ddp"``) every rank runs the same stages and
    trains the same models together; only rank 0 writes the storage and ``out_dir`` (no workers).

    Returns:
        The ``results.json`` dictionary (see :mod:`lightning_unlearn.pipeline.results`).

    Raises:
        ConfigError: bad input (unknown name, inapplicable method, missing data directory,
            unwritable output or cache directory, a previous run's results without ``overwrite``,
            a storage holding a run with other settings without ``overwrite``, workers without a
            storage or with a multi-process strategy), before any model is trained.

    Example:
        >>> from lightning_unlearn.pipeline import BenchmarkConfig, run_experiment
        >>> res = run_experiment(BenchmarkConfig(methods=("ft",), max_train=300, epochs=2), "out")  # doctest: +SKIP
        >>> res["methods"]["ft"]["avg_gap"], res["objectives"]["avg_gap"]["statement"]  # doctest: +SKIP
    """
    start = time.perf_counter()
    config = config.validate()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive number of worker processes, got {workers!r}")
    out = check_output_dir(out_dir, overwrite=overwrite) if out_dir is not None else None
    if workers > 1:
        check_one_device(config)
        if storage_url(config, out) is None:
            raise ConfigError("worker processes share the run's storage: give an output directory or --storage")
    try:  # the cache is written after the first model is trained: prove it can be, before any work
        for kind in KINDS:
            check_writable(config.cache_root / kind)
    except CacheNotWritableError as err:
        raise ConfigError(str(err)) from None
    store = open_store(config, out, study=study)
    experiment = Experiment(config, store, progress=progress or NullProgress())
    declaration = experiment.declaration()  # opens the data: bad data input fails here
    stored = store.existing_declaration()
    if stored is not None and differences(stored, jsonable(declaration)):
        if overwrite and is_rank_zero():
            store.delete()
        else:
            store.check(declaration, fresh=_fresh_words(config, out))
    elif stored is not None:
        log.info("resuming the run stored in %s", store.url)
    store.start(declaration)
    if workers > 1:
        run = _with_workers(experiment, store, workers, start)
    else:
        try:
            experiment.run()
        finally:
            store.close()
        counts = experiment.counts()
        run = {"seconds": time.perf_counter() - start, **counts, "threads": torch.get_num_threads()}
        if store.url is not None and is_rank_zero():
            store.record_worker({**counts, "seconds": run["seconds"]})
    results = build_results(store, run=run)
    if out is not None and is_rank_zero():
        figures = figure_data(store)
        publish(out, lambda tmp: write_report(Path(tmp), results, figures), overwrite=overwrite)
    return results


def _with_workers(experiment: Experiment, store: RunStore, n: int, start: float) -> dict[str, Any]:
    """Declare the run, start ``n`` local workers on it, wait; then finish here what a failed worker left.
    Returns the run statistics: the workers' records (and this process's) added up."""
    assert store.url is not None
    store.study  # noqa: B018 - creates the runs study with the declaration: the workers read it
    config = experiment.config
    procs = start_workers(n, store.url, study=store.study_name, cache_dir=config.execution.cache_dir, accelerator=config.execution.accelerator,
                          threads=torch.get_num_threads(), quiet=isinstance(experiment.progress, NullProgress))
    pids = {p.pid for p in procs}
    try:
        codes = [p.wait() for p in procs]
    finally:
        stop_workers(procs)
    failed = [c for c in codes if c != 0]
    if failed:
        log.warning("%d of %d workers failed (exit codes %s); measuring what they left here", len(failed), n, failed)
    if not experiment.complete():
        try:
            experiment.run()
        finally:
            store.close()
        counts = experiment.counts()
        store.record_worker({**counts, "seconds": time.perf_counter() - start})
        pids.add(os.getpid())
    mine = {k: v for k, v in store.workers().items() if v.get("pid") in pids}
    return {**workers_summary(mine), "seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}


__all__ = ["is_rank_zero", "open_store", "run_experiment", "storage_url"]
