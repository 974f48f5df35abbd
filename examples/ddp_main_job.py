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
            --methods ft,rl,amun --rmia-references 2 --max-trials 0 --unlearn-epochs 3 --out runs/ddp_main_job

Run::

    OMP_NUM_THREADS=1 python examples/ddp_main_job.py                         # about 40 s on 2 CPU cores
    OMP_NUM_THREADS=1 python examples/ddp_main_job.py --tiny --out runs/tiny  # a 300-image subset, about 25 s (used by the tests)

Expected output (full run, nothing cached: 38 s wall on a shared 2-core machine; torch 2.14 CPU,
gloo; the times in the table are those of rank 0)::

    $ lightning-unlearn benchmark --strategy ddp --devices 2 --accelerator cpu --methods ft,rl,amun \
        --rmia-references 2 --max-trials 0 --unlearn-epochs 3 --quiet --out runs/ddp_main_job   (one line)
    digits · small-cnn · random:0.1 · remain · seeds 0
    | method | UA | RA | TA | MIA (SVC) | RMIA AUC | Avg. Gap | Avg. Gap (SVC) | time (s) |
    |---|---:|---:|---:|---:|---:|---:|---:|---:|
    | original | 100.00 | 100.00 | 99.11 | 1.48 | 53.86 | 1.83 | 2.28 | 11.0 |
    | retrain | 97.78 | 100.00 | 98.89 | 8.15 | 48.98 | 0.00 | 0.00 | 2.5 |
    | ft | 100.00 | 100.00 | 99.11 | 2.22 | 51.88 | 1.34 | 2.09 | 0.5 |
    | rl | 95.56 | 99.83 | 95.56 | 27.41 | 37.55 | 4.29 | 6.24 | 0.7 |
    | amun | 100.00 | 100.00 | 98.89 | 1.48 | 50.44 | 0.92 | 2.22 | 4.7 |
    report: runs/ddp_main_job/report.md  (26 s; 4 models trained, 0 from cache)

A smoke test of the machinery, not a result: on digits the original is already within about two
points of retrain, and two reference models make a coarse RMIA. The columns are explained in
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
FULL = ["--methods", "ft,rl,amun", "--rmia-references", "2", "--max-trials", "0", "--unlearn-epochs", "3"]
TINY = [
    "--max-train", "300", "--max-test", "150", "--epochs", "5", "--batch-size", "32", "--unlearn-epochs", "1",
    "--methods", "ft", "--rmia-references", "2", "--max-trials", "0",
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
