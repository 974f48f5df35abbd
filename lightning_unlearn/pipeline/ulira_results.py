"""``ulira.json`` and ``ulira.md``, built from the U-LiRA audit's storage: cells, intervals, paired differences, claims.

:func:`build_ulira_results` reads the audit's storage (:mod:`lightning_unlearn.pipeline.ulira_stage`)
and nothing else but the benchmark's own figures shown beside it (``side``). For every audited
objective, every row and every cell (original o, forget set f) of the benchmark's design:

* the shadows' two worlds on f: φ of shadow i's unlearned model (the method run on shadow
  original i; for the ``original`` row, the shadow original itself) and of its retrained model,
  on its forget set F_i, fitted by :func:`~lightning_unlearn.metrics.functional.ulira_fit`;
* the audited records: the benchmark's unlearned model of cell (o, f) on D_F (unlearned) and the
  R retrained models of f on D_F (retrained), scored by
  :func:`~lightning_unlearn.metrics.functional.ulira`: ``ulira_acc`` (balanced accuracy at a
  likelihood ratio of 1, percent), ``ulira_auc``, ``ulira_tpr@0.01``, and ``ulira_gap`` =
  ``|ulira_acc − 50|``.

**The retrained models' value is 50.** The attack's decision rule is fixed by the shadows before
any audited model is seen; a retrained model audited as if unlearned is drawn from the same
distribution as the retrained records it is compared with, so it is called "unlearned" exactly as
often (TPR = FPR) and the balanced accuracy is 50 in expectation, whatever the number of shadows.
The ``retrain`` row therefore holds 50 (gap 0) by construction, and a method's gap is its distance
to it.

Schema (figures in percent)::

    {"audit": "ulira", "benchmark": {"folder", "config", "design", "source"}, "shadows": {"pairs", "per_world", "seed",
     "variance", "variance_used", "attacked", "non_members"}, "splits": {FORGET SET: {...sizes, seeds, fingerprint}},
     "cost": {"seconds", "units": {KIND: {"n", "seconds", "mean_seconds"}}}, "retrain_value": 50.0,
     "objectives": {OBJECTIVE: {"methods": {ROW: ENTRY}, "paired", "best", "verdicts", "statement", "claims": {CLAIMANT: CLAIM}}},
     "provenance", "run"}

    ENTRY: as a row of results.json (:func:`~lightning_unlearn.pipeline.results.summarise_row`: the figures'
           means, "std", "summary", "cells" (O, F)), "per_seed", "status", "hparams", "shadow_seconds",
           and the benchmark's own "rmia_auc", "mia_nn_auc", ... (``side``) for the table.
    CLAIM: :class:`~lightning_unlearn.stats.GapReduction` (``reduction`` = 1 − gap / best prior's gap, bootstrap
           interval) plus "paired" (claimant − best prior, the unit's interval), "priors", "paper", "reading".
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lightning_unlearn.environment import run_provenance
from lightning_unlearn.metrics.functional import LowFPRVarianceWarning, ulira, ulira_fit
from lightning_unlearn.metrics.functional.ulira import tpr_key
from lightning_unlearn.pipeline import protocol
from lightning_unlearn.pipeline.design import Design, ForgetSet
from lightning_unlearn.pipeline.report import interval_table, paired_table, table_markdown
from lightning_unlearn.pipeline.results import OBJECTIVE, summarise_row, verdict_statement
from lightning_unlearn.pipeline.store import Outcome, RunStore, unit_seconds
from lightning_unlearn.pipeline.ulira_source import SIDE_FIGURES, config_of_results
from lightning_unlearn.pipeline.ulira_stage import DEFAULT_CLAIMS, shadow_unit, shadows_unit, target_unit, targets_unit
from lightning_unlearn.stats import gap_reduction, paired_differences, summarize_cells

#: the balanced accuracy of an attack that cannot tell the worlds apart: the retrained models' value (module docstring)
RETRAIN_VALUE = 50.0
TPR_FPR = 0.01
FIGURES = ("ulira_acc", "ulira_auc", f"ulira_{tpr_key(TPR_FPR)}", "ulira_gap")
#: the claim the paper of TRW makes on U-LiRA (CIFAR-10, its own protocol): its gap is this fraction smaller than the best prior method's
PAPER_REDUCTION = {"trw": 0.19, "trw-concat": 0.19}
COLUMNS = (
    ("ulira_acc", "U-LiRA acc"),
    ("ulira_gap", "gap to retrain"),
    ("ulira_auc", "U-LiRA AUC"),
    (f"ulira_{tpr_key(TPR_FPR)}", "TPR@1% FPR"),
    ("rmia_auc", "RMIA AUC"),
    ("mia_nn_auc", "MIA-NN AUC"),
    ("mia_nn_retrain_acc_gap_loo", "MIA-NN retrain gap (LOO)"),
    ("avg_gap", "Avg. Gap"),
)
ATTACKED = {
    "random": "D_F, the forget set of each cell (each of its examples forgotten by N/2 shadows, drawn from D_F and as many remain samples)",
    "class": "D_f, the forgotten class's training images (every shadow forgets all of them)",
}
NON_MEMBERS = {
    "random": "the same D_F examples under models retrained without them (the benchmark's R retrained models; the shadows' retrained models)",
    "class": "the same D_f images under models retrained without the class (the benchmark's R retrained models; the shadows' "
    "retrained models): the attack compares worlds per example, never the class's training images with its test images",
}


def _array(values: Any) -> np.ndarray:
    """A stored list (``None`` for NaN) as float64."""
    return np.array([[np.nan if v is None else v for v in row] for row in values] if values and isinstance(values[0], list)
                    else [np.nan if v is None else v for v in values], dtype=np.float64)


class _Audit:
    """What the results read from the audit's storage."""

    def __init__(self, store: RunStore) -> None:
        self.declaration = store.declaration()
        bench = self.declaration["benchmark"]
        self.config = config_of_results(bench["config"])
        self.design = Design.from_dict(bench["design"])
        self.outcomes: dict[str, Outcome] = store.outcomes()
        self.n, self.seed = int(self.declaration["shadows"]), int(self.declaration["seed"])

    def outcome(self, unit: dict[str, Any]) -> Outcome | None:
        return self.outcomes.get(protocol.key(unit))

    def shadow_worlds(self, fs: ForgetSet, method: str | None, hparams: dict | None) -> tuple[torch.Tensor, torch.Tensor, float] | str:
        """``(unlearned (N, P), retrained (N, P), mean unlearning seconds)`` of ``method`` on ``fs``'s shadows, dense by pool
        index (``None``: the shadow originals themselves), or ``"incomplete"`` / ``"diverged"``."""
        base = self.outcome(shadows_unit(fs, self.n, self.seed))
        if base is None:
            return "incomplete"
        rec = base.record
        pool = torch.as_tensor(rec["target_pool"], dtype=torch.long)
        size = int(pool.max()) + 1
        retrained = torch.full((self.n, size), float("nan"), dtype=torch.float64)
        retrained[:, pool] = torch.as_tensor(_array(rec["phi_retrained"]))
        unlearned = torch.full_like(retrained, float("nan"))
        if method is None:
            unlearned[:, pool] = torch.as_tensor(_array(rec["phi_original"]))
            return unlearned, retrained, 0.0
        seconds = []
        for i in range(self.n):
            out = self.outcome(shadow_unit(method, hparams or {}, fs, self.n, self.seed, i))
            if out is None or out.diverged:
                return "incomplete" if out is None else "diverged"
            unlearned[i, torch.as_tensor(out.record["index"], dtype=torch.long)] = torch.as_tensor(_array(out.record["phi"]))
            seconds.append(out.record.get("unlearn_seconds", math.nan))
        return unlearned, retrained, float(np.mean(seconds))


