#!/usr/bin/env bash
# Every benchmark, one after another, under both backends; output in benchmarks/results/
# (not committed). About 35 minutes on a 2-core CPU; keep the machine otherwise idle.
#   NOTE_MATRIX_MIRROR=../shared/datasets benchmarks/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NOTE_MATRIX_MIRROR:?set NOTE_MATRIX_MIRROR to the dataset mirror}"
out=benchmarks/results
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=.
for backend in tensorflow jax; do
  KERAS_BACKEND=$backend python benchmarks/generation.py 2>&1 | tee "$out/generation-$backend.txt"
  KERAS_BACKEND=$backend python benchmarks/targets.py --data-dir "$out/data" --json "$out/targets-$backend.json" 2>&1 \
    | tee "$out/targets-$backend.txt"
  KERAS_BACKEND=$backend python benchmarks/train_memory.py --json "$out/train-memory-$backend.json" 2>&1 \
    | tee "$out/train-memory-$backend.txt"
done
python benchmarks/preprocess.py --json "$out/preprocess.json" 2>&1 | tee "$out/preprocess.txt"
