"""Where a FastClip clip event spends its time: estimates, certification, Gauss-Newton steps, Rayleigh-Ritz.

Trains SmallCNN on a CIFAR-10 subset (batch 64) with ``FastClip(every_n_steps=EVERY)`` for STEPS
steps and reports, per event, the CPU milliseconds of each phase of
:func:`lightning_unlearn.spectral.clip_event` (the opening estimate, the Gauss-Newton steps, the
certification), of the probe passes (``Operator.matmul``: one forward plus one adjoint pass of a
probe block), of the block orthogonalisation and of the batched Rayleigh-Ritz, plus the share of
layers rescaled by the fallback. Extra ``ClipSettings`` fields may be passed as ``key=value``
(Python literals).

Run::

    OMP_NUM_THREADS=1 nice -n 10 env PYTHONPATH=. LIGHTNING_UNLEARN_DATA=<folder holding cifar10/> \\
        python benchmarks/fastclip_event_profile.py 10 150 [cert_depth=10 ...]

Prints to stdout; nothing is written.
"""

from __future__ import annotations

import ast
import collections
import functools
import os
import sys
import time

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastclip_training as bench  # noqa: E402

import lightning_unlearn.callbacks.fastclip as fc_mod  # noqa: E402
import lightning_unlearn.spectral.estimators as est_mod  # noqa: E402
import lightning_unlearn.spectral.event as event_mod  # noqa: E402
from lightning_unlearn.data import UnlearningDataModule  # noqa: E402
from lightning_unlearn.models import build_model  # noqa: E402
from lightning_unlearn.spectral import ClipSettings  # noqa: E402
from lightning_unlearn.training import ClassifierModule, seed_everything  # noqa: E402

CPU: collections.Counter = collections.Counter()


def _timed(owner, name: str, label=None) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.process_time()
        out = fn(*args, **kwargs)
        CPU[label or name] += time.process_time() - t
        return out

    setattr(owner, name, wrapper)


def main() -> None:
    every = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    kwargs = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in sys.argv[3:])}
    settings = ClipSettings(**kwargs)
    estimate = event_mod._estimate

    def phase(solvers, depths, fresh, generator, **kw):
        t = time.process_time()
        out = estimate(solvers, depths, fresh, generator, **kw)
        kind = "certification" if fresh or max(depths, default=0) == settings.cert_depth else "estimate"
        CPU[kind] += time.process_time() - t
        return out

    event_mod._estimate = phase
    _timed(event_mod._Solver, "gn_step", "gauss_newton")
    _timed(event_mod.Operator, "matmul", "probe passes")
    _timed(est_mod, "_orth_block", "orthogonalisation")
    _timed(est_mod, "rayleigh_ritz_many", "rayleigh_ritz")
    event_mod.rayleigh_ritz_many = est_mod.rayleigh_ritz_many
    _timed(event_mod, "clip_event", "event")
    fc_mod.clip_event = event_mod.clip_event

    root = os.path.join(os.environ.get("LIGHTNING_UNLEARN_DATA", "data"), "cifar10")
    dm = UnlearningDataModule(root, seed=0, max_train=5000, max_test=2000, batch_size=64)
    dm.setup()
    seed_everything(0)
    net = build_model("small-cnn", in_channels=3, num_classes=10, mean=dm.mean, std=dm.std)
    module = ClassifierModule(net, num_classes=10, lr=0.05, schedule="onecycle", augmentation=dm.augmentation, aug_seed=0)
    fc = bench.TimedFastClip(max_norm=1.0, every_n_steps=every, settings=settings)
    trainer, wall = bench._fit(module, dm.make_loader(dm.train_set(), shuffle=True, batch_size=64), [fc], max_steps=steps)
    n = max(1, fc.num_events)
    krylov = [r for r in fc.records if not r.exact]
    print(f"{steps} steps, {fc.num_events} events, settings {settings}")
    print(f"fit CPU ms per step {1e3 * trainer.cpu_seconds / steps:.1f}; callback CPU ms per event {1e3 * fc.hook_cpu_s / n:.1f}")
    print("CPU ms per event:", {k: round(1e3 * v / n, 1) for k, v in sorted(CPU.items())})
    if krylov:
        print(f"Krylov layer-events: {len(krylov)}, rescaled by the fallback {sum(r.fallback for r in krylov) / len(krylov):.2f}, "
              f"moved by Gauss-Newton {sum(r.steps > 0 for r in krylov) / len(krylov):.2f}")


if __name__ == "__main__":
    main()
