"""The papers' claims decided on a finished benchmark run: holds, does not hold, or not distinguishable.

A claim says that one method (the claimant) is closer to retraining than every prior method on a
gap (lower is better). On a finished run of ``benchmarks/random_forget.py`` or
``benchmarks/class_forget.py`` (its ``results.json``), for every declared objective (each objective
chose its own hyperparameters) and every gap named, this script computes from the per-cell values
(originals x forget sets; docs/protocol.md, section 11):

- the best prior method: the prior row with the smallest mean gap on the evaluated cells;
- the paired difference claimant − best prior, cell by cell, with its 95% interval over the run's
  declared unit (default: Student's t over forget-set means);
- the relative reduction ``1 − gap_claimant / gap_best_prior`` (the papers' "x% smaller gap") with a
  paired bootstrap interval over the same unit (:func:`lightning_unlearn.stats.gap_reduction`);
- the reading: **holds** when the difference's interval lies below 0, **does not hold** when it lies
  above 0, **not distinguishable at this scale** otherwise.

Choosing the best prior on the same cells favours the prior (the claimant must beat the luckiest of
several rows), and no correction for the number of claims is made: docs/protocol.md, section 11.

Claims (``--claims``, default ``auto``: AMUN's for a random-forgetting run, TRW's for a class-forgetting run):

- ``amun``: AMUN has the smallest Avg. Gap (arXiv 2503.00917, Tables 1-2), claimant ``amun``;
- ``trw``: TRW reduces the MIA-NN gap to retraining by 46% (arXiv 2506.20893), claimants ``trw`` and
  ``trw-concat``, under the retrain protocol (the neighbour-probability discriminator on T_f, each
  retrained model scored against the others: ``mia_nn_retrain_acc_gap_loo``) and the membership
  reading (``mia_nn_auc_gap``), plus Avg. Gap.

Prior methods: ft, rl, ga, bs, l1, salun, scrub (the AMUN variants amun-salun and adv-only and the TRW
variants are neither claimants nor priors of each other's claims).

    PYTHONPATH=. python benchmarks/claims.py RUN_DIR [RUN_DIR ...]   # writes RUN_DIR/claims.json and claims.md
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lightning_unlearn.stats import gap_reduction, summarize_cells, verdict

PRIORS = ("ft", "rl", "ga", "bs", "l1", "salun", "scrub")
#: claim name -> (claimants, gaps: key -> what it is, the paper's statement)
CLAIMS: dict[str, tuple[tuple[str, ...], dict[str, str], str]] = {
    "amun": (("amun",), {"avg_gap": "Avg. Gap"}, "AMUN has the smallest Avg. Gap of every method (arXiv 2503.00917, Tables 1-2)"),
    "trw": (
        ("trw", "trw-concat"),
        {
            "mia_nn_retrain_acc_gap_loo": "MIA-NN gap, retrain protocol (neighbour probability, T_f, leave-one-model-out)",
            "mia_nn_auc_gap": "MIA-NN gap, membership reading (AUC of D_f vs T_f)",
            "avg_gap": "Avg. Gap",
        },
        "TRW brings MIA-NN closest to retraining, a 46% smaller gap than the best prior method (arXiv 2506.20893)",
    ),
}


def cells_of(section: dict[str, Any], row: str, key: str) -> np.ndarray | None:
    """The (O, F) cells of ``key`` for ``row`` under one objective's section (results.json's ``cells``, originals x
    forget sets); ``None`` if the row, the figure or a cell is missing."""
    values = ((section["methods"].get(row) or {}).get("cells") or {}).get(key)
    if values is None:
        return None
    out = np.asarray(values, dtype=float)
    return None if out.ndim != 2 or np.isnan(out).any() else out


#: the reading of a paired interval of claimant − best prior, from :func:`lightning_unlearn.stats.verdict`
READINGS = {"better": "holds", "worse": "does not hold", "not distinguishable": "not distinguishable at this scale"}


def reading(low: float, high: float) -> str:
    """holds / does not hold / not distinguishable at this scale, from the interval of claimant − best prior."""
    return READINGS[verdict(low, high)]


def decide(results: dict[str, Any], claim: str, *, seed: int = 0) -> list[dict[str, Any]]:
    """Every (objective, gap, claimant) row of ``claim`` on one run's ``results``."""
    claimants, gaps, _ = CLAIMS[claim]
    unit = results["design"].get("unit", "forget_set")
    rows = []
    for objective, section in results["objectives"].items():
        for key, what in gaps.items():
            priors = {m: c for m in PRIORS if (c := cells_of(section, m, key)) is not None}
            for claimant in claimants:
                mine = cells_of(section, claimant, key)
                if mine is None or not priors:
                    continue
                ratio = gap_reduction((claimant, mine), priors, unit=unit, seed=seed)
                diff = summarize_cells(mine - priors[ratio.best_prior], unit=unit, method=f"{claimant} - {ratio.best_prior}")
                floor = (section["methods"].get("retrain") or {}).get(key)  # each retrained model against the others
                rows.append({
                    "objective": objective, "gap": key, "what": what, "claimant": claimant, "best_prior": ratio.best_prior,
                    "noise_floor": floor,
                    "gap_claimant": ratio.gap_claimant, "gap_best_prior": ratio.gap_best_prior,
                    "difference": diff.to_dict(), "reduction": ratio.reduction, "reduction_low": ratio.low, "reduction_high": ratio.high,
                    "unit": unit, "n": diff.n, "reading": reading(diff.low, diff.high),
                })
    return rows


