"""Random forgetting, the structure of AMUN's Tables 1 and 2: every method vs retraining.

A thin configuration over :func:`lightning_unlearn.pipeline.run_experiment`: for each forget
fraction (the preset's, optionally others) and each setting (with D_R, D_F only) it runs
original, retrain and every applicable method under the pipeline's protocol (docs/protocol.md):
O originals x F forget sets with R retrained models each, every method tuned with the same
budget on K tuning forget sets that are never reported, UA, RA, TA, SVC MIA efficacy, RMIA AUC,
Avg. Gap (RMIA- and SVC-based), wall times, mean ± SD over the forget sets, 95% intervals, the
noise floor and every method's paired difference to the best one with its verdict. It writes
one pipeline output folder per (fraction, setting) (each with its study, so an interrupted run
resumes) and a combined ``random_forget_<preset>.{json,md}`` with the paper's published
CIFAR-10 / ResNet-18 numbers beside the measured ones, plus:

* both data recipes, resolved (``recipes``): the originals' (original, retrained and reference
  models) and the unlearning phase's, the same for every method (by default the reference
  recipe of the authors' code: crop+flip on D_R and D_F for CIFAR, none on AMUN's D_A);
* AMUN's wall time (attack included) as a ratio to retraining's in the same run, and to the
  paper's 200-epoch recipe extrapolated from the measured time per retraining epoch;
* the attack's cost in PGD-50 passes over the forget set (per-sample forward/backward
  evaluations / (50 |D_F|); [P]'s bound: < 3), ε_init, D_A size and mean ‖δ‖, and what AMUN's
  theory predicts: the transfer of D_A to the retrained model of the same seed (mean
  P_retrain(y_adv | x_adv) and top-1 agreement), for every AMUN, AMUN+SalUn and adv-only
  evaluation run (``diagnostics`` in ``results.json``, ``adversarial_transfer`` per method).

With ``--ulira-shadows N`` (N >= 16: 8 observations of each attacked example per world) every
run is also audited with U-LiRA (:func:`lightning_unlearn.pipeline.ulira.run_ulira`), every row
with the hyperparameters chosen under the first objective: the attacked examples are each cell's
forget set D_F (each example forgotten by N/2 of the shadows, whose forget sets are drawn from
D_F and as many remain samples), the non-members the same examples under models retrained
without them. Its accuracy and gap |acc − 50| to the retrained models, with intervals and
paired differences, sit beside RMIA, with AMUN's gap reduction against the best prior method
(paired bootstrap interval); the shadow pairs are shared by both settings of a fraction (the
same pool and forget sets). ``--ulira-only`` adds it to the finished runs in the output folder.

Every output folder records the command, the git commit and the config (``provenance``).
``benchmarks/compare_presets.py`` puts several presets' folders side by side in one table.

Presets are YAML config files in ``benchmarks/configs/random_forget/`` (``--preset NAME`` reads
``NAME.yaml``; each file's comments give its recipe, the reasoning behind it and the expected
CPU time; ``lightning-unlearn benchmark --config`` reads the same files): ``digits`` (default, the
main job's regime: 400 images, 20% forgotten), ``cifar5k`` (memorising: 5,000
images without augmentation), ``cifar1k-crop`` (the papers' regime at CPU scale: originals
trained with crop+flip that fit their 1,000 images), ``cifar1k-crop-clip`` (the same under
FastClip; ``--fastclip C`` for a milder clip). The CIFAR presets read the offline tree at
``$LIGHTNING_UNLEARN_DATA/cifar10`` (or ``--data``). The options below override a preset's value
when given.

    PYTHONPATH=. python benchmarks/random_forget.py --preset digits
    PYTHONPATH=. python benchmarks/random_forget.py --preset cifar1k-crop                 # both settings
    PYTHONPATH=. python benchmarks/random_forget.py --preset cifar1k-crop-clip --fastclip 2
    PYTHONPATH=. python benchmarks/random_forget.py --preset cifar1k-crop --ulira-only --ulira-shadows 16   # U-LiRA on the finished runs
    PYTHONPATH=. python benchmarks/compare_presets.py benchmarks/results/random_forget_cifar1k-crop benchmarks/results/random_forget_cifar5k
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lightning_unlearn.data.transforms import AUGMENTATIONS
from lightning_unlearn.pipeline import BenchmarkConfig
from lightning_unlearn.pipeline.config_file import load_config
from lightning_unlearn.pipeline.config_values import unset_variable
from lightning_unlearn.pipeline.ulira_stage import MIN_PER_WORLD

# [P] Tables 1-2 (CIFAR-10, ResNet-18, mean over 27 runs): UA, RA, TA, RMIA AUC, Avg. Gap
PAPER = {
    ("0.1", True): {
        "retrain": (94.49, 100.0, 94.33, 50.00, 0.00), "ft": (95.16, 96.64, 92.21, 52.08, 2.06), "rl": (95.54, 97.47, 92.17, 51.33, 1.74),
        "ga": (98.94, 99.22, 93.39, 60.96, 4.28), "bs": (99.14, 99.89, 93.04, 57.85, 3.48), "l1": (94.29, 95.63, 91.55, 51.21, 2.16),
        "salun": (96.25, 98.14, 93.06, 50.88, 1.44), "amun": (95.45, 99.57, 93.45, 50.18, 0.62), "amun-salun": (95.02, 99.58, 93.29, 50.72, 0.68),
    },
    ("0.5", True): {
        "retrain": (92.09, 100.0, 91.85, 50.01, 0.00), "ft": (94.24, 95.82, 91.21, 51.74, 2.17), "rl": (94.83, 99.79, 90.08, 50.78, 1.38),
        "ga": (100.0, 100.0, 94.65, 63.39, 4.62), "bs": (55.24, 55.67, 50.16, 55.19, 32.01), "l1": (98.00, 98.71, 92.79, 54.44, 2.67),
        "salun": (96.68, 99.89, 91.97, 50.86, 1.36), "amun": (93.50, 99.71, 92.39, 49.99, 0.33), "amun-salun": (93.56, 99.72, 92.52, 49.81, 0.36),
    },
    ("0.1", False): {
        "retrain": (94.49, 100.0, 94.33, 50.00, 0.00), "rl": (100.0, 100.0, 94.45, 61.85, 4.31), "ga": (4.77, 5.07, 5.09, 49.78, 68.53),
        "bs": (100.0, 100.0, 94.48, 61.41, 4.20), "salun": (100.0, 100.0, 94.47, 61.09, 4.11), "amun": (94.28, 97.47, 91.67, 52.24, 1.94),
        "amun-salun": (94.19, 97.71, 91.79, 51.93, 1.77),
    },
    ("0.5", False): {
        "retrain": (92.09, 100.0, 91.85, 50.01, 0.00), "rl": (100.0, 100.0, 94.57, 61.99, 4.29), "ga": (100.0, 100.0, 92.65, 63.41, 5.13),
        "bs": (100.0, 100.0, 94.58, 62.43, 4.40), "salun": (100.0, 100.0, 94.59, 62.45, 4.40), "amun": (92.77, 95.66, 89.43, 52.60, 2.51),
        "amun-salun": (91.90, 96.59, 89.98, 52.32, 2.00),
    },
}
PAPER_EPOCHS = 200

# ---------------------------------------------------------------------------- presets
#: the preset files, by name (``--preset NAME``)
CONFIGS = Path(__file__).resolve().parent / "configs" / "random_forget"
PRESETS: dict[str, Path] = {path.stem: path for path in sorted(CONFIGS.glob("*.yaml"))}
#: the options of this script that override a preset's value when given (BenchmarkConfig fields)
OVERRIDES = (
    "epochs", "max_train", "max_test", "augmentation", "unlearn_augmentation", "width", "batch_size", "lr", "unlearn_batch_size",
    "fastclip", "fastclip_every", "tune_seed", "max_trials", "rmia_references", "unlearn_epochs", "seeds", "forget_seeds", "retrain_models", "tune_sets",
)


def preset_config(args) -> BenchmarkConfig:
    """The config of ``args.preset``: its YAML file, then ``--data``, then the options given (:data:`OVERRIDES`).

    Raises:
        SystemExit: a CIFAR preset without ``--data`` or ``$LIGHTNING_UNLEARN_DATA``.
    """
    settings = {key: getattr(args, key) for key in OVERRIDES if getattr(args, key, None) is not None}
    if args.data:
        settings["dataset"] = args.data
    config = load_config(PRESETS[args.preset], **settings)
    if unset_variable(config.data.dataset):
        raise SystemExit("the CIFAR presets need --data or LIGHTNING_UNLEARN_DATA (the folder holding cifar10/train and cifar10/test)")
    return config


def run_configs(args, config: BenchmarkConfig) -> dict[str, BenchmarkConfig]:
    """The config of every run, by key ``<fraction>_with_remain`` / ``<fraction>_forget_only``: the preset's with the
    run's forget fraction and setting, ``--methods`` and the execution options."""
    execution = {k: getattr(args, k) for k in ("cache_dir", "accelerator", "devices", "strategy", "precision") if getattr(args, k) is not None}
    execution.update({k: True for k in ("device_data", "channels_last") if getattr(args, k)})
    if args.methods:
        execution["methods"] = tuple(args.methods)
    fractions = args.fractions or [f"{config.forget_spec.fraction:g}"]
    return {
        f"{frac}_{'with_remain' if has_remain else 'forget_only'}": config.replace(forget=f"random:{frac}", no_remain=not has_remain, **execution)
        for frac in fractions
        for has_remain in args.settings
    }


