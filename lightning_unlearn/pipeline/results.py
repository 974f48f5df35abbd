"""``results.json``, built from the run's storage alone: cells, summaries over the declared unit, paired differences, verdicts.

:func:`build_results` reads the storage of a run (:class:`~lightning_unlearn.pipeline.store.RunStore`):
its declaration (settings, design, tuning plans), its tuning studies and its measured units, and
nothing else, so a report can be rebuilt from the storage at any time.

Every method runs once per cell (original o, forget set f); a cell holds its figures (accuracies,
attacks) and its gaps to the mean of forget set f's R retrained models (``avg_gap``, ...). A row's
figure is the mean over its O x F cells; its ``std`` and ``summary`` (mean, sample SD, 95% CI,
``n``, ``unit``) are over the declared unit (``stats_unit``, default the forget-set means; see
:mod:`lightning_unlearn.stats`). The ``retrain`` row holds the retrained models themselves, each
scored against the other R - 1 of its forget set (leave-one-out): its cells have shape (F, R) and
its ``avg_gap`` summary is the **noise floor** (:func:`lightning_unlearn.stats.noise_floor`).

Schema (a stable contract, docs/protocol.md, section 8; figures in percent, ``sym_kl`` in nats)::

    {"config": {... every setting, resolved ...},
     "design": {"originals", "forget_sets", "tuning_sets", "tuning_originals", "shape", "unit"},
     "declaration": {OBJECTIVE: {METHOD: the tuning plan's declaration}},
     "objectives": {OBJECTIVE: {
         "formula", "methods": {ROW: ENTRY}, "tuning": {METHOD: {"chosen", "n_trials", "n_complete",
         "n_diverged", "best_value", "trials": [...]}}, "noise_floor": SUMMARY,
         "paired": [PAIRED DIFFERENCE], "best", "verdicts": {METHOD: verdict}, "statement"}},
     "methods": the first objective's rows (ENTRY), "tuning": its trials per method (``[{"hparams", "avg_gap", ...}]``),
     "noise_floor", "tuned_on", "sets", "recipes", "adversarial_transfer", "original_within_noise",
     "provenance", "run" (this process), "cost" (the stored units' seconds: tuning and evaluation, whoever ran them)}

    ENTRY = {FIGURE: mean over the cells, "std": {FIGURE: SD over the unit}, "summary": {FIGURE: SUMMARY},
             "cells": {FIGURE: [[...]] (O, F); the retrain row (F, R)}, "per_seed": [one record per cell],
             "hparams", "status": "ok" | "diverged" | "not tuned" | "incomplete", "diverged": [{"original", "forget_set", "reason"}],
             "runs": number of cells measured}

A row whose evaluation diverged in any cell has ``status`` ``"diverged"`` and no figures (the
report marks it instead of printing numbers). Under every declared objective the unlearning
methods are compared by the objective's value per cell: each method's paired difference to the
best one (lowest mean), with its interval over the unit, and a verdict, ``"worse"`` only where
the interval excludes 0 (:func:`lightning_unlearn.stats.paired_differences`).

MIA-NN (class forgetting; :mod:`lightning_unlearn.pipeline.evaluation`): ``mia_nn_auc`` and
``mia_nn_acc`` are the membership protocol, with their gaps ``mia_nn_auc_gap`` /
``mia_nn_acc_gap`` to the starred values; ``mia_nn_retrain_*`` the retrain protocol with the
neighbour-class probability as feature and ``mia_nn_retrain_logit_*`` with the logits: ``acc`` on
T_f, ``acc_train`` on D_f, ``*_star`` the retrained models' own value and ``*_gap`` the distance to
it; ``mia_nn_retrain_acc_gap_loo`` (and ``..._logit_acc_gap_loo``) the distance to the ``retrain``
row's mean, whose values are each measured by a discriminator fitted on the *other* retrained
models (out of model, like any audited model; the objective ``avg_gap+mia_nn`` reads it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from lightning_unlearn.environment import run_provenance
from lightning_unlearn.pipeline import evaluation as ev
from lightning_unlearn.pipeline import protocol
from lightning_unlearn.pipeline.config import BenchmarkConfig
from lightning_unlearn.pipeline.design import Design
from lightning_unlearn.pipeline.store import Outcome, RunStore, unit_seconds
from lightning_unlearn.stats import NOISE_FLOOR, noise_floor, paired_differences, summarize_cells
from lightning_unlearn.tuning import OBJECTIVES, TuningPlan, tuning_result

FIGURES = ("ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "avg_gap", "avg_gap_mis", "seconds", "rmia_tpr_at_1pct_fpr")
STAR_GAPS = ev.STAR_GAPS
CLASS_FIGURES = ("ua_test", "sym_kl", "mia_nn_acc") + ev.MIA_NN_RETRAIN_KEYS + tuple(STAR_GAPS.values())
#: the key of a row's per-cell objective value (under each objective)
OBJECTIVE = "objective"
#: the figures of tuning trials kept in ``results.json`` (the storage keeps all)
TRIAL_FIGURES = ("avg_gap", "ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_retrain_acc_gap_loo", "sym_kl")


# ---------------------------------------------------------------------------- summaries of cells
def _grid(records: list[list[dict | None]], figure: str) -> np.ndarray | None:
    """The (rows, columns) array of ``figure`` over ``records``, or ``None`` when any cell lacks it."""
    values = [[None if r is None else r.get(figure) for r in row] for row in records]
    if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for row in values for v in row):
        return None
    return np.asarray(values, dtype=np.float64)


def _sd(summary) -> float | None:
    return None if math.isnan(summary.sd) else summary.sd


def summarise_row(records: list[list[dict | None]], figures: tuple[str, ...], unit: str, *, retrain: bool = False) -> dict[str, Any]:
    """Mean, SD over the unit, summary and cells of every figure of a row.

    Args:
        records: the cell records, shape (O, F) (the ``retrain`` row: (F, R)).
        figures: the figures to summarise.
        unit: the declared unit (:data:`lightning_unlearn.stats.CELL_UNITS`).
        retrain: the records are retrained models (F, R): summarised as the noise floor is
            (:func:`~lightning_unlearn.stats.noise_floor`; the unit ``original`` becomes ``forget_set``).
    """
    entry: dict[str, Any] = {"std": {}, "summary": {}, "cells": {}}
    for f in figures:
        grid = _grid(records, f)
        if grid is None:
            entry[f] = entry["std"][f] = None
            continue
        if retrain:
            s = noise_floor(grid, unit=unit if unit != "original" else "forget_set")  # type: ignore[arg-type]
        else:
            s = summarize_cells(grid, unit=unit)  # type: ignore[arg-type]
        entry[f] = float(grid.mean())
        entry["std"][f] = _sd(s)
        entry["summary"][f] = s.to_dict()
        entry["cells"][f] = grid.tolist()
    return entry


def _mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample SD (``ddof=1``; ``None`` for one value) of values that are all present, else ``(None, None)``."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals or len(vals) != len(values):
        return None, None
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


# ---------------------------------------------------------------------------- reading the storage
class _Run:
    """What :func:`build_results` reads from the storage: the declaration, the config, the design, the outcomes."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.declaration = store.declaration()
        self.config: BenchmarkConfig = protocol.config_of(self.declaration)
        self.design = Design.from_dict(self.declaration["design"])
        self.outcomes: dict[str, Outcome] = store.outcomes()
        self.plans: dict[tuple[str, str], TuningPlan] = protocol.tuning_plans(self.config, self.design)
        self.figures = FIGURES + (CLASS_FIGURES if self.config.kind == "class" else ())

    def outcome(self, unit: dict) -> Outcome | None:
        return self.outcomes.get(protocol.key(unit))

    def tuning(self, objective: str, method: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``(chosen hyperparameters, the tuning record)``; chosen ``None`` when every trial diverged or tuning has not run."""
        plan = self.plans.get((objective, method))
        if plan is None:
            return protocol.fixed_hparams(self.config, method), None
        if plan.sampler_kind == "none":
            return dict(plan.space.constants), None
        try:
            study = optuna.load_study(study_name=self.store.tuning_study_name(plan.study_name), storage=self.store.storage)
        except KeyError:
            return None, {"n_trials": 0, "status": "not run"}
        result = tuning_result(study, plan)
        trials = [
            {"slot": h["slot"], "state": h["state"], "hparams": {k: h["hparams"][k] for k in plan.space.axes if k in h["hparams"]}, "value": h["value"],
             "sets": [{"value": s["value"], **{k: s["metrics"].get(k) for k in TRIAL_FIGURES if k in s["metrics"]}} for s in h["sets"]],
             "duplicate_of": h["duplicate_of"], "diverged": (h["diverged"] or {}).get("reason")}
            for h in result.history if h["state"] in ("complete", "diverged")
        ]
        record = {"chosen": result.chosen, "best_value": result.best_value, "best_slot": result.best_slot, "n_trials": result.n_trials,
                  "n_complete": result.n_complete, "n_diverged": result.n_diverged, "sampler": plan.sampler_kind, "trials": trials}
        return result.chosen, record


def _cell_record(outcome: Outcome, **where: Any) -> dict[str, Any]:
    rec = {**where, **outcome.figures, **outcome.cells}
    rec["seconds"] = outcome.record.get("unlearn_seconds", outcome.record.get("train_seconds"))
    if outcome.record.get("diagnostics"):
        rec["diagnostics"] = outcome.record["diagnostics"]
    if "from_cache" in outcome.record:
        rec["from_cache"] = outcome.record["from_cache"]
    return rec


def _row(run: _Run, outcomes: list[list[Outcome | None]], unit: str, objective: str | None) -> dict[str, Any]:
    """A method's (or the original's) row from its (O, F) outcomes."""
    design = run.design
    records: list[list[dict | None]] = []
    per_seed, diverged = [], []
    for o, row in zip(design.originals, outcomes):
        recs = []
        for fs, out in zip(design.forget_sets, row):
            if out is None or out.diverged:
                recs.append(None)
                if out is not None:
                    diverged.append({"original": o, "forget_set": fs.name, "reason": out.reason})
                continue
            rec = _cell_record(out, seed=o, original=o, forget_set=fs.name)
            if objective is not None:
                rec[OBJECTIVE] = OBJECTIVES[objective].value(rec)
            recs.append(rec)
            per_seed.append(rec)
        records.append(recs)
    missing = sum(r is None for row in records for r in row) - len(diverged)
    status = "diverged" if diverged else ("incomplete" if missing else "ok")
    figures = run.figures + ((OBJECTIVE,) if objective is not None else ())
    if status == "ok":
        entry = summarise_row(records, figures, unit)
    else:
        entry = {**{f: None for f in figures}, "std": {f: None for f in figures}, "summary": {}, "cells": {}}
    first = next((out for row in outcomes for out in row if out is not None), None)
    entry["hparams"] = (first.record.get("hparams") if first is not None else None) or {}
    entry.update(per_seed=per_seed, status=status, diverged=diverged, runs=len(per_seed))
    return entry


def _retrain_row(run: _Run, unit: str, objective: str | None) -> dict[str, Any]:
    """The ``retrain`` row: every retrained model against the others of its forget set, cells (F, R)."""
    records: list[list[dict | None]] = []
    per_seed = []
    for fs in run.design.forget_sets:
        out = run.outcome(protocol.retrain_unit(fs))
        if out is None:
            records.append([None] * len(fs.retrain_seeds))
            continue
        row = []
        for m in out.record["models"]:
            rec = {"seed": m["model_seed"], "model_seed": m["model_seed"], "forget_set": fs.name, **m["figures"], **m["cells"], "seconds": m["seconds"],
                   "from_cache": m.get("from_cache")}
            if objective is not None:
                rec[OBJECTIVE] = OBJECTIVES[objective].value(rec)
            row.append(rec)
            per_seed.append(rec)
        records.append(row)
    figures = run.figures + ((OBJECTIVE,) if objective is not None else ())
    complete = all(r is not None for row in records for r in row)
    entry = summarise_row(records, figures, unit, retrain=True) if complete else {f: None for f in figures} | {"std": {}, "summary": {}, "cells": {}}
    c = run.config.models
    entry["hparams"] = {"model": c.model, "epochs": run.config.resolved_epochs, "lr": run.config.resolved_lr, "batch_size": c.batch_size,
                        "schedule": "onecycle", "fastclip": c.fastclip}
    entry.update(per_seed=per_seed, status="ok" if complete else "incomplete", diverged=[], runs=len(per_seed))
    return entry


def verdict_statement(paired: list[dict[str, Any]], best: str | None, quantity: str, unit: str, n: int | None) -> str:
    """One sentence: which methods are worse than the best (interval excludes 0), or that none is."""
    if best is None:
        return f"No unlearning method could be compared under {quantity}."
    if not paired:
        return f"{best} is the only unlearning method compared under {quantity}."
    worse = [d["method"] for d in paired if d["verdict"] == "worse"]
    same = [d["method"] for d in paired if d["verdict"] != "worse"]
    words = {"forget_set": "forget set", "original": "original", "cell": "cell", "two_way_bootstrap": "cells, two-way bootstrap"}.get(unit, unit)
    size = f"n = {n} {words}{'s' if n != 1 and unit in ('forget_set', 'original', 'cell') else ''}"
    if not worse:
        alone = " One unit has no interval: measure several forget sets (or declare another --stats-unit)." if n == 1 else ""
        return (f"None of the paired differences excludes 0: no unlearning method is distinguishable from the best, {best}, under {quantity} "
                f"(95% CIs, {size}).{alone}")
    are = "is" if len(worse) == 1 else "are"
    tail = f"; {', '.join(same)} {'is' if len(same) == 1 else 'are'} not distinguishable from it" if same else ""
    return f"{best} has the lowest {quantity}; {', '.join(worse)} {are} worse (the 95% CI of the paired difference excludes 0, {size}){tail}."


def _objective_section(run: _Run, objective: str, unit: str) -> dict[str, Any]:
    design, c = run.design, run.config
    methods: dict[str, Any] = {}
    orig = [[run.outcome(protocol.original_unit(o, fs)) for fs in design.forget_sets] for o in design.originals]
    methods["original"] = _row(run, orig, unit, objective)
    methods["retrain"] = _retrain_row(run, unit, objective)
    tuning: dict[str, Any] = {}
    for m in c.unlearning_methods():
        chosen, record = run.tuning(objective, m)
        if record is not None:
            tuning[m] = record
        if chosen is None:
            entry = {**{f: None for f in run.figures + (OBJECTIVE,)}, "std": {}, "summary": {}, "cells": {}, "per_seed": [], "hparams": {}, "diverged": [],
                     "runs": 0, "status": "not tuned" if record and record.get("n_trials") else "incomplete"}
            methods[m] = entry
            continue
        outs = [[run.outcome(protocol.method_unit(m, chosen, o, fs)) for fs in design.forget_sets] for o in design.originals]
        methods[m] = _row(run, outs, unit, objective)
    compared = {m: np.asarray(methods[m]["cells"][OBJECTIVE]) for m in c.unlearning_methods() if methods[m]["status"] == "ok"}
    paired = [d.to_dict() for d in paired_differences(compared, unit=unit)] if len(compared) > 1 else []  # type: ignore[arg-type]
    best = paired[0]["reference"] if paired else (next(iter(compared)) if compared else None)
    retrain = methods["retrain"]
    floor = retrain["summary"].get(OBJECTIVE)
    n = paired[0]["n"] if paired else None
    return {
        "formula": OBJECTIVES[objective].formula,
        "methods": methods,
        "tuning": tuning,
        "noise_floor": None if floor is None else {**floor, "method": NOISE_FLOOR},
        "paired": paired,
        "best": best,
        "verdicts": {d["method"]: d["verdict"] for d in paired},
        "statement": verdict_statement(paired, best, objective, unit, n),
    }


def tuned_on(config: BenchmarkConfig, design: Design) -> str:
    """Where the hyperparameters were tuned, in words."""
    if config.tuning.max_trials == 0:
        return "not tuned (max_trials 0: each method's defaults and hparams)"
    sets = ", ".join(s.name for s in design.tuning_sets)
    originals = ", ".join(str(design.tuning_original(k)) for k in range(len(design.tuning_sets)))
    what = "held-out classes" if config.kind == "class" else "tuning forget sets"
    return f"{len(design.tuning_sets)} {what} ({sets}; originals {originals}), never reported"


def build_results(store: RunStore, *, run: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``results.json`` dictionary of the run held by ``store`` (see the module docstring).

    Args:
        store: the run's storage (what it holds is all that is read).
        run: this process's run statistics (seconds, models trained and loaded, units run and reused).
        provenance: the command, commit and versions (default: this process's).
    """
    r = _Run(store)
    c, design = r.config, r.design
    unit = c.audit.stats_unit
    objectives = {name: _objective_section(r, name, unit) for name in c.tuning.objectives}
    first = objectives[c.tuning.objectives[0]]
    cfg = dict(r.declaration["config"])
    first_set = r.outcome(protocol.retrain_unit(design.forget_sets[0]))
    sets = dict(first_set.record.get("sets", {})) if first_set is not None else {}
    compat_tuning = {
        m: [{"hparams": t["hparams"], "avg_gap": t["value"], "state": t["state"], "slot": t["slot"]} for t in rec["trials"]]
        for m, rec in first["tuning"].items() if "trials" in rec
    }
    return {
        "config": cfg,
        "design": {**design.to_dict(), "shape": list(design.shape), "unit": unit, "retrain_models": c.resolved_retrain_models},
        "declaration": r.declaration.get("plans", {}),
        "objectives": objectives,
        "methods": first["methods"],
        "tuning": compat_tuning,
        "noise_floor": first["noise_floor"],
        "tuned_on": tuned_on(c, design),
        "sets": sets,
        "recipes": r.declaration.get("recipes", {}),
        "adversarial_transfer": adversarial_transfer_summary(first["methods"]),
        "original_within_noise": original_within_noise(first["methods"], sets, cfg["avg_gap_mia"]),
        "provenance": dict(provenance) if provenance is not None else run_provenance(accelerator=c.execution.accelerator),
        "run": dict(run or {}),
        "cost": stored_cost(r.outcomes, [fs.name for fs in design.tuning_sets]),
    }


