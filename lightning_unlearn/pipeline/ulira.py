"""``run_ulira``: the U-LiRA audit of a benchmark run, from its output folder to ``DIR/ulira/ulira.{json,md}``.

>>> from lightning_unlearn.pipeline.ulira import run_ulira
>>> res = run_ulira("out/", shadows=8)  # doctest: +SKIP
>>> res["objectives"]["avg_gap"]["claims"]["trw"]["reduction"]  # doctest: +SKIP

The audit reads the benchmark (:mod:`lightning_unlearn.pipeline.ulira_source`), runs its units
into its own storage (:mod:`lightning_unlearn.pipeline.ulira_stage`) and writes its report
(:mod:`lightning_unlearn.pipeline.ulira_results`) into ``DIR/ulira/``, an output folder of its own
(its manifest, storage and files; :mod:`lightning_unlearn.pipeline.output`). The benchmark's
declaration, storage and files are only read, so the audit can be added to a finished run, or
to one still evaluating once its tuning is done, and rerun with more shadows later.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from lightning_unlearn.cache import KINDS, CacheNotWritableError, check_writable
from lightning_unlearn.pipeline.config import ConfigError
from lightning_unlearn.pipeline.output import STUDY_FILE, check_output_dir, publish, register_storage
from lightning_unlearn.pipeline.progress import NullProgress, Progress
from lightning_unlearn.pipeline.store import RunStore, default_storage_url, differences, jsonable
from lightning_unlearn.pipeline.ulira_results import build_ulira_results, write_ulira_report
from lightning_unlearn.pipeline.ulira_source import read_benchmark
from lightning_unlearn.pipeline.ulira_stage import ULiRAStage, default_out, default_shadows

#: the audit's files in ``DIR/ulira``
RESULTS_FILE = "ulira.json"
REPORT_FILE = "ulira.md"


def run_ulira(
    folder: str | os.PathLike,
    *,
    shadows: int | None = None,
    seed: int = 0,
    variance: str = "auto",
    objectives: tuple[str, ...] | str | None = None,
    claimants: tuple[str, ...] | None = None,
    cache_dir: str | os.PathLike | None = None,
    accelerator: str | None = None,
    devices: str | int | None = None,
    storage: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run (or resume) the U-LiRA audit of the benchmark run in ``folder`` and write ``folder/ulira/ulira.{json,md}``.

    Args:
        folder: the benchmark's output folder (``lightning-unlearn benchmark --out``; a pipeline
            folder of ``benchmarks/random_forget.py`` or ``benchmarks/class_forget.py``).
        shadows: N, shadow pairs per forget set (>= 2, even for random forgetting): N observations
            of each attacked example per world for class forgetting, N/2 for random forgetting.
            Default: 8 per world (:func:`~lightning_unlearn.pipeline.ulira_stage.default_shadows`:
            8 for class forgetting, 16 for random forgetting), the benchmark scripts' floor.
        seed: the shadows' seed (forget tables, shadow models, shadow unlearning runs).
        variance: ``"auto"`` (default: one pooled variance per world below 64 observations per
            world, per example from 64 on), ``"global"`` or ``"per_example"``.
        objectives: the benchmark's objectives whose chosen hyperparameters are audited: the
            first declared (default), ``"all"``, or names.
        claimants: the rows whose gap reduction against the best prior method is computed
            (default: TRW's rows for class forgetting, AMUN's for random forgetting).
        cache_dir: the artefact cache holding the benchmark's models (default: the benchmark's).
        accelerator, devices: override the benchmark's (the models' cache keys include them).
        storage: the benchmark's storage URL when it is not ``folder/study.sqlite3``.
        overwrite: start the audit afresh when its storage holds one with other settings
            (e.g. another N); default: refuse, naming the differences.
        progress: progress display (default: silent).

    Returns:
        The ``ulira.json`` dictionary (:mod:`lightning_unlearn.pipeline.ulira_results`).

    Raises:
        ConfigError: no benchmark run in ``folder``, its tuning not finished, bad settings, an
            unwritable cache or output folder, or an audit with other settings stored there
            without ``overwrite``; before any model is trained.
    """
    start = time.perf_counter()
    bench = read_benchmark(folder, storage=storage)
    changes = {k: v for k, v in (("cache_dir", None if cache_dir is None else str(cache_dir)), ("accelerator", accelerator), ("devices", devices))
               if v is not None}
    if changes:
        bench.config = bench.config.replace(**changes)
    try:
        for kind in KINDS:
            check_writable(bench.config.cache_root / kind)
    except CacheNotWritableError as err:
        raise ConfigError(str(err)) from None
    out = check_output_dir(default_out(bench.folder), overwrite=True, names=(RESULTS_FILE, REPORT_FILE, STUDY_FILE))
    store = RunStore(default_storage_url(out), on_create=lambda: register_storage(out, STUDY_FILE))
    shadows = default_shadows(bench.config.kind) if shadows is None else shadows
    stage = ULiRAStage(bench, store, shadows=shadows, seed=seed, variance=variance, objectives=objectives, progress=progress or NullProgress())
    declaration = stage.declaration()
    stored = store.existing_declaration()
    if stored is not None and differences(stored, jsonable(declaration)):
        if overwrite:
            store.delete()
        else:
            store.check(declaration, fresh=f"rerun with those settings to resume, pass --overwrite to start the audit afresh (it empties {out / STUDY_FILE})")
    store.start(declaration)
    stage.run()
    run = {"seconds": time.perf_counter() - start, "units_run": store.ran, "units_reused": store.reused, **stage.counts, "threads": torch.get_num_threads()}
    shown = os.path.relpath(bench.folder)  # the folder as the report names it: relative to here when inside it
    results = build_ulira_results(store, side=bench.figures, folder=shown if not shown.startswith("..") else str(bench.folder),
                                  source=bench.source, claimants=claimants, run=run)

    def write(tmp: str | Path) -> None:
        (Path(tmp) / RESULTS_FILE).write_text(json.dumps(jsonable(results), indent=1))
        (Path(tmp) / REPORT_FILE).write_text(write_ulira_report(results))

    publish(out, write, overwrite=True)
    return results


__all__ = ["REPORT_FILE", "RESULTS_FILE", "run_ulira"]