def folder_name(args) -> str:
    """``random_forget_<preset>`` plus ``-c<max_norm>`` when ``--fastclip`` changes the preset's, plus ``--tag``."""
    name = f"random_forget_{args.preset}"
    if args.fastclip is not None and args.fastclip != load_config(PRESETS[args.preset]).models.fastclip:
        name += f"-c{args.fastclip:g}"
    return name + (f"-{args.tag}" if args.tag else "")


def attack_records(results: dict) -> list[dict]:
    """AMUN's attack statistics of every evaluation run (one per cell), from ``results.json``."""
    records = []
    for method, entry in results["methods"].items():
        records += [{"method": method, "stage": "run", "seed": p["seed"], "forget_set": p.get("forget_set"), **p["diagnostics"]}
                    for p in entry["per_seed"] if p.get("diagnostics", {}).get("pgd50_passes") is not None]
    return records


def recipe_lines(recipes: dict) -> list[str]:
    """Both data recipes of a run (from ``results.json``'s ``recipes``), one line each."""
    o, u = recipes["original"], recipes["unlearning"]
    clip = f", FastClip c = {o['fastclip']:g} every {o['fastclip_every']} steps" if o.get("fastclip") is not None else ""
    adv = u.get("adversarial_set") or {}
    return [
        f"- originals (original, retrained, reference models): {o['augmentation']} (`augmentation={o['setting']}`), {o['model']}"
        f"{'' if o.get('width') is None else ' width ' + str(o['width'])}, batch {o['batch_size']}, {o['epochs']} epochs, one-cycle lr {o['lr']:g}{clip}",
        f"- unlearning phase (every method): {u['augmentation']} on D_R and D_F (`unlearn_augmentation={u['setting']}`)"
        f"{', ' + ', '.join(f'{v} on D_A of {m}' for m, v in adv.items()) if adv else ''}, batch {u['batch_size']}, {u['epochs']} epochs",
    ]


