"""Full CIFAR-10 on one GPU: ResNet-18 original and retrained models, AMUN / FT / SalUn on a 10%
random forget set, SVC MIA and RMIA (two reference models), and FastClip's overhead per epoch.

Sized to finish within about 6 minutes on one H100 (GPU time is scarce: about 15 minutes a
session, start-up included, no network). Everything runs through this library's Lightning loop
(:func:`lightning_unlearn.pipeline.run_experiment`) with the fast recipe: the training set kept
on the GPU as ``uint8`` (``device_data``), augmentation on the GPU, bf16 autocast
(``precision="bf16-mixed"``), channels-last. Hyperparameters are the methods' defaults (no
tuning: there is no time for it on one short lease), recorded in the results.

    # on the GPU machine, with the ImageFolder tree (decoded there, then cached):
    python benchmarks/gpu_cifar10.py --data /path/to/cifar10
    # the same code on CPU in about a minute (the test suite runs this):
    python benchmarks/gpu_cifar10.py --tiny --out /tmp/gpu-tiny

It writes ``benchmarks/results/gpu_cifar10.{json,md}`` (``--results``) with the GPU's name,
torch version and command, and prints the paper's CIFAR-10 ResNet-18 numbers (AMUN, ICML 2025,
Table 1, 200-epoch models) beside its own (short schedule: not directly comparable).
Numbers from a CPU and from a GPU are never mixed in one table: ``--tiny`` writes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_unlearn.environment import device_name

# ---------------------------------------------------------------------------- paper numbers
# [P] Table 1, with D_R, 10% forget: UA, RA, TA, RMIA FT AUC, Avg. Gap
PAPER = {
    "retrain": (94.49, 100.0, 94.33, 50.00, 0.00),
    "ft": (95.16, 96.64, 92.21, 52.08, 2.06),
    "salun": (96.25, 98.14, 93.06, 50.88, 1.44),
    "amun": (95.45, 99.57, 93.45, 50.18, 0.62),
}
PAPER_EPOCHS = 200


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CIFAR-10 ImageFolder tree (default $LIGHTNING_UNLEARN_DATA/cifar10)")
    p.add_argument("--epochs", type=int, default=12, help="original / retrained / reference training epochs (default 12)")
    p.add_argument("--unlearn-epochs", type=int, default=5, help="epochs of each unlearning phase (default 5)")
    p.add_argument("--batch-size", type=int, default=512, help="training batch size of the fits (default 512)")
    p.add_argument("--lr", type=float, default=0.2, help="peak one-cycle learning rate of the fits (default 0.2 at batch 512)")
    p.add_argument("--fastclip-epochs", type=int, default=2, help="epochs timed with and without FastClip (default 2)")
    p.add_argument("--tiny", action="store_true", help="the same code on CPU in about a minute (small CNN, a few hundred images)")
    p.add_argument("--out", default=None, help="pipeline output folder (default: a temporary folder)")
    p.add_argument("--results", default=None, help="results file stem (default benchmarks/results/gpu_cifar10; with --tiny: OUT/gpu_cifar10_tiny)")
    p.add_argument("--cache-dir", default=None, help="model / pool cache (default the library's)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="1")
    p.add_argument("--strategy", default="auto")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace):
    from lightning_unlearn.pipeline import BenchmarkConfig

    gpu = torch.cuda.is_available() and args.accelerator in ("auto", "gpu", "cuda") and not args.tiny
    data = args.data or os.path.join(os.environ.get("LIGHTNING_UNLEARN_DATA", ""), "cifar10")
    if args.tiny and not os.path.isdir(os.path.join(data, "train")):
        data = "digits"  # the tiny mode must run anywhere, also without the offline tree
    common = dict(
        forget="random:0.1",
        methods=("original", "retrain", "amun", "ft", "salun"),
        seeds=(0,),
        max_trials=0,  # no tuning on a 15-minute lease: the methods' default hyperparameters
        rmia_references=2,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        cache_dir=args.cache_dir,
        device_data=args.devices in ("1", "auto"),
    )
    if args.tiny:
        small = data != "digits"
        return BenchmarkConfig(
            dataset=data, max_train=400 if small else 300, max_test=200 if small else 150, model="small-cnn", epochs=3,
            unlearn_epochs=1, batch_size=64, **common,
        )
    return BenchmarkConfig(
        dataset=data, model="resnet18", epochs=args.epochs, unlearn_epochs=args.unlearn_epochs, batch_size=args.batch_size, lr=args.lr,
        precision="bf16-mixed" if gpu else "32-true", channels_last=gpu, **common,
    )


# ---------------------------------------------------------------------------- FastClip overhead
def fastclip_overhead(config, epochs: int) -> dict:
    """Seconds per epoch of the original model's recipe with and without FastClip (same run, same data)."""
    from lightning_unlearn.callbacks import FastClip
    from lightning_unlearn.data import DeviceTensorLoader
    from lightning_unlearn.pipeline.models import data_device, new_net, trainer_kwargs
    from lightning_unlearn.pipeline.stages import open_data
    from lightning_unlearn.training import ClassifierModule, make_trainer, seed_everything

    dm = open_data(config, 0)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    out = {}
    for label, every in (("plain", None), ("fastclip_every_100", 100), ("fastclip_every_10", 10)):
        seed_everything(0)
        module = ClassifierModule(new_net(config, dm), num_classes=dm.num_classes, lr=config.resolved_lr, augmentation=dm.augmentation)
        loader = DeviceTensorLoader(dm.train_set(), batch_size=config.batch_size, device=data_device(config), shuffle=True)
        callbacks = [] if every is None else [FastClip(max_norm=1.0, every_n_steps=every)]
        tkw = {**trainer_kwargs(config), "devices": 1}
        # one warm-up epoch (cudnn autotuning, FastClip's cold start) is excluded from the timing
        trainer = make_trainer(max_epochs=1 + epochs, callbacks=callbacks + [_EpochTimer(sync)], **tkw)
        trainer.fit(module, train_dataloaders=loader)
        times = trainer.callbacks[-1].times[1:]
        out[label] = sum(times) / len(times)
    out["ratio_every_100"] = out["fastclip_every_100"] / out["plain"]
    out["ratio_every_10"] = out["fastclip_every_10"] / out["plain"]
    return out


