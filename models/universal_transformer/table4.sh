#!/usr/bin/env bash
# The Universal Transformer paper's Table 4 at a scale this machine trains: copy, reverse and addition, trained on
# lengths up to 40 (100,000 examples, positions at random offsets) and evaluated on lengths up to 400, for the UT
# with ACT, the UT with 8 fixed steps and the vanilla Transformer (6 layers) of the same width. Prints the
# markdown table of teacher-forced char / sequence accuracy (tensor2tensor's metrics; the decoded accuracy on a
# few examples is in each run's metrics.jsonl).
#   usage: models/universal_transformer/table4.sh [build dir] [runs dir] [steps] [tasks...]
# Runs two trainings at a time with one thread each (this machine has two cores).
set -euo pipefail
build=${1:-build}
runs=${2:-runs/ut_table4}
steps=${3:-3000}
shift $(( $# < 3 ? $# : 3 ))
tasks=("$@")
[ ${#tasks[@]} -eq 0 ] && tasks=(copy reverse addition)
loom="$build/bin/loom"
common=(train ut --steps "$steps" --batch 64 --eval-every 1000 --eval-size 200 --decode-examples 8 --threads 1)
mkdir -p "$runs"
run() {  # name, flags...
  local name=$1
  shift
  "$loom" "${common[@]}" --out "$runs/$name" "$@" > "$runs/$name.log" 2>&1
}
for task in "${tasks[@]}"; do
  run "$task-act" --task "$task" & run "$task-fixed" --task "$task" --recurrence fixed --fixed-steps 8 & wait
  run "$task-transformer" --task "$task" --model transformer --layers 6
done
python3 - "$runs" "${tasks[@]}" <<'PY'
import json, os, sys
runs, tasks = sys.argv[1], sys.argv[2:]
def final(name):
    return [json.loads(l) for l in open(os.path.join(runs, name, "metrics.jsonl")) if '"split":"test"' in l][-1]
print("| model | " + " | ".join(tasks) + " |")
print("|---|" + "---|" * len(tasks))
for suffix, label in [("transformer", "Transformer (6 layers)"), ("fixed", "UT, 8 fixed steps"), ("act", "UT with ACT")]:
    cells = []
    for t in tasks:
        r = final(t + "-" + suffix)
        cells.append("%.2f / %.2f" % (r["char_accuracy"], r["seq_accuracy"]))
    print("| " + label + " | " + " | ".join(cells) + " |")
PY