def transfer_lines(results: dict) -> list[str]:
    """AMUN's theory check per AMUN-family method: transfer of D_A to the retrained models, mean ± SD over the runs."""
    summary = results.get("adversarial_transfer") or {}
    if not summary:
        return []
    def f(rec: dict, k: str, d: int = 2) -> str:
        if rec.get(k) is None:
            return "–"
        return f"{rec[k]:.{d}f}" + (f" ± {rec['std'].get(k) or 0:.{d}f}" if rec["runs"] > 1 else "")

    out = ["Transfer of D_A to the retrained models (mean ± SD over the runs): P_retrain(y_adv | x_adv), top-1 agreement, the attack's mean ‖δ‖", "",
           "| method | P(y_adv \\| x_adv) | top-1 | P, ‖δ‖ > 0 | top-1, ‖δ‖ > 0 | mean ‖δ‖ | D_A |", "|---|---:|---:|---:|---:|---:|---:|"]
    for m, rec in summary.items():
        cells = [f(rec, "prob"), f(rec, "top1"), f(rec, "prob_perturbed"), f(rec, "top1_perturbed"), f(rec, "mean_delta", 3), f(rec, "n_adv", 0)]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return out + [""]


def run(args) -> dict:
    from lightning_unlearn.environment import run_provenance
    from lightning_unlearn.pipeline import run_experiment, table_markdown
    from lightning_unlearn.pipeline.progress import LineProgress
    from lightning_unlearn.pipeline.report import cost_phrase, interval_table, paired_table
    from lightning_unlearn.pipeline.ulira import run_ulira
    from lightning_unlearn.pipeline.ulira_results import report_lines as ulira_report_lines

    config = preset_config(args)
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in config.changed().items()}
    out_root = Path(args.out) / folder_name(args)
    provenance = run_provenance(accelerator=args.accelerator or config.execution.accelerator)
    previous_file = out_root / f"{out_root.name}.json"
    previous = json.loads(previous_file.read_text()) if args.ulira_only and previous_file.is_file() else {}
    bench = previous.get("provenance", provenance)  # --ulira-only: the benchmark's own command and times stay
    combined: dict = {"preset": args.preset, "folder": out_root.name, "settings": settings, "provenance": bench, "runs": {}}
    seeds, epochs = list(config.unlearning.seeds), config.unlearning.unlearn_epochs
    md = [f"# Random forgetting on {args.preset} (originals {seeds} x forget seeds {list(config.resolved_forget_seeds)}; {epochs} unlearning epochs)", "",
          f"Command: `{bench['command']}` (commit {bench['commit']}{' with uncommitted changes' if bench.get('dirty') else ''})", "",
          f"Device: {bench['device']}; torch {torch.__version__}; settings {json.dumps(settings, default=str)}", ""]
    shadows = ulira_shadows(args)
    if shadows:
        combined["ulira_provenance"] = provenance
        md += [f"U-LiRA: `{provenance['command']}` (commit {provenance['commit']}{' with uncommitted changes' if provenance.get('dirty') else ''})", ""]
    for key, cfg in run_configs(args, config).items():
        frac, has_remain = key.split("_", 1)[0], cfg.has_remain
        t0, c0 = time.perf_counter(), time.process_time()
        if args.ulira_only:
            res = json.loads((out_root / key / "results.json").read_text())
        else:
            res = run_experiment(cfg, out_root / key, progress=LineProgress(), overwrite=args.overwrite, workers=args.workers)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if args.ulira_only and key in previous.get("runs", {}):
            wall, cpu = previous["runs"][key]["wall_seconds"], previous["runs"][key]["cpu_seconds"]
        m = res["methods"]
        retrain_s = (m.get("retrain") or {}).get("seconds")
        epochs = res["config"]["epochs"]
        summary = {"results": res, "wall_seconds": wall, "cpu_seconds": cpu, "attacks": attack_records(res)}
        if retrain_s and m.get("amun", {}).get("seconds"):
            summary["amun_over_retrain"] = m["amun"]["seconds"] / retrain_s
            summary["amun_over_paper_retrain"] = m["amun"]["seconds"] / (retrain_s / epochs * PAPER_EPOCHS)
        combined["runs"][key] = summary
        combined.setdefault("recipes", res["recipes"])
        stored = f"; {cost_phrase(res['cost'])}" if res.get("cost") else ""
        md += [f"## forget {float(frac):.0%}, {'with D_R' if has_remain else 'D_F only'}", "",
               f"{wall:.0f} s wall, {cpu:.0f} CPU-s in this process ({res['run']['models_trained']} models trained, "
               f"{res['run']['models_loaded']} from the cache){stored}; tuned on {res.get('tuned_on')}.", "", "Data recipes:", "",
               *recipe_lines(res["recipes"]), "", table_markdown(res), ""]
        for name, section in res["objectives"].items():
            md += [f"Verdict ({name}): {section['statement']}", "", *interval_table(section, name), "", *paired_table(section, name), ""]
        paper = PAPER.get((frac, has_remain))
        if paper:
            md += ["Measured vs paper (CIFAR-10 ResNet-18, [P] Tables 1-2): UA / RA / TA / RMIA / Avg. Gap", "",
                   "| method | measured | paper |", "|---|---|---|"]
            for row, vals in m.items():
                meas = " / ".join("–" if vals.get(k) is None else f"{vals[k]:.2f}" for k in ("ua", "ra", "ta", "rmia_auc", "avg_gap"))
                ref = " / ".join(f"{v:.2f}" for v in paper[row]) if row in paper else "–"
                md.append(f"| {row} | {meas} | {ref} |")
            md.append("")
        md += transfer_lines(res)
        if shadows:
            summary["ulira"] = run_ulira(out_root / key, shadows=shadows, cache_dir=args.cache_dir, accelerator=args.accelerator, devices=args.devices,
                                         overwrite=args.overwrite, progress=LineProgress())
            md += [f"U-LiRA ({shadows} shadow pairs per forget set; `{key}/ulira/ulira.md`):", "", *ulira_report_lines(summary["ulira"])]
        md.append("Chosen hyperparameters: "
                  + "; ".join(f"{r}: {json.dumps(v.get('hparams', {}), default=str)}" for r, v in m.items() if r not in ("original", "retrain")))
        if "amun_over_retrain" in summary:
            md.append(
                f"\nAMUN wall time (attack included) {m['amun']['seconds']:.1f} s = {summary['amun_over_retrain']:.2f} x retraining "
                f"({retrain_s:.1f} s, {epochs} epochs) = {summary['amun_over_paper_retrain']:.3f} x a {PAPER_EPOCHS}-epoch retraining (extrapolated)."
            )
        for a in summary["attacks"]:
            t = a.get("transfer_to_retrain") or {}
            md.append(
                f"- {a['method']} attack (original {a['seed']}, {a.get('forget_set')}): |D_F| {a['n_forget']}, D_A {a['n_adv']} "
                f"(unresolved {a['n_unresolved']}), eps_init {a['eps_init']:.3g}, mean ‖δ‖ {a['mean_delta'] or 0:.3f}, "
                f"{a['pgd50_passes']:.2f} PGD-50 passes (bound < 3), {a['attack_seconds']:.1f} s"
                + (f"; transfer to retrain P {t['prob']:.1f}%, top-1 {t['top1']:.1f}%" if t else "")
            )
        md.append("")
        _write(out_root, combined, md)
    return combined


