#!/usr/bin/env bash
# One prepared GPU session: the decisive CIFAR-10 5k runs of random and class forgetting, then FastClip's GPU overhead.
#
#   DATA=<folder holding cifar10/{train,test}> OUT=<results folder> bash benchmarks/gpu_session.sh
#   TINY=1 DATA=... OUT=/tmp/gpu-tiny bash benchmarks/gpu_session.sh   # the same code on CPU, a few minutes
#
# The forgetting runs are benchmark runs worked on by WORKERS worker processes each (default 5;
# lightning-unlearn's workers: one optuna storage per run, one model cache for all, every model
# trained once, the same numbers as one process). With several GPUs visible the workers take one
# GPU each, round robin; on one GPU they share the card (the models are tiny: the work is launch-
# and Python-bound, so several processes fill one card). The FastClip measurements run alone after
# them (their timings must not include other processes).
#
# The session stops starting work after LIMIT seconds (default 540: one 600-s device command) and
# a stage still running then is stopped; its workers' finished units stay in its storage under WORK
# (default /tmp/gpu-session-work), so the same command on the still-warm machine resumes where it
# stopped. DATA defaults to .device-data (an ignored folder; fill it with the exact 5,000 / 1,000
# images of the library's stratified subset so every machine decodes the same pools). At the end
# everything is packed into OUT/results.tgz (one file: the device tool brings back only a limited
# number of files) beside OUT/status.txt.
set -u
FINAL=${OUT:-/tmp/gpu-session}
mkdir -p "$FINAL"
WORK=${WORK:-/tmp/gpu-session-work}
mkdir -p "$WORK"
DATA=${DATA:-.device-data}
LIMIT=${LIMIT:-540}
WORKERS=${WORKERS:-5}
DEADLINE=$(( $(date +%s) + LIMIT ))
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
CACHE=${CACHE:-/tmp/lu-gpu-cache}  # one cache: every run and every worker shares the original models

{ nvidia-smi 2>&1 || true; python -c "import torch, lightning, torchmetrics, sklearn; print('torch', torch.__version__, 'lightning', lightning.__version__, 'torchmetrics', torchmetrics.__version__, 'sklearn', sklearn.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"; } > "$WORK/env.txt" 2>&1

if [ -n "${TINY:-}" ]; then
  RF=(--max-train 400 --max-test 200 --epochs 1 --unlearn-epochs 1 --max-trials 1 --rmia-references 2 --seeds 0 --accelerator cpu)
  CF=(--max-train 400 --max-test 200 --epochs 1 --unlearn-epochs 1 --max-trials 1 --seeds 0,1 --accelerator cpu)
  FC=(--max-train 256 --epochs 1 --every1-steps 3 --accelerator cpu)
  GPUFLAGS=()
else
  RF=(--seeds 0,1,2)
  CF=(--seeds 0,1,2 --sweep)
  FC=(--max-train 5000 --epochs 3 --accelerator gpu)
  GPUFLAGS=(--device-data)
fi

run() {  # name, command...: one stage in the foreground, stopped at the session's deadline
  local name=$1; shift
  local left=$(( DEADLINE - $(date +%s) ))
  if [ "$left" -le 10 ]; then
    echo "$name not started: the session's $LIMIT s are spent (rerun the same command to resume)" >> "$WORK/status.txt"
    return
  fi
  local start; start=$(date +%s)
  timeout "$left" "$@" > "$WORK/$name.log" 2>&1
  echo "$name rc=$? seconds=$(( $(date +%s) - start ))" >> "$WORK/status.txt"
}

run rf python benchmarks/random_forget.py --preset cifar5k --data "$DATA/cifar10" --settings remain,forget-only --workers "$WORKERS" \
  --cache-dir "$CACHE" --out "$WORK/rf" "${RF[@]}" "${GPUFLAGS[@]}"
run cf python benchmarks/class_forget.py --preset cifar5k --data-root "$DATA" --workers "$WORKERS" \
  --cache-dir "$CACHE" --out "$WORK/class_forget_cifar5k" "${CF[@]}" "${GPUFLAGS[@]}"
OMP_NUM_THREADS=2 run fc_smallcnn python benchmarks/fastclip_training.py --data "$DATA/cifar10" --digits-epochs 0 \
  --out "$WORK/fastclip_training_gpu_smallcnn" "${FC[@]}"
OMP_NUM_THREADS=3 run fc_resnet18 python benchmarks/fastclip_training.py --data "$DATA/cifar10" --digits-epochs 0 --model resnet18 \
  --batch-size 128 --out "$WORK/fastclip_training_gpu_resnet18" "${FC[@]}"
cat "$WORK/status.txt"
tar czf "$FINAL/results.tgz" -C "$WORK" . && cp "$WORK/status.txt" "$WORK/env.txt" "$FINAL/"
