"""Workers on one run: the wall time of 2 worker processes against 1 on a small digits preset, and the same numbers.

Claim: ``lightning-unlearn benchmark --workers 2`` measures exactly what one process measures (every
figure, tuning trial, choice and verdict equal bit for bit on a CPU) and, on a machine with two free
cores, in less wall time than ``--workers 1``: the models, the tuning trials that may run at once
(grid points, TPE's random startup slots, the studies of different methods) and the evaluation
units are shared out, while a TPE slot after the startup ones waits for the slots before it.

The preset (about a CPU-minute per run): 400 digits images, 20% forgotten, 2 originals x 2 forget
sets, 2 retrained models each, FT, GA, RL and SalUn each tuned with 4 trials (TPE: 2 random startup
slots, then 2 that wait for the earlier ones) on 2 tuning sets, 2 RMIA references. Each run starts
from an empty cache (every model is trained and counted) and a fresh storage; every process runs one
torch thread (``--threads 1``, ``OMP_NUM_THREADS=1``). The script measures each command's wall time
and the CPU time of all its processes (``RUSAGE_CHILDREN``), checks that the results are equal, and
writes ``benchmarks/results/workers_scaling.{json,md}`` with the machine's load average before and
after each run: on a machine whose cores are busy with other work the ratio says little about
scaling (the workers compete with that work, not only with each other).

    PYTHONPATH=. python benchmarks/workers_scaling.py                 # 1 then 2 workers, a few minutes
    PYTHONPATH=. python benchmarks/workers_scaling.py --workers 1,2,4
    PYTHONPATH=. python benchmarks/workers_scaling.py --epochs 30 --unlearn-epochs 10 --tag long   # longer units
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLAGS = ["--max-train", "400", "--max-test", "200", "--epochs", "3", "--unlearn-epochs", "2", "--methods", "ft,ga,rl,salun", "--rmia-references", "2",
         "--max-trials", "4", "--seeds", "0,1", "--forget-seeds", "0,1", "--retrain-models", "2", "--threads", "1", "--quiet"]


def flags(epochs: int = 3, unlearn_epochs: int = 2) -> list[str]:
    """:data:`FLAGS` with other training and unlearning epochs (longer units: the workers' start-up weighs less)."""
    out = list(FLAGS)
    out[out.index("--epochs") + 1], out[out.index("--unlearn-epochs") + 1] = str(epochs), str(unlearn_epochs)
    return out


def child_cpu_seconds() -> float:
    """User + system CPU seconds of every finished descendant so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def comparable(res: dict) -> dict:
    """Every cell's figures, the tuning trials and choices and the verdicts (times, cache hits and run statistics aside)."""
    out = {}
    for name, section in res["objectives"].items():
        out[name] = {
            "cells": {m: {k: v for k, v in e["cells"].items() if k != "seconds"} for m, e in section["methods"].items()},
            "tuning": section["tuning"], "paired": section["paired"], "statement": section["statement"],
        }
    return out


def run_once(workers: int, tmp: Path, preset: list[str] = FLAGS) -> dict:
    """One benchmark run with ``workers`` workers, fresh cache and storage; its timing and results."""
    out = tmp / f"w{workers}"
    cmd = [sys.executable, "-m", "lightning_unlearn.cli", "benchmark", *preset, "--workers", str(workers), "--cache-dir", str(out / "cache"),
           "--out", str(out / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()
    cpu0, wall0 = child_cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    cpu, wall = child_cpu_seconds() - cpu0, time.perf_counter() - wall0
    if proc.returncode != 0:
        raise SystemExit(f"the run with {workers} workers failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    results = json.loads((out / "run" / "results.json").read_text())
    return {"workers": workers, "wall_seconds": wall, "cpu_seconds": cpu, "load_before": list(load_before), "load_after": list(os.getloadavg()),
            "run": results["run"], "command": " ".join(["lightning-unlearn", *cmd[3:]]), "results": results}


def markdown(record: dict) -> str:
    rows = record["runs"]
    base = rows[0]
    lines = [
        "# Workers on one run: wall time against one worker",
        "",
        f"Machine: {record['provenance']['device']}; torch {record['provenance']['torch']}; "
        f"commit {record['provenance']['commit']}{' (with uncommitted changes)' if record['provenance'].get('dirty') else ''}.",
        "",
        f"Preset: `lightning-unlearn benchmark {' '.join(record['flags'])}` from an empty cache, each run once.",
        "",
        "| workers | wall s | CPU s (all processes) | wall ratio to 1 worker | units measured | models trained | load avg before → after (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['wall_seconds']:.0f} | {r['cpu_seconds']:.0f} | {r['wall_seconds'] / base['wall_seconds']:.2f} | "
                     f"{r['run']['units_run']} | {r['run']['models_trained']} | {r['load_before'][0]:.1f} → {r['load_after'][0]:.1f} |")
    same = "equal" if record["identical"] else "NOT equal"
    lines += [
        "",
        f"Results of every run {same} to the 1-worker run's (every cell's figures, tuning trials and choices, paired differences, verdicts).",
        "",
        record["note"],
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    from lightning_unlearn.environment import run_provenance

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2", help="worker counts to run, the first is the reference (default 1,2)")
    p.add_argument("--out", default=str(HERE / "results"), help="where workers_scaling.{json,md} go (default benchmarks/results)")
    p.add_argument("--note", default="", help="a sentence on the machine's state during the runs (written into the report)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of every model (default 3)")
    p.add_argument("--unlearn-epochs", type=int, default=2, help="epochs of every unlearning run (default 2)")
    p.add_argument("--tag", default="", help="suffix of the output files: workers_scaling<_tag>.{json,md}")
    args = p.parse_args(argv)
    preset = flags(args.epochs, args.unlearn_epochs)
    counts = [int(v) for v in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="lu-workers-") as tmp:
        runs = [run_once(n, Path(tmp), preset) for n in counts]
    reference = comparable(runs[0]["results"])
    identical = all(comparable(r["results"]) == reference for r in runs[1:])
    for r in runs:
        r.pop("results")
    load = max(r["load_before"][0] for r in runs)
    note = args.note or (
        f"The machine's load average was {load:.1f} on {os.cpu_count()} cores before a run: other processes were using the cores, so the "
        "workers competed with them and the ratio is distorted (it says little about scaling on free cores)." if load > 0.5 * (os.cpu_count() or 1)
        else "The machine was otherwise idle.")
    record = {"provenance": run_provenance(accelerator="cpu"), "cpus": os.cpu_count(), "flags": preset, "runs": runs, "identical": identical, "note": note,
              "ratio": {str(r["workers"]): r["wall_seconds"] / runs[0]["wall_seconds"] for r in runs}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "workers_scaling" + (f"_{args.tag}" if args.tag else "")
    (out / f"{name}.json").write_text(json.dumps(record, indent=1))
    (out / f"{name}.md").write_text(markdown(record))
    print(markdown(record))
    if not identical:
        raise SystemExit("the runs' results differ: see workers_scaling.json")
    return record


if __name__ == "__main__":
    main()
