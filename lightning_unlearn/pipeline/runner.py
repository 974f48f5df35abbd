"""``run_experiment``: one call from a :class:`BenchmarkConfig` to ``results.json`` and the report."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from lightning_unlearn.cache import KINDS, CacheNotWritableError, check_writable
from lightning_unlearn.pipeline.config import BenchmarkConfig, ConfigError
from lightning_unlearn.pipeline.output import check_output_dir, publish
from lightning_unlearn.pipeline.progress import NullProgress, Progress
from lightning_unlearn.pipeline.report import write_report
from lightning_unlearn.pipeline.results import build_results
from lightning_unlearn.pipeline.stages import Experiment

log = logging.getLogger(__name__)


def is_rank_zero() -> bool:
    """False in the extra processes a DDP launcher starts (they rerun the same command)."""
    return all(int(os.environ.get(v, "0") or 0) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def run_experiment(
    config: BenchmarkConfig, out_dir: str | os.PathLike | None = None, *, progress: Progress | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Run a whole benchmark: data, models (cached), tuning, unlearning, audit, report.

    Args:
        config: the settings (validated here).
        out_dir: where ``results.json``, ``report.md`` and the PNG figures go; written at the
            end, each file atomically, and never touching a file the library did not write
            (:mod:`lightning_unlearn.pipeline.output`; ``None``: nothing is written).
        progress: a :class:`~lightning_unlearn.pipeline.progress.Progress` (default: silent).
        overwrite: replace the results of a previous run in ``out_dir`` (default: refuse).

    Under a multi-process strategy (``strategy="ddp"``) every rank runs the same stages and
    trains the same models together; only rank 0 writes ``out_dir``.

    Returns:
        The ``results.json`` dictionary (see :mod:`lightning_unlearn.pipeline.results`).

    Raises:
        ConfigError: bad input (unknown name, inapplicable method, missing data directory,
            unwritable output or cache directory, a previous run's results without ``overwrite``),
            before any model is trained.

    Example:
        >>> from lightning_unlearn.pipeline import BenchmarkConfig, run_experiment
        >>> res = run_experiment(BenchmarkConfig(methods=("ft",), max_train=300, epochs=2), "out")  # doctest: +SKIP
        >>> res["methods"]["ft"]["avg_gap"]  # doctest: +SKIP
    """
    config = config.validate()
    out = check_output_dir(out_dir, overwrite=overwrite) if out_dir is not None else None
    try:  # the cache is written after the first model is trained: prove it can be, before any work
        for kind in KINDS:
            check_writable(config.cache_root / kind)
    except CacheNotWritableError as err:
        raise ConfigError(str(err)) from None
    progress = progress or NullProgress()
    result = Experiment(config, progress=progress).run()
    results = build_results(result, config)
    results["run"]["threads"] = torch.get_num_threads()
    if out is not None and is_rank_zero():
        publish(out, lambda tmp: write_report(Path(tmp), results, result), overwrite=overwrite)
    return results
