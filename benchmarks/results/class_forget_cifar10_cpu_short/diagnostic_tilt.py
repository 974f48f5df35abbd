"""Diagnostic (CIFAR-10 subset, forget class 1, seed 0): TRW's symmetric KL to retrain vs the tilt's sharpness.

PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/results/class_forget_cifar10/diagnostic_tilt.py
Reuses the cached models of the class_forget CIFAR run (same settings); lr 0.01 as tuned.
"""
import json, sys, warnings
import torch
torch.set_num_threads(1)
warnings.filterwarnings("ignore")
sys.path.insert(0, "benchmarks")
from class_forget import HeldOutTunedExperiment, derive
from lightning_unlearn.pipeline import BenchmarkConfig
from lightning_unlearn.pipeline.results import build_results

cfg = BenchmarkConfig(dataset="/work/shared/data/cifar10", max_train=5000, max_test=1000, epochs=8, unlearn_epochs=2, tune_lrs=(0.05, 0.01), max_trials=0,
    methods=("original", "retrain", "trw"), seeds=(0,), rmia_references=0, retrain_models=3, cache_dir="/tmp/trw/cache", forget="class:1").validate()
rows = []
for hp in ({"beta": 10.0, "tau": 0.1}, {"beta": 10.0, "tau": 0.5}, {"beta": 0.0}, {"beta": 3.0, "tau": 0.1}):
    res = build_results(HeldOutTunedExperiment(cfg, {"trw": {"lr": 0.01, **hp}}, {}).run(), cfg)
    t = res["methods"]["trw"]
    rows.append({**hp, **{k: t[k] for k in ("ua", "ua_test", "ta", "mia_nn_auc", "sym_kl")}, "retrain_sym_kl": res["methods"]["retrain"]["sym_kl"],
                 "retrain_mia_nn_auc": res["methods"]["retrain"]["mia_nn_auc"]})
    print(json.dumps(rows[-1]), flush=True)
