#!/usr/bin/env bash
# docs/models/biblosa.md's results: Bi-BloSAN, DiSAN and the multi-head baseline on WordNet glosses (45 classes,
# seeded 90/10 split) and on SpamAssassin (seeded 80/20 split and the time split), each next to the majority and
# naive Bayes baselines of the same split. Runs the nine trainings one after another (two threads each) and
# prints the markdown table.
#   usage: models/biblosa/results_table.sh [build dir] [runs dir] [wordnet epochs] [spam epochs]
set -euo pipefail
build=${1:-build}
runs=${2:-runs/biblosa}
wordnet_epochs=${3:-4}
spam_epochs=${4:-3}
loom="$build/bin/loom"
common=(train biblosa --embed-dim 128 --hidden-dim 128)
mkdir -p "$runs"
for enc in biblosa disan multihead; do
  "$loom" "${common[@]}" --data wordnet --epochs "$wordnet_epochs" --encoder "$enc" --out "$runs/wordnet_$enc" \
    > "$runs/wordnet_$enc.log" 2>&1
  for split in random time; do
    "$loom" "${common[@]}" --data spam --split "$split" --epochs "$spam_epochs" --batch 32 --encoder "$enc" \
      --out "$runs/spam_${split}_$enc" > "$runs/spam_${split}_$enc.log" 2>&1
  done
done
python3 - "$runs" <<'PY'
import json, os, sys
runs = sys.argv[1]
def final(name):
    rows = [json.loads(l) for l in open(os.path.join(runs, name, "metrics.jsonl")) if '"split":"test"' in l]
    return rows[-1]
cols = [("WordNet (45 classes)", "wordnet"), ("spam, random 80/20", "spam_random"), ("spam, time split", "spam_time")]
print("| model | " + " | ".join(c[0] for c in cols) + " |")
print("|---|" + "---|" * len(cols))
first = {key: final(key + "_biblosa") for _, key in cols}
print("| majority class | " + " | ".join("%.3f" % first[k]["majority"] for _, k in cols) + " |")
print("| naive Bayes (words) | " + " | ".join("%.3f" % first[k]["naive_bayes"] for _, k in cols) + " |")
for enc, label in [("biblosa", "Bi-BloSAN"), ("disan", "DiSAN"), ("multihead", "multi-head attention")]:
    cells = []
    for _, key in cols:
        r = final(key + "_" + enc)
        cells.append("%.3f (epoch %d, %.0f min)" % (r["accuracy"], r["best_epoch"], r["minutes"]))
    print("| " + label + " | " + " | ".join(cells) + " |")
PY