def claim_for(results: dict[str, Any]) -> str:
    """``trw`` for a class-forgetting run (it has TRW rows), ``amun`` otherwise."""
    return "trw" if any("trw" in section["methods"] for section in results["objectives"].values()) else "amun"


def markdown(claim: str, rows: list[dict[str, Any]], source: str) -> str:
    """``claims.md``: one line per row, every number from ``claims.json``."""
    f = lambda v: "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}"  # noqa: E731
    pct = lambda v: "—" if v is None or not math.isfinite(v) else f"{100 * v:.0f}%"  # noqa: E731
    lines = [f"# Claim `{claim}`: {CLAIMS[claim][2]}", "", f"Generated by `benchmarks/claims.py` from `{source}`.", "",
             "Difference = claimant − best prior, paired by cell; 95% interval over the run's unit; reduction = 1 − gap / best prior's "
             "gap with a paired bootstrap interval. Reading: holds (interval below 0), does not hold (above 0), not distinguishable at "
             "this scale (contains 0). The best prior is chosen on the same cells (docs/protocol.md, section 11). Noise floor: the "
             "retrain row's own gap (each retrained model against the others); differences inside it do not rank methods.", "",
             "| objective | gap | claimant | its gap | best prior (gap) | difference [95% CI] | reduction [95% CI] | n | noise floor | reading |",
             "|---|---|---|---:|---|---|---|---:|---:|---|"]
    for r in rows:
        d = r["difference"]
        lines.append(f"| {r['objective']} | {r['what']} | {r['claimant']} | {f(r['gap_claimant'])} | {r['best_prior']} ({f(r['gap_best_prior'])}) | "
                     f"{f(d['mean'])} [{f(d['low'])}, {f(d['high'])}] | {pct(r['reduction'])} [{pct(r['reduction_low'])}, {pct(r['reduction_high'])}] | "
                     f"{r['n']} {r['unit'].replace('_', ' ')}s | {f(r['noise_floor'])} | {r['reading']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders holding results.json (a setting folder of random_forget.py, or class_forget.py's run/)")
    p.add_argument("--claims", default="auto", choices=("auto", *CLAIMS), help="which claim (default: by the run's rows)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    args = p.parse_args(argv)
    written = []
    for run in args.runs:
        path = run / "results.json"
        if not path.is_file():
            raise SystemExit(f"{run} holds no results.json (a finished benchmark run folder is expected)")
        results = json.loads(path.read_text())
        claim = claim_for(results) if args.claims == "auto" else args.claims
        rows = decide(results, claim, seed=args.seed)
        out = {"claim": claim, "statement": CLAIMS[claim][2], "source": str(path), "priors": list(PRIORS), "rows": rows}
        clean = json.loads(json.dumps(out, default=float).replace("NaN", "null"))
        (run / "claims.json").write_text(json.dumps(clean, indent=1) + "\n")
        (run / "claims.md").write_text(markdown(claim, clean["rows"], str(path)))
        print((run / "claims.md").read_text())
        written.append(clean)
    return written


if __name__ == "__main__":
    main()
