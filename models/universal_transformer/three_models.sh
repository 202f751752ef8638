# Sourced by table4.sh and babi_table.sh: the three models of the paper's tables on one task, and their table.
# The caller sets $loom (the binary), $runs (the runs directory) and the array `common` (flags of every run).

# run NAME FLAGS...: one training into $runs/NAME, its output in $runs/NAME.log; prints its wall time.
run() {
  local name=$1 start
  shift
  start=$(date +%s)
  "$loom" "${common[@]}" --out "$runs/$name" "$@" > "$runs/$name.log" 2>&1
  echo "$name: $(( ($(date +%s) - start) / 60 )) min"
}

# train_three TASK PARALLEL: the UT with ACT and the UT with 8 fixed steps (at the same time when PARALLEL is
# 2, else one after the other), then the 6-layer Transformer; runs TASK-act, TASK-fixed, TASK-transformer.
train_three() {
  local task=$1 parallel=$2
  if [ "$parallel" = 2 ]; then
    run "$task-act" --task "$task" & run "$task-fixed" --task "$task" --recurrence fixed --fixed-steps 8 & wait
  else
    run "$task-act" --task "$task"
    run "$task-fixed" --task "$task" --recurrence fixed --fixed-steps 8
  fi
  run "$task-transformer" --task "$task" --model transformer --layers 6
}

# print_table CELL TASKS...: the markdown table of the runs' final test lines, a column per task ("babiN" headed
# "task N"). CELL: "accuracy" (char / sequence accuracy) or "error" (1 - sequence accuracy, with the ACT
# model's mean ponder time).
print_table() {
  python3 - "$runs" "$@" <<'PY'
import json, os, sys
runs, cell_kind, tasks = sys.argv[1], sys.argv[2], sys.argv[3:]
def final(name):
    return [json.loads(l) for l in open(os.path.join(runs, name, "metrics.jsonl")) if '"split":"test"' in l][-1]
def cell(r, suffix):
    if cell_kind == "accuracy":
        return "%.2f / %.2f" % (r["char_accuracy"], r["seq_accuracy"])
    text = "%.1f%%" % (100 * (1 - r["seq_accuracy"]))
    return text + (" (ponder %.2f)" % r["ponder_encoder"] if suffix == "act" else "")
print("| model | " + " | ".join(t.replace("babi", "task ") for t in tasks) + " |")
print("|---|" + "---|" * len(tasks))
for suffix, label in [("transformer", "Transformer (6 layers)"), ("fixed", "UT, 8 fixed steps"), ("act", "UT with ACT")]:
    print("| " + label + " | " + " | ".join(cell(final(t + "-" + suffix), suffix) for t in tasks) + " |")
PY
}
