"""Class forgetting: TRW against the class-forgetting baselines and retrain (issue 6), on CPU.

Run (digits, the default; a few minutes):

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/class_forget.py

CIFAR-10 subset (5,000 train / 1,000 test from the offline ImageFolder tree, small CNN):

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/class_forget.py --preset cifar10 \\
        --data-root $LIGHTNING_UNLEARN_DATA

Protocol (a thin configuration of :func:`lightning_unlearn.pipeline.run_experiment` through its
public options; no metric is computed and no pipeline stage is replaced here):

* one forget class (table 1) and two forget classes (table 2); 3 seeds, each with its own
  original model; 3 models retrained without the class(es), shared by the seeds (MIA-NN takes
  its neighbour class from them, leave-one-out for the retrained rows);
* hyperparameters are chosen on a **held-out class** (``tune_class``, never one of the reported
  classes) by the pipeline's tuning stage of table 1 (same number of trials for every method,
  smallest Avg. Gap against a model retrained without the held-out class, original model of
  ``tune_seed`` 0), then passed unchanged to every other table and to the sweep as fixed
  hyperparameters (``hparams``); the grid, every trial and the winners are recorded in
  ``results.json``;
* figures: forget-class train / test accuracy (UA, UA test), remain accuracy (RA), remaining-
  class test accuracy (TA), SVC MIA efficacy, MIA-NN AUC and its gap to the retrained models'
  mean, the symmetric KL to the retrained models on forget-class inputs;
* derived: the MIA-NN gap-reduction ratio of TRW against the best prior method
  ``1 - gap(TRW) / min_baseline gap`` (the paper reports 46% on CIFAR-10 with its own
  protocol; not comparable in value), and the issue's claim checks.

Everything lands in ``--out``: ``results.json`` and ``report.md`` (both with the command, the
git commit and the settings that made them), and one pipeline output folder per table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_unlearn.environment import device_name, run_provenance
from lightning_unlearn.pipeline import BenchmarkConfig, run_experiment, table_markdown
from lightning_unlearn.pipeline.progress import LineProgress

# ----------------------------------------------------------------------------- settings
BASELINES = ("ft", "rl", "ga", "bs", "l1", "salun", "scrub")
METHODS = BASELINES + ("trw",)


@dataclass(frozen=True)
class Preset:
    """One data scale: the pipeline settings and the classes."""

    config: dict[str, Any]
    forget: tuple[int, ...]  # table 1
    forget_two: tuple[int, int]  # table 2
    held_out: int  # tuning class, never reported


PRESETS = {
    # digits: 1,347 train / 450 test 8x8 images, small CNN (15 epochs, about 99% test accuracy)
    "digits": Preset(
        config=dict(dataset="digits", epochs=15, unlearn_epochs=5, tune_lrs=(0.1, 0.02, 0.004), max_trials=3),
        forget=(3,),
        forget_two=(3, 8),
        held_out=5,
    ),
    # CIFAR-10 stratified subset: 5,000 train / 1,000 test, small CNN, no augmentation and 40
    # epochs, so the models memorise their training set (train ~99%, test ~60%) and membership
    # is measurable (with crop+flip and 8 epochs they reached 50% train accuracy and every
    # method's MIA-NN gap sat within the retrained models' own spread). 10 unlearning epochs,
    # 3 tuning trials per method through each method's own learning-rate grid. About an hour
    # on 2 CPU cores; minutes on a GPU.
    "cifar10": Preset(
        config=dict(max_train=5000, max_test=1000, epochs=40, augmentation="none", unlearn_epochs=10, max_trials=3),
        forget=(1,),  # automobile
        forget_two=(1, 3),  # automobile, cat
        held_out=5,  # dog
    ),
}


# ----------------------------------------------------------------------------- stages
def tuned_hparams(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The hyperparameters the pipeline's tuning chose, per method: the tuned keys of each method's ``hparams``."""
    chosen = {}
    for m, trials in results.get("tuning", {}).items():
        keys = {k for t in trials for k in t["hparams"]}
        chosen[m] = {k: results["methods"][m]["hparams"][k] for k in sorted(keys)}
    return chosen


def run_table(base: BenchmarkConfig, classes: tuple[int, ...], out: Path, chosen: dict | None = None) -> dict[str, Any]:
    """One table through :func:`run_experiment`: tuned on the held-out class, or with ``chosen`` fixed."""
    cfg = base.replace(forget="class:" + ",".join(map(str, classes)))
    if chosen is not None:
        cfg = cfg.replace(hparams=chosen)
    start = time.perf_counter()
    results = run_experiment(cfg.validate(), out, progress=LineProgress())
    results["derived"] = derive(results)
    results["seconds"] = time.perf_counter() - start
    return results


