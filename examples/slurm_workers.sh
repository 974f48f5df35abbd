#!/usr/bin/env bash
# One benchmark run on a SLURM cluster: an array of workers sharing a journal file and a model cache.
#
#   sbatch --array=0-15 examples/slurm_workers.sh run.yaml /nfs/runs/my-run
#
# Every array task is one worker on one GPU. Task 0 runs `lightning-unlearn benchmark`: it declares
# the run in the storage, works on it, and writes the report into OUT once every unit is measured;
# the other tasks run `lightning-unlearn worker`, which waits for the declaration (up to --wait
# seconds), works until nothing is left, and exits. All of them share:
#   - the storage: a journal file on the shared file system (optuna's JournalStorage with a
#     JournalFileBackend: appends under a file lock, safe on NFS; an SQLite file is not), or a
#     database server: STORAGE=postgresql://user:password@host/db (one database can hold several
#     runs: give each its own --study NAME);
#   - the cache: every model is trained once, by the first worker that needs it (the others train
#     other models meanwhile, then load it), also across nodes (the cache's lock files and heartbeats).
# A task that is preempted or killed loses nothing: the units it was running are failed (on SIGTERM
# at once; after SIGKILL once another worker sees its heartbeat stop, LIGHTNING_UNLEARN_LOCK_TIMEOUT
# seconds, 300 by default) and taken again; resubmitting the array continues the run, and
# `lightning-unlearn report --storage "$STORAGE" --out OUT` rewrites the report from the storage.
#SBATCH --job-name=lu-workers
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=04:00:00
#SBATCH --output=lu-workers-%A_%a.log
set -euo pipefail
CONFIG=${1:?a config file (lightning-unlearn benchmark --print_config writes one)}
OUT=${2:?the run folder, on the shared file system}
STORAGE=${STORAGE:-journal://$OUT/run.log}
CACHE=${CACHE:-$OUT/cache}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

if [ "${SLURM_ARRAY_TASK_ID:-0}" = 0 ]; then
  exec lightning-unlearn benchmark --config "$CONFIG" --storage "$STORAGE" --cache-dir "$CACHE" --out "$OUT" \
    --threads "$OMP_NUM_THREADS" --quiet
else
  exec lightning-unlearn worker --storage "$STORAGE" --cache-dir "$CACHE" --threads "$OMP_NUM_THREADS" --wait 1800 \
    --name "task $SLURM_ARRAY_TASK_ID"
fi