def stored_cost(outcomes: Mapping[str, Outcome], tuning_sets: Sequence[str]) -> dict[str, Any]:
    """Seconds the stored units took when they ran, whichever process ran them and however often the run was
    resumed: ``{"seconds", "tuning": {"n", "seconds"}, "evaluation": {"n", "seconds"}}`` (a unit on a tuning
    forget set is tuning; models trained into the cache are not units and are not counted)."""
    stage = lambda out: "tuning" if (out.record.get("unit") or {}).get("forget_set") in tuning_sets else "evaluation"  # noqa: E731
    parts = {"tuning": [], "evaluation": [], **unit_seconds(outcomes, stage)}
    return {"seconds": float(sum(map(sum, parts.values()))), **{k: {"n": len(v), "seconds": float(sum(v))} for k, v in parts.items()}}


def figure_data(store: RunStore) -> dict[str, Any]:
    """What the figures need besides ``results.json``: the RMIA scores of every row on the first cell
    (``{"roc": {row: {"scores", "labels"}}}``) and FastClip's per-layer norms (``"fastclip_norms"``)."""
    r = _Run(store)
    design = r.design
    o, fs = design.originals[0], design.forget_sets[0]
    roc: dict[str, Any] = {}
    norms: dict[str, Any] = {}
    units = [("original", protocol.original_unit(o, fs)), ("retrain", protocol.retrain_unit(fs))]
    objective = r.config.tuning.objectives[0]
    for m in r.config.unlearning_methods():
        chosen, _ = r.tuning(objective, m)
        if chosen is not None:
            units.append((m, protocol.method_unit(m, chosen, o, fs)))
    for row, unit in units:
        out = r.outcome(unit)
        if out is None or out.diverged:
            continue
        if out.record.get("roc"):
            roc[row] = out.record["roc"]
        if out.record.get("fastclip_norms"):
            norms[row] = out.record["fastclip_norms"]
    return {"roc": roc, "fastclip_norms": norms, "cell": {"original": o, "forget_set": fs.name}}


def adversarial_transfer_summary(methods: dict[str, Any]) -> dict[str, Any]:
    """Per method with an adversarial set: mean and sample SD over its runs of the transfer of D_A to retrain.

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
            rec[k], std[k] = _mean_sd(v)
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
    original's and the retrained models' mean figure is compared with the noise of a difference of
    two independent measurements on the same sets: ``2 sqrt(2) se``, with ``se`` of the
    retrained figure (:func:`proportion_se` for accuracies and the SVC efficacy, on the forget,
    remain and test set sizes; :func:`auc_se` for the RMIA AUC). ``within`` is ``True`` when
    every term lies inside its noise: the run then cannot tell unlearning methods apart (a smoke
    test), ``None`` when a figure is missing.
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


__all__ = [
    "CLASS_FIGURES", "FIGURES", "STAR_GAPS", "adversarial_transfer_summary", "auc_se", "build_results", "figure_data", "original_within_noise",
    "proportion_se", "summarise_row", "tuned_on", "verdict_statement",
]
