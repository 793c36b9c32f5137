#!/usr/bin/env bash
# Issue 9's GPU measurements as one prepared run (about 6-8 minutes on one H200), for whoever holds a GPU:
#   bash bench/gpu_check.sh                 # results in $OUT (default bench/gpu_out), one .txt per step
#   PYTHON=/path/to/python bash bench/gpu_check.sh
# Steps (each under its own time limit, so one that hangs cannot eat the rest):
#   1. machine: nvidia-smi, torch and CUDA versions
#   2. training: one fit vs the bare loop, contiguous vs channels-last, fp32 vs bf16-mixed, batch 32,
#      paper size (target: >= 3,000 segments/s for one fit)
#   3. packed: K = 1, 2, 4, 8, 16 packed runs vs sequential fits, paper size (target: >= 20,000
#      segments/s aggregate), peak GPU memory per K
#   4. cv_jobs: a small demo cross-validation with --cv.jobs 1 vs 4 on one GPU
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

step machine 60 bash -c "nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'"
step training 150 "$PY" bench/bench_training.py --device cuda --steps 30 --warmup 5 --precisions 32-true,bf16-mixed
step packed 180 "$PY" bench/bench_packed.py --device cuda --size paper --packs 1 2 4 8 16 --steps 10 --warmup 3
step cv_jobs 150 "$PY" bench/bench_cv_jobs.py --jobs 1,4 --folds 0-3 --epochs 1 --tiny
step cuda_tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_audio_features.py -k cuda
echo "results: $OUT"
