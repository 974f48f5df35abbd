"""``results.json``: per-run Avg. Gap against the retrained models, then mean and std per method.

Schema (a stable contract, described in docs/protocol.md, section 8; figures in percent, ``sym_kl`` in nats)::

    {"config": {... "forget", "no_remain", "avg_gap_mia", ...},
     "methods": {NAME: {"ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "avg_gap",
                        "avg_gap_mis", "seconds", "hparams", "per_seed": [...],
                        "std": {...}, "rmia_tpr_at_1pct_fpr",
                        [class forgetting: "ua_test", "sym_kl",
                         "mia_nn_acc", "mia_nn_auc_gap", "mia_nn_acc_gap",
                         "mia_nn_retrain_{acc, acc_train, acc_star, acc_train_star, acc_gap, acc_train_gap}",
                         "mia_nn_retrain_logit_{...the same six}",
                         "mia_nn_retrain_acc_gap_loo", "mia_nn_retrain_logit_acc_gap_loo"]}},
     "tuning": {METHOD: [{"hparams", "avg_gap", ..., ["diagnostics"]}, ...]},
     "sets": {"forget", "remain", "test", "rmia_non_members", ["forget_test"]},
     "recipes": {"original": {"augmentation", "setting", "batch_size", "epochs", "lr", "width", "fastclip", ...},
                 "unlearning": {"augmentation", "setting", "adversarial_set", "batch_size", "epochs", ...}},
     "adversarial_transfer": {METHOD: {"prob", "top1", "prob_perturbed", "top1_perturbed", "mean_delta",
                                       "n_adv", "runs", "std": {...}}},
     "original_within_noise": {"within", "terms": {TERM: {"difference", "noise"}}},
     "provenance": {"command", "commit", "dirty", "torch", "lightning", "device", ...},
     "run": {"seconds", "models_trained", "models_loaded"}}

A method's per-seed records carry its public ``diagnostics()`` where it has any (AMUN: the
attack's statistics, e.g. ``pgd50_passes`` and ``mean_delta``, and the transfer of its adversarial
set to the replicate's retrained models, ``transfer_to_retrain``); ``adversarial_transfer``
summarises the latter per method (mean and std over seeds). ``recipes`` holds both data recipes,
resolved: the originals' (original, retrained and reference models) and the unlearning phase's.

Avg. Gap is computed per run and then averaged (docs/protocol.md, section 7). Starred values
are the mean over the retrained models of the same forget set; a retrained model is scored
against the *other* retrained models (leave-one-out), or against itself (gap 0) when it is the
only one. ``std`` is the population standard deviation over runs (0 for one seed).

MIA-NN (class forgetting; :mod:`lightning_unlearn.pipeline.evaluation`): ``mia_nn_auc`` and
``mia_nn_acc`` are the membership protocol, with their gaps ``mia_nn_auc_gap`` /
``mia_nn_acc_gap`` to the starred values, per run as for Avg. Gap. ``mia_nn_retrain_*`` are the
retrain protocol with the neighbour-class probability as feature (the default) and
``mia_nn_retrain_logit_*`` with the logits: ``acc`` on the forget-class test samples T_f,
``acc_train`` on the training samples D_f, ``*_star`` the retrained models' own value and
``*_gap`` the distance to it, both computed by
:func:`~lightning_unlearn.metrics.functional.mia_nn_retrain` (leave-one-model-out for a
retrained row). That reference for T_f is the retrained models' accuracy under the
discriminator fitted on their own training outputs; an audited model never took part in the
fit, so ``mia_nn_retrain_acc_gap_loo`` (and ``..._logit_acc_gap_loo``) also gives the distance
to the ``retrain`` row's mean, whose values are each measured by a discriminator fitted on
the *other* retrained models (out of model, like any audited model). The two references
differ by how much the discriminator is specific to the models it was fitted on; the
``retrain`` row's gaps show that noise floor. (For D_f the function's reference is already out
of model.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lightning_unlearn.environment import run_provenance
from lightning_unlearn.pipeline import evaluation as ev
from lightning_unlearn.pipeline.config import BenchmarkConfig
from lightning_unlearn.pipeline.stages import ExperimentResult, ModelRun

FIGURES = ("ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "avg_gap", "avg_gap_mis", "seconds", "rmia_tpr_at_1pct_fpr")
#: class forgetting: figure -> the name of its per-run gap to the starred value (the retrained rows' mean,
#: leave-one-out for a retrained row), as for Avg. Gap
STAR_GAPS = {
    "mia_nn_auc": "mia_nn_auc_gap",
    "mia_nn_acc": "mia_nn_acc_gap",
    "mia_nn_retrain_acc": "mia_nn_retrain_acc_gap_loo",
    "mia_nn_retrain_logit_acc": "mia_nn_retrain_logit_acc_gap_loo",
}
CLASS_FIGURES = ("ua_test", "sym_kl", "mia_nn_acc") + ev.MIA_NN_RETRAIN_KEYS + tuple(STAR_GAPS.values())


def _stars(runs: list[ModelRun], config: BenchmarkConfig) -> dict[int, list[ModelRun]]:
    """Retrained runs per replicate seed (all seeds share them for class forgetting)."""
    retrain = [r for r in runs if r.row == "retrain"]
    if config.kind == "class":
        return {s: retrain for s in config.unlearning.seeds}
    return {s: [r for r in retrain if r.seed == s] for s in config.unlearning.seeds}


def per_run_gaps(runs: list[ModelRun], config: BenchmarkConfig) -> list[dict[str, Any]]:
    """One record per evaluated model: its figures plus ``avg_gap`` and ``avg_gap_mis``."""
    stars = _stars(runs, config)
    main_key = "rmia_auc" if config.audit.rmia_references > 0 else "mia"
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
        if config.kind == "class":
            for k, name in STAR_GAPS.items():
                mine, ref = r.evaluation.values.get(k), star.get(k)
                rec[name] = None if mine is None or ref is None else abs(mine - ref)
        rec["seconds"] = r.seconds
        if r.from_cache is not None:
            rec["from_cache"] = r.from_cache
        if r.meta.get("diagnostics"):
            rec["diagnostics"] = r.meta["diagnostics"]
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
        "sets": dict(result.sets),
        "recipes": result.recipes,
        "adversarial_transfer": adversarial_transfer_summary(methods),
        "original_within_noise": original_within_noise(methods, result.sets, cfg["avg_gap_mia"]),
        "provenance": run_provenance(accelerator=config.execution.accelerator),
        "run": {"seconds": result.seconds, "models_trained": len(result.trained), "models_loaded": len(result.loaded)},
    }


def adversarial_transfer_summary(methods: dict[str, Any]) -> dict[str, Any]:
    """Per method with an adversarial set: mean and std over its runs of the transfer of D_A to retrain.

    From each run's ``diagnostics``: ``prob`` / ``top1`` (``transfer_to_retrain``, percent),
    ``prob_perturbed`` / ``top1_perturbed`` (over the perturbed rows only), ``mean_delta`` (the
    attack's mean ``||x_adv - x||_2``) and ``n_adv`` (|D_A|); ``runs`` counts the runs.
    """
    out: dict[str, Any] = {}
    for name, entry in methods.items():
        diags = [p["diagnostics"] for p in entry.get("per_seed", []) if p.get("diagnostics", {}).get("transfer_to_retrain")]
        if not diags:
            continue
        values = {
            "prob": [d["transfer_to_retrain"]["prob"] for d in diags],
            "top1": [d["transfer_to_retrain"]["top1"] for d in diags],
            "prob_perturbed": [d.get("transfer_to_retrain_perturbed", {}).get("prob") for d in diags],
            "top1_perturbed": [d.get("transfer_to_retrain_perturbed", {}).get("top1") for d in diags],
            "mean_delta": [d.get("mean_delta") for d in diags],
            "n_adv": [d.get("n_adv") for d in diags],
        }
        rec: dict[str, Any] = {"runs": len(diags)}
        std: dict[str, float | None] = {}
        for k, v in values.items():
            rec[k], std[k] = _mean_std(v)
        rec["std"] = std
        out[name] = rec
    return out


# ---------------------------------------------------------------------------- sampling noise
def proportion_se(percent: float, n: int) -> float:
    """Standard error (percent) of a proportion measured on ``n`` samples.

    Agresti-Coull: ``p~ = (k + 2) / (n + 4)``, ``se = sqrt(p~ (1 - p~) / (n + 4))``, so that a
    measured 100% (or 0%) still carries the error of a finite set.
    """
    p = (percent / 100.0 * n + 2.0) / (n + 4.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / (n + 4.0))


def auc_se(auc_percent: float, n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil (1982) standard error (percent) of an AUC from ``n_pos`` positives and ``n_neg`` negatives:
    ``se^2 = (A(1-A) + (n_pos - 1)(Q1 - A^2) + (n_neg - 1)(Q2 - A^2)) / (n_pos n_neg)``,
    ``Q1 = A / (2 - A)``, ``Q2 = 2A^2 / (1 + A)``."""
    a = min(max(auc_percent / 100.0, 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / max(1, n_pos * n_neg)
    return 100.0 * math.sqrt(max(var, 0.0))


def original_within_noise(methods: dict[str, Any], sets: dict[str, int], mia_key: str) -> dict[str, Any]:
    """Is the untouched original model already as close to retrain as two retrained models would be?

    For each term of Avg. Gap (UA, RA, TA and ``mia_key``), the difference between the
    original's and the retrained model's figure is compared with the noise of a difference of
    two independent measurements on the same sets: ``2 sqrt(2) se``, with ``se`` of the
    retrained figure (:func:`proportion_se` for accuracies and the SVC efficacy, on the forget,
    remain and test set sizes; :func:`auc_se` for the RMIA AUC). ``within`` is ``True`` when
    every term lies inside its noise: the run then cannot tell unlearning methods apart (a smoke
    test, e.g. digits), ``None`` when a figure is missing.
    """
    original, retrain = methods.get("original", {}), methods.get("retrain", {})
    sizes = {"ua": sets.get("forget", 0), "ra": sets.get("remain", 0), "ta": sets.get("test", 0), "mia": sets.get("forget", 0)}
    terms: dict[str, dict[str, float]] = {}
    for k in ("ua", "ra", "ta", mia_key):
        o, r = original.get(k), retrain.get(k)
        if o is None or r is None or (k != "rmia_auc" and not sizes.get(k)):
            return {"within": None, "terms": terms}
        se = auc_se(r, sets.get("forget", 0), sets.get("rmia_non_members", 0)) if k == "rmia_auc" else proportion_se(r, sizes[k])
        terms[k] = {"difference": float(o - r), "noise": 2.0 * math.sqrt(2.0) * se}
    return {"within": all(abs(t["difference"]) <= t["noise"] for t in terms.values()), "terms": terms}
