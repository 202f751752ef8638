#!/usr/bin/env python3
"""Markdown tables for docs/performance.md ("Universal Transformer training step with ACT (issue 7)").

Either run both benchmarks in one sitting and report (outputs kept as ut.json and ut_torch.jsonl in --out):

    python3 bench/ut_report.py --run BUILD_DIR [--out DIR] [--repetitions 5] [--repeats 10]

or report on outputs made earlier:

    BUILD_DIR/bench/bench_ut --benchmark_repetitions=5 --benchmark_out=ut.json --benchmark_out_format=json
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/ut_act.py --threads 2 > ut_torch.jsonl
    python3 bench/ut_report.py ut.json ut_torch.jsonl

Loom rows are bench/bench_ut.cpp's (the median over repetitions when there are several); the PyTorch reference
(bench/pytorch/ut_act.py) runs tensor2tensor's dense ACT loop, so each Loom ACT row is compared with the PyTorch
T2T row of the same halting, Loom's own T2T rows with the same, and Fixed/8 with Fixed/8. Targets (issue 7): the
ACT step at most 0.5x the fixed-8-steps step, and at most 0.5x the anchor (plain PyTorch 1.13 UT encoder with
T2T's loop, 260 ms per step with mean ponder 4 to 5: the Act/Injected/4.5 row's configuration). MB = 10^6 bytes.
"""
import argparse
import json
import os
import re
import subprocess
import sys

from report_common import fmt as _fmt, load_torch, verdict  # this script's directory

ANCHOR_MS = 260.0
HERE = os.path.dirname(os.path.abspath(__file__))


def load_loom(path):
    """name -> row; the median aggregate replaces the iterations when repetitions were run."""
    with open(path) as f:
        data = json.load(f)
    rows, medians = {}, {}
    for b in data["benchmarks"]:
        name = re.sub(r"/(iterations:\d+|real_time|min_time:[\d.]+s?)", "", b.get("run_name", b["name"]))
        scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b.get("time_unit", "ns")]
        row = dict(b, ms=b["real_time"] * scale)
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = row
        else:
            rows.setdefault(name, row)
    rows.update(medians)
    return rows


def fmt(x, digits=1):
    return _fmt(x, digits)


def torch_counterpart(name):
    """The PyTorch row with the same halting: its T2T loop for Loom's ACT rows."""
    return name.replace("Act/", "T2T/", 1) if name.startswith("Act/") else name


ORDER = ["Act/Natural", "Act/Injected/2.5", "Act/Injected/4.5", "T2T/Natural", "T2T/Injected/2.5",
         "T2T/Injected/4.5", "Fixed/8"]


def report(loom, torch):
    print("| configuration | mean N (N + R) | iterations | Loom ms | Loom peak MB | PyTorch row | PyTorch ms | "
          "PyTorch mean N | PyTorch peak RSS MB | PyTorch / Loom time |")
    print("|" + "---|" * 10)
    names = [n for n in ORDER if n in loom] + sorted(n for n in loom if n not in ORDER)
    for name in names:
        r = loom[name]
        tname = torch_counterpart(name)
        t = torch.get(tname, {})
        tms = 1e3 * t["seconds"] if "seconds" in t else None
        print(f"| {name} | {fmt(r.get('ponder'), 2)} ({fmt(r.get('ponder_time'), 2)}) | {fmt(r.get('iterations'), 0)} | "
              f"{fmt(r['ms'])} | {fmt(r.get('peak_bytes', 0) / 1e6)} | {tname if t else ''} | {fmt(tms)} | "
              f"{fmt(t.get('ponder'), 2)} | {fmt(t['peak_rss_growth_bytes'] / 1e6 if t else None)} | "
              f"{fmt(tms / r['ms'] if tms else None, 2)} |")

    fixed = loom.get("Fixed/8")
    print("\n| ACT row | Loom ms | / Loom Fixed/8 (target <= 0.5) | / Loom T2T loop, same halting | "
          "/ anchor 260 ms (target <= 0.5) | / PyTorch T2T loop here, same halting |")
    print("|" + "---|" * 6)
    for name in ("Act/Natural", "Act/Injected/2.5", "Act/Injected/4.5"):
        if name not in loom:
            continue
        ms = loom[name]["ms"]
        vs_fixed = ms / fixed["ms"] if fixed else None
        t2t = loom.get(torch_counterpart(name))
        tt = torch.get(torch_counterpart(name))
        vs_anchor = ms / ANCHOR_MS
        print(f"| {name} | {fmt(ms)} | {fmt(vs_fixed, 2)} {verdict(vs_fixed <= 0.5 if vs_fixed else None)} | "
              f"{fmt(ms / t2t['ms'] if t2t else None, 2)} | {fmt(vs_anchor, 2)} {verdict(vs_anchor <= 0.5)} | "
              f"{fmt(ms / (1e3 * tt['seconds']) if tt else None, 2)} |")

    if torch:
        print("\nPhases of one step (ms): Loom's untimed step and PyTorch's memory step\n")
        print("| configuration | Loom forward | Loom backward | Loom Adam | PyTorch forward | PyTorch backward | "
              "PyTorch Adam |")
        print("|" + "---|" * 7)
        for name in names:
            r, t = loom[name], torch.get(torch_counterpart(name), {})
            print(f"| {name} | {fmt(r.get('fwd_ms'))} | {fmt(r.get('bwd_ms'))} | {fmt(r.get('opt_ms'))} | "
                  f"{fmt(t.get('fwd_ms'))} | {fmt(t.get('bwd_ms'))} | {fmt(t.get('opt_ms'))} |")


def run(args):
    os.makedirs(args.out, exist_ok=True)
    loom_json = os.path.join(args.out, "ut.json")
    torch_jsonl = os.path.join(args.out, "ut_torch.jsonl")
    cmd = [os.path.join(args.run, "bench", "bench_ut"), f"--benchmark_repetitions={args.repetitions}",
           f"--benchmark_out={loom_json}", "--benchmark_out_format=json"] + args.bench_args
    print("#", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    cmd = ["/usr/bin/python3", os.path.join(HERE, "pytorch", "ut_act.py"), "--threads", str(args.threads),
           "--repeats", str(args.repeats)]
    print("# OMP_WAIT_POLICY=PASSIVE", " ".join(cmd), file=sys.stderr, flush=True)
    with open(torch_jsonl, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    return loom_json, torch_jsonl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="ut.json [ut_torch.jsonl]")
    ap.add_argument("--run", metavar="BUILD_DIR", help="run bench_ut from this build and ut_act.py first")
    ap.add_argument("--out", default=".", help="where --run keeps its outputs")
    ap.add_argument("--repetitions", type=int, default=5, help="--run: bench_ut repetitions (median reported)")
    ap.add_argument("--repeats", type=int, default=10, help="--run: PyTorch timed steps (median reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench-args", nargs=argparse.REMAINDER, default=[], help="--run: more bench_ut flags")
    args = ap.parse_args()
    if args.run:
        files = run(args)
    elif args.files:
        files = args.files
    else:
        sys.exit(ap.format_usage())
    report(load_loom(files[0]), load_torch(files[1]) if len(files) > 1 else {})


if __name__ == "__main__":
    main()
