#!/usr/bin/env bash
# Training windows/s, seconds per pop epoch and generation rows/s, on one and on every local
# device, under JAX and under TensorFlow when installed: benchmarks/gpu.py once per backend.
# The line format is in benchmarks/gpu.py's docstring and BENCHMARKS.md.
#   benchmarks/gpu.sh                                         # the card's model: a GPU machine
#   UNITS=8 WINDOWS=64 ROWS=20 REPEATS=1 benchmarks/gpu.sh    # a tiny smoke run; a CPU will do
# Sizes (gpu.py's flags): UNITS, BATCH, WINDOWS, EPOCHS, ROWS, REPEATS; DATA_DIR (default data);
# BACKENDS (default "jax tensorflow"). Pop's epoch is measured from NOTE_MATRIX_MIRROR or data/pop.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=.
for backend in ${BACKENDS:-jax tensorflow}; do
  if ! python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$backend') is None)"; then
    echo "skip backend=$backend reason=not-installed"
    continue
  fi
  KERAS_BACKEND=$backend python benchmarks/gpu.py ${UNITS:+--units "$UNITS"} ${BATCH:+--batch-size "$BATCH"} \
    ${WINDOWS:+--windows "$WINDOWS"} ${EPOCHS:+--epochs "$EPOCHS"} ${ROWS:+--rows "$ROWS"} \
    ${REPEATS:+--repeats "$REPEATS"} ${DATA_DIR:+--data-dir "$DATA_DIR"}
done
