#!/usr/bin/env bash
# The README's polyphonic benchmark table (issue: seed 003's Table I): each model trained on
# each benchmark's own split with train.py and the piano roll's recipe, scored by evaluate.py
# (the frame-level NLL of the validation split; the mirror's copies hold no test split), and
# tabulated beside the published figures with its epochs, wall time and parameters.
# Output in benchmarks/results/polyphonic/ (not committed); a finished run is not trained again.
#
#   NOTE_MATRIX_MIRROR=../shared/datasets KERAS_BACKEND=jax benchmarks/polyphonic.sh
#   DATASETS="jsb" HEADS="nade" NOTE_MATRIX_MIRROR=../shared/datasets KERAS_BACKEND=jax benchmarks/polyphonic.sh
#
# DATASETS (default: all four) and HEADS (default: bernoulli nade biaxial tokens) choose the
# runs, "tokens" being the roll_tokens representation (each frame's keys as tokens, Walder
# 2016) rather than a head of the piano roll; TRAIN_FLAGS adds train.py flags to every run.
# JSB Chorales' pieces are short (median 57 frames of a quarter note), so its windows are 16
# frames; the others' the recipe's 64, validated (for early stopping only) on every 16th
# window: at every window, as JSB's are, validation took most of each epoch (BENCHMARKS.md,
# section 9). Roll tokens train on windows of 64 tokens (the recipe's), validated on every
# 4th (JSB Chorales) or 16th. The
# biaxial LSTM runs an LSTM per key, 88 times the work of one: it is sized for this CPU
# (BIAXIAL_FLAGS, default 64 units along time, 32 across keys).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NOTE_MATRIX_MIRROR:?set NOTE_MATRIX_MIRROR to the dataset mirror}"
out=benchmarks/results/polyphonic
logs=$out/logs
mkdir -p "$logs"
export TF_CPP_MIN_LOG_LEVEL=3

for dataset in ${DATASETS:-jsb nottingham-poly musedata piano-midi}; do
  window=64 stride=16 token_stride=16
  [ "$dataset" = jsb ] && window=16 stride=1 token_stride=4
  for head in ${HEADS:-bernoulli nade biaxial tokens}; do
    run=$dataset-$head
    model="--representation piano_roll --head $head --window $window --validation-stride $stride"
    [ "$head" = biaxial ] && model="$model ${BIAXIAL_FLAGS:-"--units 64 --output-units 32"}"
    [ "$head" = tokens ] && model="--representation roll_tokens --window 64 --validation-stride $token_stride"
    if [ ! -f "$logs/$run/model.keras" ]; then
      start=$(date +%s)
      # shellcheck disable=SC2086 (model, TRAIN_FLAGS: flags, split on spaces)
      python train.py --dataset "$dataset" $model \
        --sample-every 0 --logdir "$logs" --run-name "$run" --data-dir "$out/data" --quiet ${TRAIN_FLAGS:-}
      echo "$(( $(date +%s) - start ))" > "$logs/$run/train-seconds.txt"
    fi
    python evaluate.py --model "$logs/$run" --data-dir "$out/data" --quiet | tee "$out/$run.txt"
  done
done
python benchmarks/polyphonic_table.py "$logs" | tee "$out/table.md"
