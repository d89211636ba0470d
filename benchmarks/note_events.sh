#!/usr/bin/env bash
# The README's "Note events" figures: the event-field representation trained on pop with
# its own recipe (timed), scored on the test split beside the n-gram baselines, and the
# music it writes at T=1 beside the training files'. Output in
# benchmarks/results/note_events/ (not committed).
#
#   NOTE_MATRIX_MIRROR=../shared/datasets KERAS_BACKEND=jax benchmarks/note_events.sh
#   DATASET=nottingham TRAIN_FLAGS="--patience 3 --epochs 15" NOTE_MATRIX_MIRROR=../shared/datasets \
#     KERAS_BACKEND=jax benchmarks/note_events.sh
#
# Training: train.py --representation note_events with the recipe's defaults (and
# TRAIN_FLAGS, e.g. a shorter patience for Nottingham, 16 times pop's events per epoch).
# Generation: 4 pieces of 500 events, primed at 4 places of each of the first 4 test
# files, at T=1 (the head's default), --random-seed 1; then the same with --max-copied
# $MAX_COPIED (default 8), the copy guard, and with --max-held $MAX_HELD (default 4 s) as well.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NOTE_MATRIX_MIRROR:?set NOTE_MATRIX_MIRROR to the dataset mirror}"
dataset=${DATASET:-pop}
out=benchmarks/results/note_events/$dataset
logs=$out/logs
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=3

if [ ! -f "$logs/events/model.keras" ]; then
  start=$(date +%s)
  # shellcheck disable=SC2086 (TRAIN_FLAGS: extra flags, split on spaces)
  python train.py --dataset "$dataset" --representation note_events --sample-every 0 --logdir "$logs" \
    --run-name events --data-dir "$out/data" --quiet ${TRAIN_FLAGS:-}
  echo "training took $(( $(date +%s) - start )) s (backend ${KERAS_BACKEND:-tensorflow})" | tee "$out/train-time.txt"
fi
python evaluate.py --model "$logs/events" --data-dir "$out/data" --quiet | tee "$out/test.txt"

seeds=$(python - "$logs/events/split.json" <<'PY'
import json, sys
split = json.load(open(sys.argv[1]))
print("\n".join(f"{split['root']}/{key}" for key in split["test"][:4]))
PY
)
# generate_set NAME [generate.py flags]: the 16 pieces in $out/NAME/ (their lines in NAME.log),
# and their statistics beside the training files' in NAME.txt
generate_set() {
  local name=$1 n=0
  shift
  rm -rf "${out:?}/$name" "$out/$name.log"
  mkdir -p "$out/$name"
  while IFS= read -r seed; do
    n=$((n + 1))
    python generate.py --model "$logs/events" --seed "$seed" --length 500 --num-outputs 4 --random-seed 1 \
      --out "$out/$name/seed$n-{n}.mid" --quiet "$@" | grep "^wrote" >> "$out/$name.log"
  done <<< "$seeds"
  python evaluate.py --model "$logs/events" --data-dir "$out/data" --generated "$out/$name" \
    --json "$out/$name.json" --quiet | tee "$out/$name.txt"
}
generate_set generated
# the same 16 pieces with the copy guard: no run of more than MAX_COPIED notes of a training file
generate_set guarded --max-copied "${MAX_COPIED:-8}"
# and with stuck notes released too: none held over MAX_HELD seconds (pop's longest training note: 3.96 s)
generate_set held --max-copied "${MAX_COPIED:-8}" --max-held "${MAX_HELD:-4}"
python -c "from note_matrix.generation import write_piano_roll as draw; print(draw('$out/generated/seed1-1.mid', \
'$out/seed1-1.png', 'note_events on $dataset, T=1: 500 events after the first 100 of the first test file'))"