class _EpochTimer(pl.Callback):
    """Wall time of each training epoch, the device synchronised at both ends."""

    def __init__(self, sync) -> None:
        self.sync, self.times = sync, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.sync()
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.sync()
        self.times.append(time.perf_counter() - self._t)


# ---------------------------------------------------------------------------- report
def summarise(results: dict, config, overhead: dict, wall: float, args) -> dict:
    methods = results["methods"]
    orig_s = methods["original"]["seconds"]
    retrain_s = methods["retrain"]["seconds"]
    epochs = config.resolved_epochs
    summary = {
        "device": device_name(args.accelerator),
        "torch": torch.__version__,
        "command": "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:]),
        "tiny": bool(args.tiny),
        "config": results["config"],
        "wall_seconds": wall,
        "original_epochs_per_minute": 60.0 * epochs / orig_s,
        "original_seconds_per_epoch": orig_s / epochs,
        "amun_over_retrain": methods["amun"]["seconds"] / retrain_s,
        "amun_over_paper_retrain": methods["amun"]["seconds"] / (retrain_s / epochs * PAPER_EPOCHS),
        "fastclip": overhead,
        "methods": {m: {k: methods[m].get(k) for k in ("ua", "ra", "ta", "mia", "rmia_auc", "avg_gap", "avg_gap_mis", "seconds")} for m in methods},
        "paper": {m: dict(zip(("ua", "ra", "ta", "rmia_auc", "avg_gap"), v)) for m, v in PAPER.items()},
    }
    return summary


def markdown(s: dict) -> str:
    f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"# GPU CIFAR-10 benchmark — {s['device']}",
        "",
        f"torch {s['torch']}; command: `{s['command']}`; wall {s['wall_seconds']:.0f} s.",
        f"Original {s['config']['model']} training: **{s['original_epochs_per_minute']:.1f} epochs/min** ({s['original_seconds_per_epoch']:.2f} s/epoch, first epoch included).",
        f"AMUN wall time (attack included) / retraining: {s['amun_over_retrain']:.3f}; / the paper's 200-epoch retraining (extrapolated): {s['amun_over_paper_retrain']:.4f}.",
        f"FastClip overhead per epoch: every 100 steps ×{s['fastclip']['ratio_every_100']:.3f}, every 10 steps ×{s['fastclip']['ratio_every_10']:.3f}.",
        "",
        "| method | UA | RA | TA | MIA (SVC) | RMIA AUC | Avg. Gap | s | paper UA | paper RA | paper TA | paper RMIA | paper Gap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, v in s["methods"].items():
        p = s["paper"].get(m, {})
        lines.append(
            f"| {m} | {f(v['ua'])} | {f(v['ra'])} | {f(v['ta'])} | {f(v['mia'])} | {f(v['rmia_auc'])} | {f(v['avg_gap'])} | {f(v['seconds'])} | "
            f"{f(p.get('ua'))} | {f(p.get('ra'))} | {f(p.get('ta'))} | {f(p.get('rmia_auc'))} | {f(p.get('avg_gap'))} |"
        )
    lines += ["", "Paper: AMUN (ICML 2025) Table 1, 200-epoch models, 27 runs; this run: a short schedule, one seed, untuned defaults."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    from lightning_unlearn.pipeline import run_experiment

    torch.backends.cudnn.benchmark = True
    config = make_config(args).validate()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu-cifar10-"))
    start = time.perf_counter()
    results = run_experiment(config, out / "run")
    overhead = fastclip_overhead(config, 1 if args.tiny else args.fastclip_epochs)
    summary = summarise(results, config, overhead, time.perf_counter() - start, args)
    stem = Path(args.results) if args.results else (out / "gpu_cifar10_tiny" if args.tiny else Path(__file__).parent / "results" / "gpu_cifar10")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    stem.with_suffix(".md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    main()
