"""AMUN's attack cost on a CIFAR-10 subset: PGD-50 passes over the forget set vs [P]'s bound (< 3).

Trains the small CNN on a stratified CIFAR-10 subset (offline tree at
``$LIGHTNING_UNLEARN_DATA/cifar10``), then builds D_A for a random 10% forget set with
``eps_init=0.04`` (the paper's CIFAR-10 value) and ``eps_init="auto"`` (the quantile rule,
calibration included), counting per-sample forward/backward evaluations. The time of one
training epoch is measured in the same run, so the attack time is also reported in epochs.

    PYTHONPATH=. python benchmarks/amun_attack_cost.py --max-train 5000 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-train", type=int, default=5000)
    p.add_argument("--max-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/amun_attack_cost.json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from lightning_unlearn.data import UnlearningDataModule
    from lightning_unlearn.inference import accuracy, predict_logits
    from lightning_unlearn.training import train_classifier
    from lightning_unlearn.unlearning import build_adversarial_set

    root = os.environ.get("LIGHTNING_UNLEARN_DATA")
    if not root:
        raise SystemExit("set LIGHTNING_UNLEARN_DATA to the folder holding cifar10/")
    dm = UnlearningDataModule(str(Path(root) / "cifar10"), forget="random:0.1", seed=args.seed, max_train=args.max_train, max_test=args.max_test)
    dm.setup()
    t0 = time.perf_counter()
    model = train_classifier(dm, epochs=args.epochs, seed=args.seed)
    train_s = time.perf_counter() - t0
    per_epoch = train_s / args.epochs
    logits, y, _ = predict_logits(model, dm.test_set())
    from lightning_unlearn.environment import run_provenance

    out = {"provenance": run_provenance(), "settings": vars(args), "n_train": len(dm.split.forget) + len(dm.split.remain),
           "n_forget": len(dm.split.forget), "epochs": args.epochs,
           "test_acc": accuracy(logits, y), "seconds_per_train_epoch": per_epoch, "attacks": {}}
    for eps in (0.04, "auto"):
        a = build_adversarial_set(model.model, dm.forget_set(), eps_init=eps, seed=args.seed)
        hist = {f"{float(e):.4g}": int(c) for e, c in zip(*torch.unique(a.eps, return_counts=True))}
        out["attacks"][str(eps)] = {
            "eps_init": a.eps_init, "pgd50_passes": a.cost_in_pgd50_passes, "n_grad": a.n_grad, "seconds": a.seconds,
            "seconds_in_train_epochs": a.seconds / per_epoch, "n_adv": len(a), "n_unresolved": a.n_unresolved,
            "mean_delta": float(a.delta.mean()), "eps_final_histogram": hist,
        }
        print(eps, json.dumps(out["attacks"][str(eps)]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