def sensitivity(base: BenchmarkConfig, classes: tuple[int, ...], chosen: dict, out: Path) -> list[dict[str, Any]]:
    """TRW at every (tau, pca_dim) of the sweep, other settings as tuned (fixed through ``hparams``)."""
    rows = []
    for tau in (0.05, 0.1, 0.5):
        for pca_dim in (None, 4):
            hp = {**chosen.get("trw", {}), "tau": tau, "pca_dim": pca_dim}
            cfg = base.replace(forget="class:" + ",".join(map(str, classes)), methods=("original", "retrain", "trw"), hparams={"trw": hp})
            res = run_experiment(cfg.validate(), out / f"tau{tau}_pca{pca_dim}", progress=LineProgress())
            d = derive(res)
            trw = res["methods"]["trw"]
            rows.append({
                "tau": tau, "pca_dim": pca_dim,
                **{k: trw.get(k) for k in ("ua", "ua_test", "ta", "mia_nn_auc", "sym_kl")},
                "mia_nn_gap": d["mia_nn_gap"]["trw"], "mia_nn_gap_std": d["mia_nn_gap_std"]["trw"],
            })
            print(f"sensitivity tau={tau} pca_dim={pca_dim}: {rows[-1]}", flush=True)
    return rows


# ----------------------------------------------------------------------------- analysis
def _mean_std(xs: list[float]) -> tuple[float, float]:
    return float(np.mean(xs)), float(np.std(xs))


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """MIA-NN gaps to retrain, the gap-reduction ratio, and the issue's claim checks."""
    m = results["methods"]
    star = m["retrain"]["mia_nn_auc"]
    out: dict[str, Any] = {"retrain_mia_nn_auc": star, "mia_nn_gap": {}, "mia_nn_gap_std": {}}
    for row, entry in m.items():
        gaps = [abs(p["mia_nn_auc"] - star) for p in entry["per_seed"] if p.get("mia_nn_auc") is not None]
        if row == "retrain":  # each retrained model against the mean of the others
            vals = [p["mia_nn_auc"] for p in entry["per_seed"]]
            gaps = [abs(v - np.mean([w for j, w in enumerate(vals) if j != i])) for i, v in enumerate(vals)] if len(vals) > 1 else [0.0]
        if gaps:
            out["mia_nn_gap"][row], out["mia_nn_gap_std"][row] = _mean_std(gaps)
    # The noise floor: how far one retrained model's MIA-NN AUC lies from the other retrained
    # models' (same data, other seeds). Gaps below it do not separate methods.
    out["noise_floor"] = out["mia_nn_gap"].get("retrain")
    base_gaps = {b: out["mia_nn_gap"][b] for b in BASELINES if b in out["mia_nn_gap"]}
    if "trw" in out["mia_nn_gap"] and base_gaps:
        best = min(base_gaps, key=base_gaps.get)
        g_best, g_trw = base_gaps[best], out["mia_nn_gap"]["trw"]
        out["best_prior"] = best
        out["gap_reduction_vs_best_prior"] = (1 - g_trw / g_best) if g_best > 0 else None
        trw, retrain, original = m["trw"], m["retrain"], m["original"]
        out["claims"] = {
            "mia_nn_closer_to_retrain_than_every_baseline": all(g_trw < g for g in base_gaps.values()),
            "forget_train_acc_within_5_of_retrain": abs(trw["ua"] - retrain["ua"]) <= 5,
            "forget_test_acc_within_5_of_retrain": abs(trw["ua_test"] - retrain["ua_test"]) <= 5,
            "remain_class_test_acc_within_2_of_original": abs(trw["ta"] - original["ta"]) <= 2,
        }
    return out


