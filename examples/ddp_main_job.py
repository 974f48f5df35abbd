"""The main job on two processes: ``lightning-unlearn benchmark`` under DDP on a CPU (gloo).

What it shows
    Every Lightning ``Trainer`` of the main job (original, retrained and reference models, each
    unlearning phase) takes the command line's ``--accelerator/--devices/--strategy``, so the whole
    benchmark runs data-parallel by adding three options. On a CPU, ``--strategy ddp --devices 2
    --accelerator cpu`` starts two processes that talk through gloo; on GPUs the same command
    with ``--accelerator gpu`` uses NCCL. Every rank runs every stage (the audits give identical
    values on every rank: they gather, remove the ``DistributedSampler`` padding by sample index and
    sort before computing); rank 0 alone writes ``results.json``, ``report.md`` and the figures.
    The command this script runs is printed first; you can paste it into a shell::

        lightning-unlearn benchmark --strategy ddp --devices 2 --accelerator cpu \
            --methods ft,rl,amun --rmia-references 2 --max-trials 0 --unlearn-epochs 3 \
            --seeds 0 --forget-seeds 0 --retrain-models 1 --out runs/ddp_main_job

Run::

    OMP_NUM_THREADS=1 python examples/ddp_main_job.py                         # about 30 s on 2 CPU cores
    OMP_NUM_THREADS=1 python examples/ddp_main_job.py --tiny --out runs/tiny  # a 300-image subset, about 25 s (used by the tests)

Expected output (full run, nothing cached, one cell: one original, one forget set, one retrained
model; torch 2.14 CPU, gloo, on a shared 2-core machine; the times in the table are those of rank 0)::

    $ lightning-unlearn benchmark --strategy ddp --devices 2 --accelerator cpu --methods ft,rl,amun \
        --rmia-references 2 --max-trials 0 --unlearn-epochs 3 --seeds 0 --forget-seeds 0 --retrain-models 1 \
        --quiet --out runs/ddp_main_job   (one line)
    digits · small-cnn · random:0.2 · remain · 1 originals × 1 forget sets
    | method | UA | RA | TA | MIA (SVC) | RMIA AUC | Avg. Gap | Avg. Gap (SVC) | time (s) |
    |---|---:|---:|---:|---:|---:|---:|---:|---:|
    | original | 100.00 | 98.75 | 94.67 | 25.00 | 64.01 | 5.80 | 3.17 | 5.8 |
    | retrain | 95.00 | 99.06 | 95.78 | 31.25 | 47.25 | 0.00 | 0.00 | 0.9 |
    | ft | 100.00 | 99.38 | 95.33 | 23.75 | 64.70 | 5.80 | 3.31 | 0.2 |
    | rl | 100.00 | 100.00 | 95.78 | 22.50 | 57.70 | 4.10 | 3.67 | 0.2 |
    | amun | 100.00 | 99.06 | 95.11 | 26.25 | 65.12 | 5.89 | 2.67 | 1.3 |
    avg_gap: None of the paired differences excludes 0: no unlearning method is distinguishable from the best, rl, under avg_gap
        (95% CIs, n = 1 forget set). One unit has no interval: measure several forget sets (or declare another --stats-unit).
    report: runs/ddp_main_job/report.md  (12 s; 4 models trained, 0 from cache; 5 runs measured, 0 from the storage)

A test of the machinery, not a result: one cell has no interval (the protocol's default crosses 2
originals with 3 forget sets), and two reference models make a coarse RMIA. The columns are explained in
``docs/protocol.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# ----------------------------------------------------------------------------- settings
DDP = ["--strategy", "ddp", "--devices", "2", "--accelerator", "cpu"]  # two gloo processes on the CPU
ONE_CELL = ["--seeds", "0", "--forget-seeds", "0", "--retrain-models", "1"]  # one original, one forget set, one retrained model
FULL = ["--methods", "ft,rl,amun", "--rmia-references", "2", "--max-trials", "0", "--unlearn-epochs", "3", *ONE_CELL]
TINY = [
    "--max-train", "300", "--max-test", "150", "--epochs", "5", "--batch-size", "32", "--unlearn-epochs", "1",
    "--methods", "ft", "--rmia-references", "2", "--max-trials", "0", *ONE_CELL,
]


def command(out: str, *, tiny: bool = False, cache_dir: str | None = None) -> list[str]:
    """The benchmark command line (``python -m lightning_unlearn.cli`` is ``lightning-unlearn``)."""
    cmd = [sys.executable, "-m", "lightning_unlearn.cli", "benchmark", *DDP, *(TINY if tiny else FULL), "--quiet", "--out", out]
    return cmd + (["--cache-dir", cache_dir] if cache_dir else [])


def main(tiny: bool = False, out: str = "runs/ddp_main_job", cache_dir: str | None = None) -> dict:
    """Run the main job on two CPU processes; returns its ``results.json``."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "lightning_unlearn").is_dir():  # run from a checkout: use its package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH")]))
    cmd = command(out, tiny=tiny, cache_dir=cache_dir)
    print("$ " + " ".join(["lightning-unlearn", *cmd[3:]]), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the benchmark exited with code {proc.returncode}:\n{proc.stderr[-3000:]}")
    print(proc.stdout.strip())
    return json.loads((Path(out) / "results.json").read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 300-image subset, 5 epochs, one method (about 25 s)")
    parser.add_argument("--out", default="runs/ddp_main_job", help="output directory of the benchmark")
    parser.add_argument("--cache-dir", default=None, help="trained models (default $LIGHTNING_UNLEARN_CACHE)")
    args = parser.parse_args()
    main(tiny=args.tiny, out=args.out, cache_dir=args.cache_dir)
