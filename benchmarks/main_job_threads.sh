#!/bin/bash
# The default digits main job (`lightning-unlearn benchmark`, every default) from an empty cache,
# with --threads 1 (the default) and --threads 2 (torch's own default on a 2-core machine), alone
# and beside one busy process (`python -c "while True: pass"`). Writes summary.txt under $M.
# Usage: M=/tmp/threads bash benchmarks/main_job_threads.sh   (from the repository root)
set -u
unset OMP_NUM_THREADS MKL_NUM_THREADS
export PYTHONPATH=$(pwd)
M=${M:-/tmp/lightning-unlearn-threads}
mkdir -p "$M"
for busy in 0 1; do
  for t in 1 2; do
    rm -rf $M/cache-$t-$busy $M/out-$t-$busy
    BP=""
    if [ $busy = 1 ]; then python -c "while True: pass" & BP=$!; sleep 1; fi
    L=$(cut -d' ' -f1-3 /proc/loadavg)
    S=$(date +%s.%N)
    python -m lightning_unlearn.cli benchmark --quiet --threads $t --cache-dir $M/cache-$t-$busy --out $M/out-$t-$busy > $M/log-$t-$busy.txt 2>&1
    RC=$?
    E=$(date +%s.%N)
    if [ -n "$BP" ]; then kill $BP; fi
    L2=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "threads=$t busy=$busy rc=$RC wall=$(echo "$E - $S" | bc) load_before=[$L] load_after=[$L2]" >> $M/summary.txt
  done
done
echo DONE >> $M/summary.txt