def report(tables: dict[str, dict], tuning: dict, preset: str, args_dict: dict, sweep: list[dict] | None = None, *, command: str | None = None,
           device: str | None = None, commit: str | None = None) -> str:
    device = device or device_name()
    lines = [f"# Class forgetting on {preset}", "", f"Command: `{command or ' '.join(sys.argv)}`" + (f" (commit {commit})" if commit else ""), ""]
    lines += [f"Device: {device}; torch {torch.__version__}; settings: `{json.dumps(args_dict)}`", ""]
    lines += [f"Hyperparameters chosen on the held-out {tuning['protocol']['forget']}: " + json.dumps(tuning["chosen"]), ""]
    for name, res in tables.items():
        d = res["derived"]
        lines += [f"## {name}: forget {res['config']['forget']} ({len(res['config']['seeds'])} seeds, {res['seconds']:.0f} s)", ""]
        lines += [table_markdown(res), ""]
        lines += ["| method | MIA-NN AUC | gap to retrain |", "|---|---:|---:|"]
        for row, entry in res["methods"].items():
            g = d["mia_nn_gap"].get(row)
            mstd = entry["std"].get("mia_nn_auc")
            lines.append(f"| {row} | {entry['mia_nn_auc']:.2f} ± {mstd:.2f} | {g:.2f} ± {d['mia_nn_gap_std'][row]:.2f} |")
        if "claims" in d:
            ratio = d["gap_reduction_vs_best_prior"]
            lines += ["", f"Best prior method by MIA-NN gap: **{d['best_prior']}**; TRW's gap reduction against it: "
                      + ("n/a" if ratio is None else f"**{100 * ratio:.0f}%**") + " (paper, CIFAR-10, own protocol: 46%).", ""]
            lines += [f"- {k}: {'yes' if v else 'NO'}" for k, v in d["claims"].items()]
            if d.get("noise_floor") is not None:
                below = [r for r, g in d["mia_nn_gap"].items() if r != "retrain" and g <= d["noise_floor"]]
                lines += ["", f"MIA-NN noise floor (each retrained model against the mean of the others): {d['noise_floor']:.2f}; "
                          f"rows at or below it: {', '.join(below) or 'none'}."]
        lines.append("")
    if sweep:
        lines += ["## TRW sensitivity to tau and pca_dim (one forget class, 3 seeds, other settings as tuned)", ""]
        lines += ["| tau | pca_dim | UA | UA test | TA | MIA-NN AUC | MIA-NN gap | sym KL |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sweep:
            lines.append(
                f"| {r['tau']} | {r['pca_dim']} | {r['ua']:.2f} | {r['ua_test']:.2f} | {r['ta']:.2f} | {r['mia_nn_auc']:.2f} | "
                f"{r['mia_nn_gap']:.2f} ± {r['mia_nn_gap_std']:.2f} | {r['sym_kl']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--data-root", default=os.environ.get("LIGHTNING_UNLEARN_DATA"), help="folder holding cifar10/{train,test} (cifar10 preset)")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results/class_forget_<preset>)")
    p.add_argument("--cache-dir", default=None, help="trained models and pools (default the library cache)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--tables", default="one,two", help="which tables: one, two or one,two")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's training epochs")
    p.add_argument("--unlearn-epochs", type=int, default=None, help="override the preset's unlearning epochs")
    p.add_argument("--max-trials", type=int, default=None, help="override the preset's tuning trials per method")
    p.add_argument("--sweep", action="store_true", help="also sweep TRW's tau and pca_dim on the one-class table")
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-test", type=int, default=None)
    p.add_argument("--report-only", action="store_true", help="rebuild report.md (and the derived figures) from --out's results.json")
    p.add_argument("--accelerator", default="auto", help="passed to every Lightning Trainer")
    p.add_argument("--devices", default="auto", help="passed to every Lightning Trainer")
    p.add_argument("--strategy", default="auto", help="passed to every Lightning Trainer (e.g. ddp)")
    p.add_argument("--augmentation", default=None, choices=("auto", "crop_flip", "none"), help="override the preset's augmentation")
    p.add_argument("--precision", default="32-true", help="passed to every Lightning Trainer")
    p.add_argument("--device-data", action="store_true", help="keep the training set on the accelerator (one device)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (GPU speed)")
    args = p.parse_args(argv)
    if args.report_only:
        out = Path(args.out or Path(__file__).parent / "results" / f"class_forget_{args.preset}")
        blob = json.loads((out / "results.json").read_text())
        for res in blob["tables"].values():
            res["derived"] = derive(res)
        (out / "results.json").write_text(json.dumps(blob, indent=1, default=str))
        (out / "report.md").write_text(report(blob["tables"], blob["tuning"], blob["preset"], blob["settings"], blob.get("sensitivity"), command=blob.get("command"),
                                                   device=blob.get("device"), commit=blob.get("provenance", {}).get("commit")))
        print((out / "report.md").read_text())
        return 0

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    preset = PRESETS[args.preset]
    cfg = dict(preset.config)
    if args.preset == "cifar10":
        if not args.data_root or not (Path(args.data_root) / "cifar10" / "train").is_dir():
            p.error("the cifar10 preset needs --data-root (or LIGHTNING_UNLEARN_DATA) holding cifar10/{train,test}")
        cfg["dataset"] = str(Path(args.data_root) / "cifar10")
    overrides = (("epochs", args.epochs), ("unlearn_epochs", args.unlearn_epochs), ("max_trials", args.max_trials), ("max_train", args.max_train),
                 ("max_test", args.max_test), ("augmentation", args.augmentation))
    for key, val in overrides:
        if val is not None:
            cfg[key] = val
    base = BenchmarkConfig(
        **cfg, methods=("original", "retrain") + METHODS, seeds=tuple(int(s) for s in args.seeds.split(",")), rmia_references=0,
        retrain_models=3, cache_dir=args.cache_dir, forget=f"class:{preset.forget[0]}", tune_class=preset.held_out, tune_seed=0,
        accelerator=args.accelerator, devices=args.devices, strategy=args.strategy, precision=args.precision,
        device_data=args.device_data, channels_last=args.channels_last,
    ).validate()
    out = Path(args.out or Path(__file__).parent / "results" / f"class_forget_{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    provenance = run_provenance(accelerator=args.accelerator)

    t0 = time.perf_counter()
    wanted = {"one": ("one forget class", preset.forget), "two": ("two forget classes", preset.forget_two)}
    # The tuning of table one (on the held-out class) is reused by the other table and the sweep;
    # a previous invocation's tuning with the same settings is reused too.
    tuning_key = json.dumps([cfg, preset.held_out, args.seeds], sort_keys=True, default=str)
    tuning_file = out / "tuning.json"
    cached = json.loads(tuning_file.read_text()) if tuning_file.is_file() else None
    tuning = cached["tuning"] if cached is not None and cached.get("key") == tuning_key else None
    tables: dict[str, dict] = {}
    previous = out / "results.json"
    if tuning is not None and previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("settings") == json.loads(json.dumps(cfg, default=str)) and old.get("tuning", {}).get("chosen") == tuning["chosen"]:
            tables = old["tables"]  # the other table of the same settings
    keys = args.tables.split(",")
    if tuning is None and "one" not in keys:
        keys = ["one"] + keys  # the tuning runs with table one
    for key in keys:
        name, classes = wanted[key]
        folder = out / key.replace("one", "one_class").replace("two", "two_classes")
        if tuning is None:
            tables[name] = run_table(base, classes, folder)
            chosen = tuned_hparams(tables[name])
            tuning = {
                "protocol": {"forget": f"class:{preset.held_out}", "retrain_models": 1, "original_seed": base.tune_seed, "objective": "avg_gap (ua, ra, ta, SVC mia)"},
                "grids": {m: [t["hparams"] for t in tables[name]["tuning"].get(m, [])] for m in METHODS},
                "trials": tables[name]["tuning"], "chosen": chosen, "tuned_on": tables[name]["tuned_on"],
            }
            tuning_file.write_text(json.dumps({"key": tuning_key, "tuning": tuning}, indent=1, default=str))
            print(f"tuned on class {preset.held_out}: {chosen}", flush=True)
        else:
            tables[name] = run_table(base, classes, folder, chosen=tuning["chosen"])
        tables[name]["config"]["max_trials"] = base.max_trials  # the tuning budget (spent on the held-out class)
        print(f"{name} done ({tables[name]['seconds']:.0f} s): {json.dumps(tables[name]['derived'], default=str)}", flush=True)
        # write after each table, so a long run leaves its finished part
        blob = {"provenance": provenance, "command": provenance["command"], "device": provenance["device"], "preset": args.preset, "settings": cfg,
                "tuning": tuning, "tables": tables, "seconds": time.perf_counter() - t0}
        (out / "results.json").write_text(json.dumps(blob, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))
        (out / "report.md").write_text(report(tables, tuning, args.preset, cfg, command=provenance["command"], device=provenance["device"], commit=provenance["commit"]))
    sweep = None
    if args.sweep:
        sweep = sensitivity(base, preset.forget, tuning["chosen"], out / "sweep")
        blob = {"provenance": provenance, "command": provenance["command"], "device": provenance["device"], "preset": args.preset, "settings": cfg,
                "tuning": tuning, "tables": tables, "sensitivity": sweep, "seconds": time.perf_counter() - t0}
        (out / "results.json").write_text(json.dumps(blob, indent=1, default=str))
        (out / "report.md").write_text(report(tables, tuning, args.preset, cfg, sweep, command=provenance["command"], device=provenance["device"], commit=provenance["commit"]))
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
