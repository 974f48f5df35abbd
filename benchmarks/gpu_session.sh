#!/usr/bin/env bash
# One prepared GPU session: the decisive CIFAR-10 5k runs of random and class forgetting plus FastClip's GPU
# overhead, as parallel processes on one GPU (the models are tiny: the work is launch- and
# Python-bound, so five processes share one card well; FastClip's overhead is the callback's share
# of its own run, measured while the other processes share the card). About 6-8 minutes on one H100/H200.
#
#   DATA=<folder holding cifar10/{train,test}> OUT=<results folder> bash benchmarks/gpu_session.sh
#   TINY=1 DATA=... OUT=/tmp/gpu-tiny bash benchmarks/gpu_session.sh   # the same code on CPU, ~3 min
#
# DATA defaults to .device-data (an ignored folder; fill it with the exact 5,000 / 1,000 images of
# the library's stratified subset so every machine decodes the same pools). Each process writes its
# own results folder and a log under a work folder; a process that runs past LIMIT seconds is stopped
# and leaves its log (random_forget writes after each setting, class_forget after each table). At the
# end everything is packed into OUT/results.tgz (one file: the device tool brings back only a limited
# number of files) beside OUT/status.txt.
set -u
FINAL=${OUT:-/tmp/gpu-session}
mkdir -p "$FINAL"
OUT=$(mktemp -d)
DATA=${DATA:-.device-data}
LIMIT=${LIMIT:-540}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
CACHE=${CACHE:-/tmp/lu-gpu-cache}  # one cache: the three runs share their original models

{ nvidia-smi 2>&1 || true; python -c "import torch, lightning, torchmetrics, sklearn; print('torch', torch.__version__, 'lightning', lightning.__version__, 'torchmetrics', torchmetrics.__version__, 'sklearn', sklearn.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"; } > "$OUT/env.txt" 2>&1

if [ -n "${TINY:-}" ]; then
  RF=(--max-train 400 --max-test 200 --epochs 1 --unlearn-epochs 1 --max-trials 1 --rmia-references 2 --seeds 0 --accelerator cpu)
  CF=(--max-train 400 --max-test 200 --epochs 1 --unlearn-epochs 1 --max-trials 1 --seeds 0,1 --accelerator cpu)
  FC=(--max-train 256 --epochs 1 --every1-steps 3 --accelerator cpu)
  GPUFLAGS=()
else
  RF=(--seeds 0,1,2 --threads 3)
  CF=(--seeds 0,1,2 --sweep)
  FC=(--max-train 5000 --epochs 3 --accelerator gpu)
  GPUFLAGS=(--device-data)
fi

run() {  # name, command...: one background process with its log and a time limit
  local name=$1; shift
  ( start=$(date +%s); timeout "$LIMIT" "$@" > "$OUT/$name.log" 2>&1; rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - start ))" >> "$OUT/status.txt" ) &
}

run rf_remain python benchmarks/random_forget.py --preset cifar5k --data "$DATA/cifar10" --settings remain \
  --cache-dir "$CACHE" --out "$OUT/rf_remain" "${RF[@]}" "${GPUFLAGS[@]}"
run rf_forget python benchmarks/random_forget.py --preset cifar5k --data "$DATA/cifar10" --settings forget-only \
  --cache-dir "$CACHE" --out "$OUT/rf_forget" "${RF[@]}" "${GPUFLAGS[@]}"
OMP_NUM_THREADS=3 run cf python benchmarks/class_forget.py --preset cifar5k --data-root "$DATA" --tables one \
  --cache-dir "$CACHE" --out "$OUT/class_forget_cifar5k" "${CF[@]}" "${GPUFLAGS[@]}"
OMP_NUM_THREADS=2 run fc_smallcnn python benchmarks/fastclip_training.py --data "$DATA/cifar10" --digits-epochs 0 \
  --out "$OUT/fastclip_training_gpu_smallcnn" "${FC[@]}"
OMP_NUM_THREADS=3 run fc_resnet18 python benchmarks/fastclip_training.py --data "$DATA/cifar10" --digits-epochs 0 --model resnet18 \
  --batch-size 128 --out "$OUT/fastclip_training_gpu_resnet18" "${FC[@]}"
wait
cat "$OUT/status.txt"
tar czf "$FINAL/results.tgz" -C "$OUT" . && cp "$OUT/status.txt" "$OUT/env.txt" "$FINAL/"