def ulira_shadows(args) -> int:
    """The U-LiRA shadow pairs per forget set (0: no U-LiRA); ``--ulira-only`` alone means 16 (8 observations per world).

    Raises:
        SystemExit: fewer than 8 observations per world, or an odd count.
    """
    n = args.ulira_shadows if args.ulira_shadows is not None else (2 * MIN_PER_WORLD if args.ulira_only else 0)
    if args.ulira_shadows is not None and (n < 2 * MIN_PER_WORLD or n % 2):
        raise SystemExit(f"--ulira-shadows must be even and at least {2 * MIN_PER_WORLD} ({MIN_PER_WORLD} observations of each attacked example "
                         f"per world: each is forgotten by N/2 shadows), got {n}")
    return n


def _write(out_root: Path, combined: dict, md: list[str]) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / f"{out_root.name}.json").write_text(json.dumps(combined, indent=1, default=str))
    (out_root / f"{out_root.name}.md").write_text("\n".join(md) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--seeds", type=lambda s: tuple(int(v) for v in s.split(",")), default=None,
                   help="the originals' model seeds (default: the preset's, 0,1,2)")
    p.add_argument("--forget-seeds", type=lambda s: tuple(int(v) for v in s.split(",")), default=None,
                   help="the seeds of the forget sets (default: the preset's, 0,1,2)")
    p.add_argument("--retrain-models", type=int, default=None, help="retrained models per forget set (default: the preset's, 2)")
    p.add_argument("--tune-sets", type=int, default=None, help="tuning forget sets (default: the preset's, 2)")
    p.add_argument("--tune-seed", type=int, default=None, help="seed of the first tuning forget set (default: the preset's, 100)")
    p.add_argument("--fractions", type=lambda s: s.split(","), default=None, help="forget fractions (default: the preset's)")
    p.add_argument("--settings", type=lambda s: [v == "remain" for v in s.split(",")], default=[True, False],
                   help="comma list of 'remain' and 'forget-only' (default both)")
    p.add_argument("--methods", type=lambda s: s.split(","), default=None, help="default: every method that applies")
    p.add_argument("--unlearn-epochs", type=int, default=None, help="default: the preset's (10)")
    p.add_argument("--data", default=None, help="CIFAR presets: the CIFAR-10 ImageFolder tree (default $LIGHTNING_UNLEARN_DATA/cifar10)")
    g = p.add_argument_group("overrides of the preset's recipe (default: the preset's)")
    g.add_argument("--epochs", type=int, default=None, help="training epochs of original/retrain/reference models")
    g.add_argument("--max-train", type=int, default=None, help="training subset")
    g.add_argument("--max-test", type=int, default=None, help="test subset")
    g.add_argument("--width", type=int, default=None, help="small CNN width")
    g.add_argument("--batch-size", type=int, default=None, help="training batch size of original/retrain/reference models")
    g.add_argument("--lr", type=float, default=None, help="their peak learning rate")
    g.add_argument("--augmentation", default=None, choices=AUGMENTATIONS, help="the originals' augmentation")
    g.add_argument("--fastclip", type=float, default=None, metavar="C", help="FastClip max_norm of every trained model (the output folder then carries -c<C>)")
    g.add_argument("--fastclip-every", type=int, default=None, metavar="N", help="FastClip every N optimizer steps")
    g.add_argument("--unlearn-augmentation", default=None, choices=AUGMENTATIONS, help="the unlearning phase's")
    g.add_argument("--unlearn-batch-size", type=int, default=None, help="batch size of the unlearning phase")
    g.add_argument("--max-trials", type=int, default=None, help="the tuning budget of every method (default: the preset's, 21)")
    g.add_argument("--rmia-references", type=int, default=None, help="RMIA reference models")
    p.add_argument("--tag", default=None, help="suffix of the output folder (random_forget_<preset>[-c<C>]-<tag>)")
    p.add_argument("--precision", default=None, help="passed to every Lightning Trainer (default 32-true)")
    p.add_argument("--device-data", action="store_true", help="keep the training set on the accelerator (one device)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (GPU speed)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--overwrite", action="store_true", help="replace the results of a previous run in the output folders")
    p.add_argument("--ulira-shadows", type=int, default=None, help=f"also audit every run with U-LiRA, N shadow pairs per forget set "
                   f"(even, at least {2 * MIN_PER_WORLD}: N/2 observations of each attacked example per world)")
    p.add_argument("--ulira-only", action="store_true", help="add U-LiRA to the finished runs in the output folder (default --ulira-shadows 16)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes per run (one GPU each when there are GPUs; each with --threads threads). More may join from "
                   "anywhere: lightning-unlearn worker --storage sqlite:///<out>/<run>/study.sqlite3 --cache-dir <the same cache>")
    p.add_argument("--accelerator", default=None, help="passed to every Lightning Trainer (default auto)")
    p.add_argument("--devices", default=None, help="passed to every Lightning Trainer (default auto)")
    p.add_argument("--strategy", default=None, help="passed to every Lightning Trainer (e.g. ddp; default auto)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> None:
    import optuna

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run(args)


if __name__ == "__main__":
    main()
