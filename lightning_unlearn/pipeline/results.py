"""``results.json``: per-run Avg. Gap against the retrained models, then mean and std per method.

Schema (the issue's contract; figures in percent, ``sym_kl`` in nats)::

    {"config": {... "forget", "no_remain", "avg_gap_mia", ...},
     "methods": {NAME: {"ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "avg_gap",
                        "avg_gap_mis", "seconds", "hparams", "per_seed": [...],
                        "std": {...}, "rmia_tpr_at_1pct_fpr",
                        ["ua_test", "sym_kl" for class forgetting]}},
     "tuning": {METHOD: [{"hparams", "avg_gap", ...}, ...]},
     "run": {"seconds", "models_trained", "models_loaded"}}

Avg. Gap is computed per run and then averaged (``metrics.md`` §3). Starred values are the
mean over the retrained models of the same forget set; a retrained model is scored against
the *other* retrained models (leave-one-out), or against itself (gap 0) when it is the only one.
``std`` is the population standard deviation over runs (0 for one seed).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lightning_unlearn.pipeline import evaluation as ev
from lightning_unlearn.pipeline.config import BenchmarkConfig
from lightning_unlearn.pipeline.stages import ExperimentResult, ModelRun

FIGURES = ("ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "avg_gap", "avg_gap_mis", "seconds", "rmia_tpr_at_1pct_fpr")
CLASS_FIGURES = ("ua_test", "sym_kl")


def _stars(runs: list[ModelRun], config: BenchmarkConfig) -> dict[int, list[ModelRun]]:
    """Retrained runs per replicate seed (all seeds share them for class forgetting)."""
    retrain = [r for r in runs if r.row == "retrain"]
    if config.kind == "class":
        return {s: retrain for s in config.seeds}
    return {s: [r for r in retrain if r.seed == s] for s in config.seeds}


def per_run_gaps(runs: list[ModelRun], config: BenchmarkConfig) -> list[dict[str, Any]]:
    """One record per evaluated model: its figures plus ``avg_gap`` and ``avg_gap_mis``."""
    stars = _stars(runs, config)
    main_key = "rmia_auc" if config.rmia_references > 0 else "mia"
    records = []
    for r in runs:
        group = stars[r.seed]
        if r.row == "retrain" and len(group) > 1:
            group = [g for g in group if g is not r]
        star = ev.star_values([g.evaluation for g in group])
        rec: dict[str, Any] = {"seed": r.seed, **r.evaluation.values}
        if r.model_seed is not None and r.model_seed != r.seed:
            rec["model_seed"] = r.model_seed
        rec["avg_gap"] = ev.gap(r.evaluation.values, star, main_key)
        rec["avg_gap_mis"] = ev.gap(r.evaluation.values, star, "mia")
        rec["seconds"] = r.seconds
        if r.from_cache is not None:
            rec["from_cache"] = r.from_cache
        records.append(rec)
    return records


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals or len(vals) != len(values):
        return None, None
    return float(np.mean(vals)), float(np.std(vals))


def build_results(result: ExperimentResult, config: BenchmarkConfig) -> dict[str, Any]:
    """The ``results.json`` dictionary of a finished experiment."""
    records = per_run_gaps(result.runs, config)
    figures = FIGURES + (CLASS_FIGURES if config.kind == "class" else ())
    methods: dict[str, Any] = {}
    for row in config.rows():
        idx = [i for i, r in enumerate(result.runs) if r.row == row]
        per_seed = [records[i] for i in idx]
        entry: dict[str, Any] = {}
        std: dict[str, float | None] = {}
        for f in figures:
            entry[f], std[f] = _mean_std([p.get(f) for p in per_seed])
        entry["hparams"] = result.runs[idx[0]].hparams if idx else {}
        entry["per_seed"] = per_seed
        entry["std"] = std
        methods[row] = entry
    cfg = config.to_dict()
    return {
        "config": cfg,
        "methods": methods,
        "tuning": result.tuning,
        "tuned_on": result.tuned_on,
        "run": {"seconds": result.seconds, "models_trained": len(result.trained), "models_loaded": len(result.loaded)},
    }
