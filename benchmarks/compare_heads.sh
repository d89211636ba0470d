#!/usr/bin/env bash
# The README's head comparison: each head trained on pop with the same budget, scored on
# the test split beside the baselines, and the music its generations make beside the
# training files'. Output in benchmarks/results/heads/ (not committed).
#
#   NOTE_MATRIX_MIRROR=../shared/datasets benchmarks/compare_heads.sh            # 200 epochs each
#   EPOCHS=20 NOTE_MATRIX_MIRROR=../shared/datasets benchmarks/compare_heads.sh  # a quick look
#
# Every run uses the card's network and settings (512 units, dropout 0.75, RMSprop 1e-4,
# batch 64, window 50, targets all); only --head differs. Generation: 4 pieces of 500
# rows each, primed at 4 places of each of the first 4 test files, --random-seed 1.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NOTE_MATRIX_MIRROR:?set NOTE_MATRIX_MIRROR to the dataset mirror}"
epochs=${EPOCHS:-200}
out=benchmarks/results/heads
logs=$out/logs
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=3

for head in regression categorical mdn; do
  [ -f "$logs/$head/model.keras" ] && [ -f "$logs/$head/calibration.json" ] \
    || python train.py --dataset pop --head "$head" --epochs "$epochs" --logdir "$logs" --run-name "$head" \
         --data-dir "$out/data" --quiet
  python evaluate.py --model "$logs/$head" --data-dir "$out/data" --quiet | tee "$out/test-$head.txt"
done

seeds=$(python - "$logs/regression/split.json" <<'EOF'
import json, sys
split = json.load(open(sys.argv[1]))
print("\n".join(f"{split['root']}/{key}" for key in split["test"][:4]))
EOF
)

generate() {  # run, name, extra flags...
  local run=$1 name=$2
  shift 2
  rm -rf "$out/generated/$name"
  mkdir -p "$out/generated/$name"
  local n=0
  while IFS= read -r seed; do
    n=$((n + 1))
    python generate.py --model "$logs/$run" --seed "$seed" --length 500 --num-outputs 4 --random-seed 1 \
      --out "$out/generated/$name/seed$n-{n}.mid" --quiet "$@"
  done <<< "$seeds"
  python evaluate.py --model "$logs/$run" --data-dir "$out/data" --generated "$out/generated/$name" \
    --json "$out/generated-$name.json" --quiet | tee "$out/generated-$name.txt"
}

generate regression regression
for t in 0.5 1.0 1.5; do
  generate categorical "categorical-T$t" --temperature "$t"
done
generate mdn mdn-T1.0 --temperature 1.0
generate categorical categorical-argmax --argmax
