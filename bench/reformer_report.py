#!/usr/bin/env python3
"""Markdown tables for docs/performance.md ("Reformer training step (issue 6)") from one sitting's runs:

    build/bench/bench_reformer --benchmark_filter='Reformer/(Length|Depth)|Dense' \
        --benchmark_out=reformer.json --benchmark_out_format=json
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/reformer_lm.py --threads 2 > reformer_torch.jsonl
    python3 bench/reformer_report.py reformer.json reformer_torch.jsonl [long.json ...]

Further Loom JSON files (the Reformer/Long runs, one per process) are merged in. Compares Loom with the PyTorch
reference measured in the same sitting and with the issue's anchor (reformer-pytorch 1.4.4, PyTorch 1.13, 2
threads). GB = 10^9 bytes.
"""
import json
import re
import sys

from report_common import fmt as _fmt, load_torch, verdict  # this script's directory

# Issue 6's anchor: seconds and peak GB (over the model's footprint) per training step.
ANCHOR = {"Reformer/Length/4096": (3.0, 0.52), "Reformer/Length/16384": (13.7, 1.6),
          "Reformer/Length/65536": (95.0, 5.8), "Reformer/Depth/2": (None, 0.48),
          "Reformer/Depth/6": (3.0, 0.52), "Reformer/Depth/12": (None, 0.60)}
GB = 1e9


def load_loom(paths):
    rows = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            if b.get("run_type", "iteration") != "iteration":
                continue
            name = re.sub(r"/(iterations:\d+|real_time|min_time:[\d.]+)", "", b["name"])
            scale = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b.get("time_unit", "ns")]
            rows[name] = dict(b, seconds=b["real_time"] * scale)
    return rows


def fmt(x, digits=2):
    return _fmt(x, digits)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    loom = load_loom([sys.argv[1]] + [p for p in sys.argv[3:]])
    torch = load_torch(sys.argv[2]) if len(sys.argv) > 2 else {}

    print("| configuration | Loom s | Loom peak GB (RSS GB) | PyTorch ref s | PyTorch ref peak RSS GB | anchor s | "
          "anchor GB | ref / Loom time | anchor / Loom time | anchor / Loom peak | time target (<= 0.5 anchor) | "
          "memory target (<= 0.5 anchor) |")
    print("|" + "---|" * 13)
    names = [n for n in loom if n.startswith("Reformer/Length") or n.startswith("Reformer/Depth")]
    names.sort(key=lambda n: (n.split("/")[1], int(n.split("/")[2])))
    for name in names:
        r = loom[name]
        t = torch.get(name, {})
        a_s, a_gb = ANCHOR.get(name, (None, None))
        peak = r["peak_bytes"] / GB
        tt = t.get("seconds")
        tpeak = t["peak_rss_growth_bytes"] / GB if "peak_rss_growth_bytes" in t else None
        print(f"| {name} | {fmt(r['seconds'], 3)} | {fmt(peak, 3)} ({fmt(r['peak_rss'] / GB, 3)}) | {fmt(tt, 3)} | "
              f"{fmt(tpeak, 3)} | {fmt(a_s, 1)} | {fmt(a_gb)} | {fmt(tt / r['seconds'] if tt else None)} | "
              f"{fmt(a_s / r['seconds'] if a_s else None)} | {fmt(a_gb / peak if a_gb else None)} | "
              f"{verdict(r['seconds'] <= 0.5 * a_s if a_s else None)} | {verdict(peak <= 0.5 * a_gb if a_gb else None)} |")

    d2, d12 = loom.get("Reformer/Depth/2"), loom.get("Reformer/Depth/12")
    if d2 and d12:
        growth = d12["peak_bytes"] / d2["peak_bytes"] - 1
        print(f"\nPeak growth from 2 to 12 layers at 4096 tokens: Loom {100 * growth:+.1f} % "
              f"({verdict(growth <= 0.10)}; target at most +10 %)", end="")
        t2, t12 = torch.get("Reformer/Depth/2"), torch.get("Reformer/Depth/12")
        if t2 and t12:
            print(f", PyTorch reference {100 * (t12['peak_rss_growth_bytes'] / t2['peak_rss_growth_bytes'] - 1):+.1f} %",
                  end="")
        print(", anchor +25.0 %.")

    print("\nPhases of the memory step (Loom): seconds and allocator peak GB above the footprint\n")
    print("| configuration | forward s | backward s | AdamW s | forward peak | backward peak | AdamW peak |")
    print("|" + "---|" * 7)
    for name in sorted(loom, key=lambda n: (n.split("/")[0], n.split("/")[1], int(n.split("/")[2]))):
        r = loom[name]
        print(f"| {name} | {fmt(r['fwd_s'], 3)} | {fmt(r['bwd_s'], 3)} | {fmt(r['opt_s'], 3)} | "
              f"{fmt(r['fwd_peak'] / GB, 3)} | {fmt(r['bwd_peak'] / GB, 3)} | {fmt(r['opt_peak'] / GB, 3)} |")

    if torch:
        print("\nPhases of the memory step (PyTorch reference): seconds\n")
        print("| configuration | forward s | backward s | AdamW s | footprint RSS GB |")
        print("|" + "---|" * 5)
        for name, t in torch.items():
            print(f"| {name} | {fmt(t.get('fwd_s'), 3)} | {fmt(t.get('bwd_s'), 3)} | {fmt(t.get('opt_s'), 3)} | "
                  f"{fmt(t.get('footprint_rss_bytes', 0) / GB, 3)} |")

    dense = sorted((n for n in loom if n.startswith("Dense/")), key=lambda n: int(n.split("/")[2]))
    if dense:
        print("\n| tokens | Dense (TransformerLm) s | Dense peak GB | Reformer s | Reformer peak GB |")
        print("|" + "---|" * 5)
        for name in dense:
            r = loom[name]
            ref = loom.get("Reformer/Length/" + name.split("/")[2])
            print(f"| {name.split('/')[2]} | {fmt(r['seconds'], 3)} | {fmt(r['peak_bytes'] / GB, 3)} | "
                  f"{fmt(ref['seconds'] if ref else None, 3)} | {fmt(ref['peak_bytes'] / GB if ref else None, 3)} |")

    longs = sorted((n for n in loom if n.startswith("Reformer/Long")), key=lambda n: int(n.split("/")[2]))
    if longs:
        print("\n| tokens | one step s | peak GB (allocator) | peak RSS growth GB | footprint GB | fits 16 GB |")
        print("|" + "---|" * 6)
        for name in longs:
            r = loom[name]
            total = (r["peak_rss"] + r.get("rss_before", 0)) / GB
            print(f"| {name.split('/')[2]} | {fmt(r['seconds'], 1)} | {fmt(r['peak_bytes'] / GB)} | "
                  f"{fmt(r['peak_rss'] / GB)} | {fmt(r.get('rss_before', 0) / GB)} | {'yes' if total <= 16 else 'no'} |")


if __name__ == "__main__":
    main()
