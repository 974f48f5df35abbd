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
            --methods ft,rl,amun --rmia-references 2 --max-trials 0 --unlearn-epochs 3 --out runs/ddp

Run::

    OMP_NUM_THREADS=1 python examples/ddp_main_job.py --out runs/ddp          # about a minute on 2 CPU cores
    OMP_NUM_THREADS=1 python examples/ddp_main_job.py --tiny --out runs/tiny  # a 200-image subset (used by the tests)

Expected output (OUTPUT_PLACEHOLDER)
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
    parser.add_argument("--tiny", action="store_true", help="a 200-image subset, one epoch, one method")
    parser.add_argument("--out", default="runs/ddp_main_job", help="output directory of the benchmark")
    parser.add_argument("--cache-dir", default=None, help="trained models (default $LIGHTNING_UNLEARN_CACHE)")
    args = parser.parse_args()
    main(tiny=args.tiny, out=args.out, cache_dir=args.cache_dir)
