#!/usr/bin/env bash
# The GPU measurements as one prepared run (about 6 minutes on one H200), for whoever holds a GPU:
#   bash bench/gpu_check.sh                 # results in $OUT (default bench/gpu_out), one .txt per step
#   PYTHON=/path/to/python bash bench/gpu_check.sh
# Steps (each under its own time limit, so one that hangs cannot eat the rest):
#   1. machine: nvidia-smi, torch and CUDA versions
#   2. training: one fit vs the bare loop, contiguous vs channels-last, fp32 vs bf16-mixed, batch 32,
#      paper size
#   3. jobs_N: N = 1, 4, 8 fits at once on the one GPU (separate processes, as --cv.jobs N runs them),
#      paper size, fp32, channels-last: aggregate segments/s (what packing would have to beat by 1.5x
#      to come back; bench/RESULTS.md, "Packed runs: removed")
#   4. cv_jobs: a small demo cross-validation with --cv.jobs 1 vs 4 on one GPU, through the real runner
#   5. cuda_tests: the tests that need a GPU (log-mel features on CUDA equal the CPU's)
# Copy the tables into bench/RESULTS.md with the date and the machine.
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:-bench/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline PYTHONWARNINGS=ignore

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name ($limit s max): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "   exit $? after $((SECONDS - start)) s"
    grep -E '^\||segments/s|passed|failed|error' "$OUT/$name.txt" | tail -n 25
}

jobs_at_once() {  # N fit benchmarks side by side on one GPU; prints their summed segments/s
    local n=$1 i
    for i in $(seq "$n"); do
        "$PY" bench/bench_training.py --device cuda --steps 40 --warmup 10 --precisions 32-true --loops fit \
            --formats channels_last >"$OUT/jobs_${n}_$i.log" 2>&1 &
    done
    wait
    grep -h '^| 32-true' "$OUT"/jobs_"${n}"_*.log | awk -F'|' -v n="$n" \
        '{s += $6; k += 1} END {printf "jobs %d: %d of %d reported, aggregate segments/s %.1f\n", n, k, n, s}'
}
export -f jobs_at_once
export PY OUT

step machine 60 bash -c "nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'"
step training 150 "$PY" bench/bench_training.py --device cuda --steps 30 --warmup 5 --precisions 32-true,bf16-mixed
for n in 1 4 8; do
    step "jobs_$n" 120 bash -c "jobs_at_once $n"
done
step cv_jobs 150 "$PY" bench/bench_cv_jobs.py --jobs 1,4 --folds 0-3 --epochs 1 --tiny
step cuda_tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_audio_features.py -k cuda
echo "results: $OUT"
