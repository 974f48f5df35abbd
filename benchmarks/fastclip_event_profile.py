"""Where a FastClip clip event spends its time: probe passes, Gauss-Newton steps, orthogonalisation.

Trains SmallCNN on a CIFAR-10 subset (batch 64) with ``FastClip(every_n_steps=EVERY)`` for STEPS
steps and counts ``Operator.gram`` calls (one forward plus one adjoint pass of a probe block),
Gauss-Newton steps, and the wall time of ``gram``, ``gauss_newton_delta``, ``block_krylov``,
``_project_out`` (Gram-Schmidt) and ``_orth_rows`` (QR). Extra FastClip keyword arguments may be passed as ``key=value`` (Python literals).

Run::

    OMP_NUM_THREADS=1 nice -n 10 env PYTHONPATH=. python benchmarks/fastclip_event_profile.py 10 80 [headroom=0.0 ...]

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
from lightning_unlearn.data import UnlearningDataModule  # noqa: E402
from lightning_unlearn.spectral import clip as clip_mod  # noqa: E402
from lightning_unlearn.spectral import estimators as est_mod  # noqa: E402
from lightning_unlearn.spectral import operator as op_mod  # noqa: E402

COUNTS: collections.Counter = collections.Counter()


def _timed(owner, name: str, extra=None) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        COUNTS[name + "_s"] += time.perf_counter() - t
        COUNTS[name + "_calls"] += 1
        if extra is not None:
            extra(out)
        return out

    setattr(owner, name, wrapper)


def main() -> None:
    every = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 80
    kwargs = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in sys.argv[3:])}
    _timed(op_mod.Operator, "gram")
    _timed(clip_mod, "gauss_newton_delta")
    _timed(clip_mod, "block_krylov")
    _timed(est_mod, "_project_out")
    _timed(est_mod, "_orth_rows")
    _timed(clip_mod, "clip_layer", extra=lambda r: COUNTS.update(gn_steps=r.steps))
    fc_mod.clip_layer = clip_mod.clip_layer
    if kwargs:
        bench.TimedFastClip = functools.partial(bench.TimedFastClip, **kwargs)
    root = os.path.join(os.environ.get("LIGHTNING_UNLEARN_DATA", "../shared/data"), "cifar10")
    dm = UnlearningDataModule(root, seed=0, max_train=5000, max_test=2000, batch_size=64)
    dm.setup()
    r = bench.run(dm, every=every, epochs=1, max_steps=steps, seed=0, lr=0.05)
    print({k: v for k, v in r.items() if k not in ("true_norms", "hook_calls")})
    print("hook calls (global step, events so far, seconds):", r["hook_calls"])
    print("max true norm", max(r["true_norms"].values()))
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in sorted(COUNTS.items())})


if __name__ == "__main__":
    main()
