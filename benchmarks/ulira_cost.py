"""U-LiRA's cost: one shadow pair and one unlearning run measured on digits, and the expected CPU time at the cifar1k-crop scale.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/ulira_cost.py

Writes ``benchmarks/results/ulira_cost.{json,md}``. The audit of one benchmark folder
(:func:`lightning_unlearn.pipeline.ulira.run_ulira`, F forget sets or classes, O originals,
N shadow pairs) costs

    trainings:        N originals (shared by every forget set, method and setting) + F·N retrained models
    unlearning runs:  F·(N + O) per method (N shadows and the O benchmark cells of each forget set)

so its CPU time is ``N·t_original + F·N·t_retrain + Σ_m F·(N + O)·t_m``, with ``t_original`` /
``t_retrain`` one training on the whole pool / without a forget set and ``t_m`` one unlearning run
of method m (inference is negligible). Measured here on digits, one
thread: one shadow pair (two trainings with the digits preset's recipe) and one unlearning run of
FT, AMUN (random forgetting) and TRW (class forgetting) with the presets' unlearning recipe.
Expected at the cifar1k-crop scale from the per-run seconds that the committed cifar1k-crop
results measured (one thread, CPU, this shared machine): the ``original`` and ``retrain`` rows'
training times and each method's unlearning time, for N = 8, 16, 32 and 64 and the presets' F = 3, O = 3.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch

from lightning_unlearn.environment import run_provenance
from lightning_unlearn.pipeline.config_file import load_config

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CIFAR = {  # the committed cifar1k-crop results: (what, file, JSON path to the rows)
    "random": ("random forgetting with D_R (cifar1k-crop, 10% forgotten)", "random_forget_cifar1k-crop/0.1_with_remain/results.json", ("methods",)),
    "class": ("class forgetting (cifar1k-crop)", "class_forget_cifar1k-crop/results.json", ("tables", "one forget class", "methods")),
}
SHADOW_COUNTS = (8, 16, 32, 64)
FORGET_SETS = ORIGINALS = 3  # the cifar1k-crop presets: 3 forget sets (classes) x 3 originals


def measure_digits(cache: Path) -> dict:
    """Seconds of one shadow pair and of one unlearning run of FT, AMUN and TRW on the digits presets."""
    from lightning_unlearn.audit import forget_request, train_shadow_pairs, unlearnable
    from lightning_unlearn.pipeline.stages import open_data
    from lightning_unlearn.training import seed_everything
    from lightning_unlearn.unlearning import unlearn

    out: dict = {}
    for kind, method in (("random", "ft"), ("random", "amun"), ("class", "trw")):
        cfg = load_config(ROOT / "configs" / f"{kind}_forget" / "digits.yaml").replace(cache_dir=str(cache)).validate()
        dm = open_data(cfg, cfg.resolved_forget_seeds[0] if kind == "random" else 0, spec=str(cfg.forget_specs[0]))
        if kind not in out:
            t0 = time.perf_counter()
            pairs = train_shadow_pairs(dm, 2, model=cfg.models.model, epochs=cfg.resolved_epochs, lr=cfg.resolved_lr, seed=7, cache_dir=cache,
                                       accelerator="cpu")
            out[kind] = {"shadow_pair_seconds": (time.perf_counter() - t0) / 2, "epochs": cfg.resolved_epochs, "n_train": len(dm.train_set()),
                         "unlearn_epochs": cfg.unlearning.unlearn_epochs, "runs": {}}
        index = pairs.forget_index(0)
        request = forget_request(dm, index, batch_size=cfg.unlearning.unlearn_batch_size, augmentation=cfg.unlearning.unlearn_augmentation, seed=0)
        module = unlearnable(pairs.originals[0], dm, seed=0)
        seed_everything(0)
        t0 = time.perf_counter()
        unlearn(module, method, request, trainer_kwargs={"accelerator": "cpu"}, epochs=cfg.unlearning.unlearn_epochs)
        out[kind]["runs"][method] = {"seconds": time.perf_counter() - t0, "forget": len(index)}
    return out


def expected_cifar() -> dict:
    """Expected CPU hours of the audit of one cifar1k-crop folder per shadow count, from the committed per-run seconds."""
    out = {}
    for key, (name, file, path) in CIFAR.items():
        rows = json.loads((RESULTS / file).read_text())
        for part in path:
            rows = rows[part]
        t_original, t_retrain = rows["original"]["seconds"], rows["retrain"]["seconds"]
        methods = {m: r["seconds"] for m, r in rows.items() if m not in ("original", "retrain") and r.get("seconds") is not None}
        per_n = {}
        for n in SHADOW_COUNTS:
            training = n * t_original + FORGET_SETS * n * t_retrain
            unlearning = sum(FORGET_SETS * (n + ORIGINALS) * t for t in methods.values())
            runs = FORGET_SETS * (n + ORIGINALS) * len(methods)
            per_n[str(n)] = {"trainings": (1 + FORGET_SETS) * n, "training_hours": training / 3600, "unlearning_runs": runs,
                             "unlearning_hours": unlearning / 3600, "hours": (training + unlearning) / 3600}
        out[key] = {"name": name, "source": f"benchmarks/results/{file}", "original_seconds": t_original, "retrain_seconds": t_retrain,
                    "unlearn_seconds": methods, "per_shadows": per_n}
    return out


def report(blob: dict) -> str:
    d = blob["digits"]
    lines = ["# U-LiRA's cost", "", f"Command: `{blob['provenance']['command']}` (commit {blob['provenance']['commit']}); {blob['provenance']['device']}", "",
             "## Measured on digits (one thread)", "", "| forgetting | one shadow pair (2 trainings) | unlearning run | seconds |", "|---|---:|---|---:|"]
    for kind, rec in d.items():
        for method, run in rec["runs"].items():
            lines.append(f"| {kind} ({rec['n_train']} images, {rec['epochs']} epochs) | {rec['shadow_pair_seconds']:.1f} s | {method} "
                         f"({rec['unlearn_epochs']} epochs, {run['forget']} forgotten) | {run['seconds']:.1f} |")
    lines += ["", "## Expected CPU hours of one audited folder at the cifar1k-crop scale (F = 3, O = 3; one thread)", "",
              "From the per-run seconds of the committed results: one training, and each method's unlearning run.", ""]
    for rec in blob["cifar"].values():
        lines += [f"### {rec['name']}", "", f"One training {rec['original_seconds']:.0f} s on the whole pool, {rec['retrain_seconds']:.0f} s without a forget "
                  "set; unlearning runs "
                  + ", ".join(f"{m} {s:.0f} s" for m, s in rec["unlearn_seconds"].items()) + f" ({rec['source']}).", "",
                  "| shadow pairs N | trainings | their hours | unlearning runs | their hours | total hours |", "|---:|---:|---:|---:|---:|---:|"]
        for n, c in rec["per_shadows"].items():
            lines.append(f"| {n} | {c['trainings']} | {c['training_hours']:.1f} | {c['unlearning_runs']} | {c['unlearning_hours']:.1f} | {c['hours']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as cache:
        digits = measure_digits(Path(cache))
    blob = {"provenance": run_provenance(accelerator="cpu"), "digits": digits, "cifar": expected_cifar(), "formula":
            "N t_original + F N t_retrain + sum over methods of F (N + O) t_m"}
    out = Path(args.out)
    (out / "ulira_cost.json").write_text(json.dumps(blob, indent=1))
    (out / "ulira_cost.md").write_text(report(blob) + "\n")
    print(report(blob))


if __name__ == "__main__":
    main()
