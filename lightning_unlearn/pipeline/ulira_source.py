"""What the U-LiRA audit reads from a benchmark run: its config, its design, the chosen hyperparameters and its figures.

The audit (:mod:`lightning_unlearn.pipeline.ulira_stage`) is added to a benchmark run *after* its
tuning, without touching it: :func:`read_benchmark` opens the run's output folder read-only, from

1. its storage (``DIR/study.sqlite3``, or the ``--storage`` URL the run was given), when there is
   one: a finished run, or one still running whose tuning studies are finished; the chosen
   hyperparameters are those of its tuning studies (:func:`lightning_unlearn.tuning.tuning_result`),
   exactly as :func:`~lightning_unlearn.pipeline.results.build_results` reads them;
2. otherwise its ``results.json`` (a finished run whose storage was not kept, e.g. a committed
   results folder): the config, the design and each tuning's ``chosen`` are in it.

A method that was not tuned (``max_trials 0``, or nothing left to tune) runs with the
hyperparameters of its plan (:func:`~lightning_unlearn.pipeline.protocol.fixed_hparams`, the
plan's constants), as in the benchmark. Nothing here writes anything.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_unlearn.pipeline import protocol
from lightning_unlearn.pipeline.config import FLAT_FIELDS, BenchmarkConfig, ConfigError
from lightning_unlearn.pipeline.design import Design
from lightning_unlearn.pipeline.output import MARKER, STUDY_FILE, manifest_storage
from lightning_unlearn.pipeline.store import RunStore, default_storage_url

log = logging.getLogger(__name__)

#: the figures of a benchmark row shown beside U-LiRA (when the row has them)
SIDE_FIGURES = ("rmia_auc", "mia_nn_auc", "mia_nn_retrain_acc_gap_loo", "avg_gap")


@dataclass
class BenchmarkRun:
    """A benchmark run as the U-LiRA audit sees it.

    Attributes:
        folder: its output folder.
        config: its config (rebuilt from the storage's declaration or ``results.json``).
        design: its originals, forget sets and tuning sets.
        chosen: ``{objective: {method: hyperparameters or None}}`` (``None``: every tuning trial diverged).
        figures: ``{objective: {row: {figure: mean, "std": {figure: SD}}}}`` of :data:`SIDE_FIGURES`
            (empty where the run has no results yet).
        source: ``"storage"`` or ``"results.json"``.
    """

    folder: Path
    config: BenchmarkConfig
    design: Design
    chosen: dict[str, dict[str, dict[str, Any] | None]]
    figures: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    source: str = "results.json"


def _side(methods: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row: {**{f: e.get(f) for f in SIDE_FIGURES}, "std": {f: (e.get("std") or {}).get(f) for f in SIDE_FIGURES}} for row, e in methods.items()}


def config_of_results(config: dict[str, Any]) -> BenchmarkConfig:
    """The config of a ``results.json``'s ``config`` (every field as resolved there; the derived entries are left out)."""
    return BenchmarkConfig(**{k: v for k, v in config.items() if k in FLAT_FIELDS})


def plan_hparams(config: BenchmarkConfig, design: Design, objective: str, method: str) -> dict[str, Any] | None:
    """The hyperparameters of an untuned method under ``objective`` (its fixed ones, or its plan's constants); ``None`` if it is tuned."""
    plan = protocol.tuning_plans(config, design).get((objective, method))
    if plan is None:
        return protocol.fixed_hparams(config, method)
    return dict(plan.space.constants) if plan.sampler_kind == "none" else None


def _from_storage(folder: Path, store: RunStore) -> BenchmarkRun:
    from lightning_unlearn.pipeline.results import _Run, build_results

    run = _Run(store)
    chosen: dict[str, dict[str, dict[str, Any] | None]] = {}
    for objective in run.config.tuning.objectives:
        chosen[objective] = {}
        for m in run.config.unlearning_methods():
            hp, record = run.tuning(objective, m)
            plan = run.plans.get((objective, m))
            if plan is not None and plan.sampler_kind != "none" and (record is None or record.get("n_trials", 0) < plan.n_trials):
                done = 0 if record is None else record.get("n_trials", 0)
                raise ConfigError(
                    f"the benchmark in {str(folder)!r} has not finished tuning {m} under {objective} ({done} of {plan.n_trials} trials): "
                    "run the U-LiRA audit once its tuning is done"
                )
            chosen[objective][m] = hp
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        results = build_results(store, provenance={})
        figures = {name: _side(section["methods"]) for name, section in results["objectives"].items()}
    except Exception as err:  # a run still measuring its cells: the side columns stay empty, U-LiRA does not need them
        log.info("the benchmark's figures are not readable yet (%s): U-LiRA's table leaves them out", err)
    return BenchmarkRun(folder, run.config, run.design, chosen, figures, source="storage")


def _from_results(folder: Path, results: dict[str, Any]) -> BenchmarkRun:
    config = config_of_results(results["config"])
    design = Design.from_dict(results["design"])
    chosen: dict[str, dict[str, dict[str, Any] | None]] = {}
    for objective, section in results["objectives"].items():
        chosen[objective] = {}
        for m in config.unlearning_methods():
            record = section.get("tuning", {}).get(m)
            chosen[objective][m] = record.get("chosen") if record is not None and "chosen" in record else plan_hparams(config, design, objective, m)
    figures = {name: _side(section["methods"]) for name, section in results["objectives"].items()}
    return BenchmarkRun(folder, config, design, chosen, figures, source="results.json")


def read_benchmark(folder: str | Path, *, storage: str | None = None) -> BenchmarkRun:
    """The benchmark run of output folder ``folder`` (see the module docstring); nothing is written.

    Args:
        folder: the run's output folder (``lightning-unlearn benchmark --out``).
        storage: the run's storage URL when it is not ``folder/study.sqlite3`` (the run's ``--storage``).

    Raises:
        ConfigError: neither a storage holding a run nor a ``results.json`` in ``folder``, or a
            run whose tuning is not finished.
    """
    folder = Path(folder).expanduser().absolute()
    url = storage
    if url is None and (folder / (manifest_storage(folder) or STUDY_FILE)).is_file():
        url = default_storage_url(folder)
    if url is not None:
        store = RunStore(url)
        if store.existing_declaration() is not None:
            return _from_storage(folder, store)
    results_file = folder / MARKER
    if results_file.is_file():
        return _from_results(folder, json.loads(results_file.read_text()))
    raise ConfigError(
        f"{str(folder)!r} holds no benchmark run: neither its storage ({STUDY_FILE}, or --storage) nor its {MARKER}; "
        "give the --out folder of a lightning-unlearn benchmark run"
    )


__all__ = ["SIDE_FIGURES", "BenchmarkRun", "config_of_results", "plan_hparams", "read_benchmark"]