def _cell(worlds: tuple, index: torch.Tensor, phi_unlearned: np.ndarray, phi_retrained: list[np.ndarray], variance: str) -> dict[str, float]:
    """The U-LiRA figures of one cell: one unlearned model's records against the R retrained models' on the same examples."""
    unl, ret = worlds[0], worlds[1]
    phi = torch.as_tensor(np.concatenate([phi_unlearned, *phi_retrained]))
    idx = index.repeat(1 + len(phi_retrained))
    world = torch.cat([torch.ones(len(index), dtype=torch.long), torch.zeros(len(index) * len(phi_retrained), dtype=torch.long)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowFPRVarianceWarning)  # a handful of records per cell: the TPR at 1% FPR is noisy, as its interval says
        out = ulira(unl, ret, phi, idx, world, variance=variance, tpr_fprs=(TPR_FPR,))  # type: ignore[arg-type]
    acc = out["balanced_accuracy"]
    return {"ulira_acc": acc, "ulira_auc": out["auc"], f"ulira_{tpr_key(TPR_FPR)}": out[tpr_key(TPR_FPR)], "ulira_gap": abs(acc - RETRAIN_VALUE)}


def _row(audit: _Audit, method: str | None, hparams: dict | None, unit: str) -> tuple[dict[str, Any], str | None]:
    """A row's entry over the (O, F) cells, and the variance model its fits used (``method=None``: the untouched originals)."""
    design, variance = audit.design, audit.declaration["variance"]
    grid: list[list[dict | None]] = [[None] * len(design.forget_sets) for _ in design.originals]
    per_seed: list[dict] = []
    diverged: list[dict] = []
    seconds: list[float] = []
    missing, used = False, None
    for f, fs in enumerate(design.forget_sets):
        worlds = audit.shadow_worlds(fs, method, hparams)
        targets = audit.outcome(targets_unit(fs))
        if worlds == "diverged":
            diverged.append({"forget_set": fs.name, "where": "shadows"})
            continue
        if isinstance(worlds, str) or targets is None:
            missing = True
            continue
        used = ulira_fit(worlds[0], worlds[1], variance=variance).variance  # type: ignore[arg-type]
        seconds.append(worlds[2])
        index = torch.as_tensor(targets.record["index"], dtype=torch.long)
        retrained = [_array(p) for p in targets.record["retrained"]]
        for o_pos, o in enumerate(design.originals):
            if method is None:
                phi = _array(targets.record["originals"][o_pos])
            else:
                out = audit.outcome(target_unit(method, hparams or {}, o, fs))
                if out is None:
                    missing = True
                    continue
                if out.diverged:
                    diverged.append({"original": o, "forget_set": fs.name, "where": "target", "reason": out.reason})
                    continue
                phi = _array(out.record["phi"])
            rec = {"seed": o, "original": o, "forget_set": fs.name, **_cell(worlds, index, phi, retrained, variance)}
            rec[OBJECTIVE] = rec["ulira_gap"]
            grid[o_pos][f] = rec
            per_seed.append(rec)
    status = "diverged" if diverged else ("incomplete" if missing else "ok")
    figures = FIGURES + (OBJECTIVE,)
    if status == "ok":
        entry = summarise_row(grid, figures, unit)
    else:
        entry = {**{k: None for k in figures}, "std": {k: None for k in figures}, "summary": {}, "cells": {}}
    entry.update(per_seed=per_seed, status=status, diverged=diverged, runs=len(per_seed), hparams=hparams or {},
                 shadow_seconds=float(np.mean(seconds)) if seconds and method is not None else None)
    return entry, used


def _retrain_entry() -> dict[str, Any]:
    """The ``retrain`` row: 50 and a gap of 0 by construction (module docstring), no cells."""
    values = {"ulira_acc": RETRAIN_VALUE, "ulira_gap": 0.0, OBJECTIVE: 0.0}
    return {**{k: None for k in FIGURES}, **values, "std": {}, "summary": {}, "cells": {}, "per_seed": [], "status": "ok", "diverged": [], "runs": 0,
            "hparams": {}, "by_construction": True}


def _reading(claim: dict[str, Any], paper: float | None) -> str:
    """In words: the paired difference's verdict against the best prior method, then the paper's figure against the ratio's interval."""
    p = claim["paired"]
    if p.get("low") is None:
        words = "one unit: no interval for the paired difference"
    elif p["high"] < 0:
        words = f"closer to retraining than the best prior method, {claim['best_prior']} (the paired interval lies below 0)"
    elif p["low"] > 0:
        words = f"farther from retraining than the best prior method, {claim['best_prior']} (the paired interval lies above 0)"
    else:
        words = f"not distinguishable from the best prior method, {claim['best_prior']} (the paired interval includes 0)"
    if paper is None:
        return words
    if claim["reduction"] is None or claim["low"] is None:
        return f"{words}; the paper's {paper:.0%} cannot be checked (no interval)"
    if claim["low"] <= paper <= claim["high"]:
        return f"{words}; the paper's {paper:.0%} lies inside the reduction's interval"
    return f"{words}; the paper's {paper:.0%} lies {'above' if paper > claim['high'] else 'below'} the reduction's interval"


def claims(methods: dict[str, Any], kind: str, unit: str, claimants: tuple[str, ...] | None = None, family: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Per claimant row: its gap reduction against the best prior method (:func:`~lightning_unlearn.stats.gap_reduction`)
    and the paired difference of the two gaps; priors are the unlearning rows outside ``family``."""
    default = DEFAULT_CLAIMS.get(kind, {"claimants": (), "family": ()})
    claimants = default["claimants"] if claimants is None else claimants
    family = tuple(set(default["family"]) | set(claimants)) if family is None else tuple(family)
    ok = {m: np.asarray(e["cells"]["ulira_gap"]) for m, e in methods.items() if m not in ("original", "retrain") and e["status"] == "ok"}
    priors = {m: c for m, c in ok.items() if m not in family}
    out: dict[str, Any] = {}
    for c in claimants:
        if c not in ok or not priors:
            continue
        r = gap_reduction((c, ok[c]), priors, unit=unit)  # type: ignore[arg-type]
        rec = r.to_dict()
        rec["paired"] = summarize_cells(ok[c] - priors[r.best_prior], unit=unit, method=c).to_dict()  # type: ignore[arg-type]
        rec["priors"] = sorted(priors)
        rec["paper"] = PAPER_REDUCTION.get(c)
        rec["reading"] = _reading(rec, rec["paper"])
        out[c] = rec
    return out


def _objective(audit: _Audit, objective: str, side: Mapping[str, Any], claim_rows: tuple | None, family: tuple | None) -> tuple[dict, set]:
    unit = audit.config.audit.stats_unit
    rows = audit.declaration["rows"][objective]
    methods: dict[str, Any] = {}
    used: set[str] = set()
    methods["original"], v = _row(audit, None, None, unit)
    used |= {v} if v else set()
    methods["retrain"] = _retrain_entry()
    for m, hp in rows.items():
        if hp is None:
            methods[m] = {**{k: None for k in FIGURES + (OBJECTIVE,)}, "std": {}, "summary": {}, "cells": {}, "per_seed": [], "status": "not tuned",
                          "diverged": [], "runs": 0, "hparams": {}}
            continue
        methods[m], v = _row(audit, m, hp, unit)
        used |= {v} if v else set()
    for row, entry in methods.items():  # the benchmark's own figures, for the table
        for k, value in (side.get(row) or {}).items():
            if k == "std":
                entry["std"].update({f: s for f, s in value.items() if f in SIDE_FIGURES})
            elif k in SIDE_FIGURES:
                entry.setdefault(k, value)
    compared = {m: np.asarray(methods[m]["cells"][OBJECTIVE]) for m in rows if methods[m]["status"] == "ok"}
    paired = [d.to_dict() for d in paired_differences(compared, unit=unit)] if len(compared) > 1 else []  # type: ignore[arg-type]
    best = paired[0]["reference"] if paired else (next(iter(compared)) if compared else None)
    n = paired[0]["n"] if paired else None
    section = {"methods": methods, "paired": paired, "best": best, "verdicts": {d["method"]: d["verdict"] for d in paired},
               "statement": verdict_statement(paired, best, "U-LiRA gap |acc − 50|", unit, n),
               "claims": claims(methods, audit.config.kind, unit, claim_rows, family)}
    return section, used


def _fingerprint(index: list[int]) -> str:
    return hashlib.sha256(np.asarray(index, dtype=np.int64).tobytes()).hexdigest()[:16]


def _splits(audit: _Audit) -> dict[str, Any]:
    """Per forget set: the target pool and the forget table (sizes, seeds, fingerprints) and |D_F|: seeded and recorded."""
    out = {}
    for fs in audit.design.forget_sets:
        base = audit.outcome(shadows_unit(fs, audit.n, audit.seed))
        targets = audit.outcome(targets_unit(fs))
        if base is None:
            continue
        forget = np.asarray(base.record["forget"], dtype=bool)
        rec = {"target_pool": len(base.record["target_pool"]), "target_pool_fingerprint": _fingerprint(base.record["target_pool"]),
               "forget_table_seed": base.record["forget_table_seed"], "shadow_forget_sizes": forget.sum(axis=1).tolist(),
               "observations_per_example": sorted(set(forget.sum(axis=0).tolist()))}
        if "target_pool_seed" in base.record:
            rec["target_pool_seed"] = base.record["target_pool_seed"]
        if targets is not None:
            rec["audited"] = len(targets.record["index"])
            rec["audited_fingerprint"] = _fingerprint(targets.record["index"])
            rec["retrain_seeds"] = targets.record["retrain_seeds"]
        out[fs.name] = rec
    return out


def stored_cost(audit: _Audit) -> dict[str, Any]:
    """Wall seconds the stored units took when they ran (whichever process ran them), in all and by kind
    (``shadows``: training or loading the shadow pairs and their φ; ``shadow`` / ``target``: one unlearning run each)."""
    by_kind = unit_seconds(audit.outcomes, lambda out: (out.record.get("unit") or {}).get("ulira"))
    return {"seconds": float(sum(sum(v) for v in by_kind.values())),
            "units": {k: {"n": len(v), "seconds": float(sum(v)), "mean_seconds": float(np.mean(v))} for k, v in sorted(by_kind.items())}}


def build_ulira_results(
    store: RunStore, *, side: Mapping[str, Mapping[str, Any]] | None = None, folder: str | None = None, source: str | None = None,
    claimants: tuple[str, ...] | None = None,
    family: tuple[str, ...] | None = None, run: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``ulira.json`` dictionary of the audit held by ``store`` (see the module docstring).

    Args:
        store: the audit's storage.
        side: ``{objective: {row: {figure, "std"}}}``: the benchmark's own figures shown beside U-LiRA (not stored by the audit).
        folder, source: the benchmark's output folder and what its settings were read from (``"storage"`` or
            ``"results.json"``), recorded.
        claimants, family: the rows whose gap reduction is computed, and the rows that are not prior methods
            (default: :data:`~lightning_unlearn.pipeline.ulira_stage.DEFAULT_CLAIMS` of the forgetting kind).
        run, provenance: this process's run statistics and provenance (default: this process's provenance).
    """
    audit = _Audit(store)
    d = audit.declaration
    objectives, used = {}, set()
    for objective in d["objectives"]:
        objectives[objective], v = _objective(audit, objective, (side or {}).get(objective, {}), claimants, family)
        used |= v
    kind = audit.config.kind
    return {
        "audit": "ulira",
        "benchmark": {"folder": folder, "config": d["benchmark"]["config"], "design": d["benchmark"]["design"], "source": source},
        "shadows": {"pairs": audit.n, "per_world": d["per_world"], "seed": audit.seed, "variance": d["variance"], "variance_used": sorted(used),
                    "attacked": ATTACKED[kind], "non_members": NON_MEMBERS[kind]},
        "splits": _splits(audit),
        "cost": stored_cost(audit),
        "retrain_value": RETRAIN_VALUE,
        "objectives": objectives,
        "provenance": dict(provenance) if provenance is not None else run_provenance(accelerator=audit.config.execution.accelerator),
        "run": dict(run or {}),
    }


# ---------------------------------------------------------------------------- the report
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def claims_table(section: dict[str, Any]) -> list[str]:
    """One row per claimant: its gap, the best prior method's, the reduction with its interval, the paired difference."""
    if not section.get("claims"):
        return []
    lines = ["| claimant | its gap | best prior (gap) | reduction 1 − gap / best prior's [95% CI] | gap − best prior's [95% CI] | reading |",
             "|---|---:|---|---|---|---|"]
    for c, r in section["claims"].items():
        p = r["paired"]
        ci = "–" if r["low"] is None else f"[{_pct(r['low'])}, {_pct(r['high'])}]"
        pci = "–" if p.get("low") is None else f"[{p['low']:.2f}, {p['high']:.2f}]"
        lines.append(f"| {c} | {r['gap_claimant']:.2f} | {r['best_prior']} ({r['gap_best_prior']:.2f}) | {_pct(r['reduction'])} {ci} | "
                     f"{p['mean']:.2f} {pci} | {r['reading']} |")
    return lines


def per_forget_set_table(section: dict[str, Any], forget_sets: list[str]) -> list[str]:
    """U-LiRA accuracy per forget set (or class): each row's mean over the originals."""
    lines = ["| row | " + " | ".join(forget_sets) + " |", "|---|" + "---:|" * len(forget_sets)]
    for row, e in section["methods"].items():
        if row == "retrain" or e["status"] != "ok":
            continue
        cells = np.asarray(e["cells"]["ulira_acc"])
        lines.append(f"| {row} | " + " | ".join(f"{v:.2f}" for v in cells.mean(axis=0)) + " |")
    return lines


def report_lines(results: dict[str, Any]) -> list[str]:
    """The body of ``ulira.md`` (also included in the benchmark scripts' reports)."""
    s = results["shadows"]
    forget_sets = [f["name"] for f in results["benchmark"]["design"]["forget_sets"]]
    lines = [
        f"Shadows: {s['pairs']} pairs per forget set (seed {s['seed']}): {s['per_world']} observations of each attacked example per world; "
        f"variance {s['variance']} ({', '.join(s['variance_used']) or '–'} used). Attacked: {s['attacked']}; non-members: {s['non_members']}.",
        "",
        f"The retrained models' value is {results['retrain_value']:.0f}% by construction (docs/metrics.md, section 8.5): a method's gap is "
        "|U-LiRA accuracy − 50|. RMIA, MIA-NN and Avg. Gap are the benchmark's own figures of the same rows.",
        "",
    ]
    for name, section in results["objectives"].items():
        view = {"methods": section["methods"]}
        measured = {"methods": {r: e for r, e in section["methods"].items() if r != "retrain"}}  # the retrain row is 50 by construction
        lines += [f"### Hyperparameters tuned under `{name}`", "", f"Verdict: {section['statement']}", "", table_markdown(view, COLUMNS), "",
                  *interval_table(measured, "U-LiRA gap"), "", *paired_table(section, "U-LiRA gap"), "",
                  "U-LiRA accuracy per forget set (mean over the originals):", "", *per_forget_set_table(section, forget_sets), ""]
        table = claims_table(section)
        if table:
            lines += ["Claims (gap = |U-LiRA accuracy − 50|; the interval is a paired bootstrap over the unit, coarse with few units):", "", *table, ""]
    return lines


def write_ulira_report(results: dict[str, Any]) -> str:
    """``ulira.md``: provenance, the splits, and :func:`report_lines`."""
    prov = results.get("provenance") or {}
    lines = [f"# U-LiRA audit of {results['benchmark'].get('folder') or 'a benchmark run'}", ""]
    if prov.get("command"):
        lines += [f"Command: `{prov['command']}` (commit {prov.get('commit')}); device: {prov.get('device')}", ""]
    run = results.get("run") or {}
    if run:
        lines += [f"This process: {run.get('seconds', 0):.0f} s; {run.get('units_run', 0)} units run, {run.get('units_reused', 0)} from the storage; "
                  f"{run.get('shadow_models_trained', 0)} shadow models trained, {run.get('shadow_models_loaded', 0)} from the cache.", ""]
    cost = results.get("cost") or {}
    if cost.get("units"):
        parts = ", ".join(f"{v['n']} {k} ({v['mean_seconds']:.1f} s each)" for k, v in cost["units"].items())
        lines += [f"The stored units took {cost['seconds']:.0f} s when they ran: {parts}.", ""]
    lines += report_lines(results)
    lines += ["Splits (seeded; fingerprints are SHA-256 of the pool indices):", "", "| forget set | target pool | its seed | forget table seed | "
              "examples per shadow | observations per example and world | audited |", "|---|---:|---:|---:|---|---|---:|"]
    for name, sp in results["splits"].items():
        sizes = sp["shadow_forget_sizes"]
        lines.append(f"| {name} | {sp['target_pool']} | {sp.get('target_pool_seed', '–')} | {sp['forget_table_seed']} | {min(sizes)}-{max(sizes)} | "
                     f"{', '.join(map(str, sp['observations_per_example']))} | {sp.get('audited', '–')} |")
    return "\n".join(lines) + "\n"


__all__ = ["COLUMNS", "FIGURES", "PAPER_REDUCTION", "RETRAIN_VALUE", "build_ulira_results", "claims", "claims_table", "report_lines", "write_ulira_report"]
