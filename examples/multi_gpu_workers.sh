#!/usr/bin/env bash
# One benchmark run on one node with several GPUs: one worker per GPU, one storage, one model cache.
#
#   bash examples/multi_gpu_workers.sh run.yaml runs/my-run      # one worker per visible GPU
#   TINY=1 bash examples/multi_gpu_workers.sh "" /tmp/mgw        # digits on 2 CPU workers, about a minute (the tests run it)
#
# 1. `lightning-unlearn benchmark` declares the run in its storage (here the default, OUT/study.sqlite3)
#    and works on it as the first worker, on GPU 0;
# 2. one `lightning-unlearn worker` per further GPU joins it (CUDA_VISIBLE_DEVICES=i: each process sees
#    one GPU; a worker started before the declaration waits for it, up to --wait seconds);
# 3. every worker trains the models nobody else is training (each model once: the cache's locks), then
#    takes tuning trials and evaluation runs nobody has taken, and exits when nothing is left;
#    `benchmark` writes the report once every unit is measured: the numbers one process would get.
# A worker that dies (out of memory, killed) loses nothing: its unit is failed and taken again by
# another worker; start it again to rejoin. The same run in one command:
#   lightning-unlearn benchmark --config run.yaml --out runs/my-run --workers "$(nvidia-smi -L | wc -l)"
set -euo pipefail
CONFIG=${1:-}
OUT=${2:-runs/multi-gpu}
CACHE=${CACHE:-$OUT/cache}                       # one cache for every worker (on a shared file system across nodes)
LU=${LU:-lightning-unlearn}                      # or: LU="python -m lightning_unlearn.cli"
STORAGE="sqlite:///$(realpath -m "$OUT")/study.sqlite3"

if [ -n "${TINY:-}" ]; then
  RUN=(--max-train 300 --max-test 150 --epochs 2 --unlearn-epochs 1 --methods ft,salun --rmia-references 2 --max-trials 3
       --seeds 0 --forget-seeds 0 --accelerator cpu --quiet)
  GPUS=("" "")                                   # two workers, no GPU
else
  RUN=(--config "$CONFIG")
  mapfile -t GPUS < <(nvidia-smi --query-gpu=index --format=csv,noheader)
fi

CUDA_VISIBLE_DEVICES=${GPUS[0]} $LU benchmark "${RUN[@]}" --cache-dir "$CACHE" --out "$OUT" &
for gpu in "${GPUS[@]:1}"; do
  CUDA_VISIBLE_DEVICES=$gpu $LU worker --storage "$STORAGE" --cache-dir "$CACHE" --quiet &
done
wait                                             # fails (set -e) if any of them failed
echo "report: $OUT/report.md"
