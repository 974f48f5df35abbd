"""The smoothness study: does a smoother original make AMUN's adversarial examples transfer, and AMUN closer to retraining?

Claim tested (the thesis's smoothness link): AMUN's bound on the distance to retraining shrinks as the
retrained model's loss on the adversarial pairs ``(x_adv, y_adv)`` shrinks, and a model with a
smaller Lipschitz constant has adversarial examples that transfer better. So training every model
(original, retrained, references) under FastClip should (1) raise the transfer of AMUN's adversarial set
D_A to the retrained models and (2) lower AMUN's Avg. Gap, relative to the same design trained without
clipping. A method that uses no adversarial examples (RL) is the control: if clipping lowers its gap as
much, the gain is the clipped regime's, not AMUN's.

Input: two finished ``benchmarks/random_forget.py`` runs of the same design (originals' model seeds and
forget sets; with D_R), one trained plainly and one under ``--fastclip C``. Each method was tuned on its
own run by the protocol (docs/protocol.md), so each regime gets its own hyperparameters.
Pairing: cell (original seed o, forget set f) of one run with the same cell of the other, over the cells
both runs measured (a run may have more forget sets or originals than the other). The runs'
retrained models differ (each regime retrains its own), so the pair shares the seeds and the forget set,
not the reference; the interval is over forget sets (the unit of both runs), Student's t.

Output (``--out``, default ``benchmarks/results/smoothness_<tag>/``): ``smoothness.json`` (both runs'
summaries, the per-cell values and the paired differences clipped − plain) and ``README.md`` written
from it.

    PYTHONPATH=. python benchmarks/smoothness.py --plain RUN/0.1_with_remain --clipped RUN_C3/0.1_with_remain --tag cifar1k-crop-c3
    PYTHONPATH=. python benchmarks/smoothness.py --readme-only --out benchmarks/results/smoothness_cifar1k-crop-c3
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lightning_unlearn.stats import summarize_cells

HERE = Path(__file__).resolve().parent
#: the rows compared: AMUN (uses D_A), adv-only (D_A without D_R's fine-tuning), RL (the control)
METHODS = ("amun", "adv-only", "rl")
#: per-cell quantities: name -> (what, reader of one per-seed record, lower is better)
QUANTITIES = {
    "avg_gap": ("Avg. Gap to the run's retrained models", lambda r: r.get("avg_gap"), True),
    "transfer_prob": ("P_retrain(y_adv | x_adv), %", lambda r: _transfer(r, "prob"), False),
    "transfer_top1": ("top-1 agreement of retrain with y_adv, %", lambda r: _transfer(r, "top1"), False),
    "gap_closed": ("share of the original's Avg. Gap closed, %", None, False),
}


def _transfer(record: dict[str, Any], key: str) -> float | None:
    t = (record.get("diagnostics") or {}).get("transfer_to_retrain") or {}
    return t.get(key)


def load_run(folder: Path) -> dict[str, Any]:
    """``results.json`` of one random-forgetting setting folder."""
    path = folder / "results.json"
    if not path.is_file():
        raise SystemExit(f"{folder} holds no results.json (expected a random_forget.py setting folder, e.g. RUN/0.1_with_remain)")
    return json.loads(path.read_text())


def design_of(results: dict[str, Any]) -> tuple[list[int], list[str]]:
    d = results["design"]
    return list(d["originals"]), [f["name"] for f in d["forget_sets"]]


def shared_design(plain: dict[str, Any], clipped: dict[str, Any]) -> tuple[list[int], list[str]]:
    """The originals' seeds and forget sets both runs measured (in the plain run's order).

    Raises:
        SystemExit: the runs share no original seed or no forget set (different designs).
    """
    (po, pf), (co, cf) = design_of(plain), design_of(clipped)
    originals, forget_sets = [o for o in po if o in co], [f for f in pf if f in cf]
    if not originals or not forget_sets:
        raise SystemExit(f"the runs have different designs (originals, forget sets) with no cell in common: {(po, pf)} vs {(co, cf)}")
    return originals, forget_sets


def cells(results: dict[str, Any], row: str, quantity: str, design: tuple[list[int], list[str]] | None = None) -> np.ndarray | None:
    """The (O, F) array of ``quantity`` for ``row`` over ``design`` (default: the run's own originals and forget
    sets); ``None`` if the row or any value is missing."""
    originals, forget_sets = design or design_of(results)
    method = results["methods"].get(row)
    if method is None:
        return None
    out = np.full((len(originals), len(forget_sets)), np.nan)
    if quantity == "gap_closed":
        gap, orig = cells(results, row, "avg_gap", design), cells(results, "original", "avg_gap", design)
        return None if gap is None or orig is None else 100.0 * (1.0 - gap / orig)
    read = QUANTITIES[quantity][1]
    for rec in method.get("per_seed", []):
        value = read(rec)
        if value is not None and rec["original"] in originals and rec["forget_set"] in forget_sets:
            out[originals.index(rec["original"]), forget_sets.index(rec["forget_set"])] = value
    return None if np.isnan(out).any() else out


def compare(plain: dict[str, Any], clipped: dict[str, Any], methods=METHODS) -> dict[str, Any]:
    """Summaries of both runs and the paired differences clipped − plain, per method and quantity."""
    design = shared_design(plain, clipped)
    out: dict[str, Any] = {"design": {"originals": design[0], "forget_sets": design[1]}, "rows": {},
                           "designs": {"plain": design_of(plain), "clipped": design_of(clipped)}}
    for row in ("original", *methods):
        per: dict[str, Any] = {}
        for q in QUANTITIES:
            if row == "original" and q == "gap_closed":
                continue  # 0 by definition
            a, b = cells(plain, row, q, design), cells(clipped, row, q, design)
            if a is None or b is None:
                continue
            diff = summarize_cells(b - a, unit="forget_set", method=f"{row} {q}: clipped - plain")
            per[q] = {
                "plain": summarize_cells(a, unit="forget_set").to_dict(),
                "clipped": summarize_cells(b, unit="forget_set").to_dict(),
                "difference": diff.to_dict(),
                "excludes_zero": bool(diff.low > 0 or diff.high < 0) if math.isfinite(diff.low) else False,
                "cells": {"plain": a.tolist(), "clipped": b.tolist()},
            }
        if per:
            out["rows"][row] = per
    for key, res in (("plain", plain), ("clipped", clipped)):
        recipe = res.get("recipes", {}).get("original", {})
        orig = res["methods"]["original"]
        out[key] = {"fastclip": recipe.get("fastclip"), "original_ra": orig.get("ra"), "original_ta": orig.get("ta"),
                    "noise_floor": res.get("noise_floor"),
                    "hparams": {m: res["methods"][m].get("hparams") for m in methods if m in res["methods"]},
                    "commit": res.get("provenance", {}).get("commit")}
    return out


def readme(result: dict[str, Any], sources: dict[str, str]) -> str:
    """The README of the output folder, every number read from ``result``."""
    f = lambda v: "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}"  # noqa: E731
    c = result["clipped"]["fastclip"]
    lines = [
        f"# Smoothness study: every model under FastClip c = {c} vs trained plainly", "",
        "Generated by `benchmarks/smoothness.py` from `smoothness.json` (rerun the script to refresh).", "",
        f"Runs: plain `{sources.get('plain', '?')}`, clipped `{sources.get('clipped', '?')}`. "
        f"Design: the cells both runs measured, originals {result['design']['originals']} × forget sets "
        f"{', '.join(result['design']['forget_sets'])}; "
        "each regime tuned by the protocol on its own run. Intervals: 95% Student's t over the forget sets "
        "(each forget set's cells averaged over the originals); a difference is clipped − plain.", "",
        f"Originals: plain RA {f(result['plain']['original_ra'])} / TA {f(result['plain']['original_ta'])}; "
        f"clipped RA {f(result['clipped']['original_ra'])} / TA {f(result['clipped']['original_ta'])}. "
        f"Noise floor (retrained models against each other, Avg. Gap): plain {f((result['plain']['noise_floor'] or {}).get('mean'))}, "
        f"clipped {f((result['clipped']['noise_floor'] or {}).get('mean'))}.", "",
        "| row | quantity | plain | clipped | clipped − plain | 95% CI | excludes 0 |", "|---|---|---:|---:|---:|---|---|",
    ]
    for row, per in result["rows"].items():
        for q, v in per.items():
            d = v["difference"]
            lines.append(f"| {row} | {QUANTITIES[q][0]} | {f(v['plain']['mean'])} | {f(v['clipped']['mean'])} | {f(d['mean'])} | "
                         f"[{f(d['low'])}, {f(d['high'])}] | {'yes' if v['excludes_zero'] else 'no'} |")
    lines += ["", "Reading: a positive transfer difference and a negative Avg. Gap difference for AMUN, with intervals that exclude 0 "
              "and no such Avg. Gap difference for the control (RL), support the smoothness link; intervals that include 0 say the "
              "difference is not distinguishable at this scale.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plain", type=Path, help="random_forget.py setting folder of the plain run (e.g. RUN/0.1_with_remain)")
    p.add_argument("--clipped", type=Path, help="the same for the run under --fastclip C")
    p.add_argument("--tag", default="cifar1k-crop", help="output folder suffix (default cifar1k-crop)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results/smoothness_<tag>)")
    p.add_argument("--readme-only", action="store_true", help="rewrite README.md from smoothness.json")
    args = p.parse_args(argv)
    out = args.out or HERE / "results" / f"smoothness_{args.tag}"
    if args.readme_only:
        stored = json.loads((out / "smoothness.json").read_text())
        (out / "README.md").write_text(readme(stored, stored.get("sources", {})))
        return
    if args.plain is None or args.clipped is None:
        p.error("--plain and --clipped are required (or --readme-only)")
    result = compare(load_run(args.plain), load_run(args.clipped))
    result["sources"] = {"plain": str(args.plain), "clipped": str(args.clipped)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "smoothness.json").write_text(json.dumps(result, indent=1))
    (out / "README.md").write_text(readme(result, result["sources"]))
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
