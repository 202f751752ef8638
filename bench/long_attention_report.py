#!/usr/bin/env python3
"""Tables for docs/performance.md from one run of bench_long_attention (JSON) and, optionally, the JSON lines of
bench/pytorch/long_attention.py: time per step and peak bytes per configuration and length, the log-log slope
of peak memory from 4K to 64K tokens (1 = linear, 2 = quadratic), and Loom's speed over PyTorch's.

    build/bench/bench_long_attention --benchmark_format=json > long.json
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/long_attention.py --memory > long_torch.jsonl
    python3 bench/long_attention_report.py long.json [long_torch.jsonl]

Needs only the Python standard library.
"""
import json
import math
import re
import sys
from collections import defaultdict


def config_key(impl, backward, chunk=None, rounds=None):
    """A configuration's row label, the same for Loom's and PyTorch's runs."""
    name = {"Dense/fused": "dense (fused)", "Dense/unfused": "dense (unfused)", "dense": "dense (unfused)",
            "LSH": "LSH", "lsh": "LSH", "Local": "local", "local": "local",
            "BlockSelfAttn": "Bi-BloSA"}[impl]
    if name == "LSH":
        name += f" C={chunk} r={rounds}"
    if name == "local":
        name += " C=128"
    return name, "fwd+bwd" if backward else "fwd"


def read_loom(path):
    """{(config, pass): {len: (seconds, peak_bytes)}} from Google Benchmark's JSON."""
    runs = defaultdict(dict)
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        name = b["name"]
        m = re.match(r"(Dense/fused|Dense/unfused|LSH|Local|BlockSelfAttn)/(forward_backward|forward)/(.*)", name)
        if not m:
            continue
        impl, pass_, rest = m.groups()
        args = dict(re.findall(r"(len|chunk|rounds):(\d+)", rest))
        length = int(args["len"]) if "len" in args else int(rest.split("/")[0])
        key = config_key(impl, pass_ == "forward_backward", args.get("chunk"), args.get("rounds"))
        seconds = b["real_time"] * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
        runs[key][length] = (seconds, b.get("peak_bytes"))
    return runs


def read_torch(path):
    runs = defaultdict(dict)
    for line in open(path):
        if not line.strip().startswith("{"):
            continue
        r = json.loads(line)
        key = config_key(r["impl"], r["backward"], r.get("chunk"), r.get("rounds"))
        runs[key][r["len"]] = (r["seconds"], r.get("peak_rss_growth_bytes"))
    return runs


def slope(points, lo=4096, hi=65536):
    if lo in points and hi in points and points[lo][1] and points[hi][1]:
        return math.log(points[hi][1] / points[lo][1]) / math.log(hi / lo)
    return None


def fmt_len(n):
    return f"{n // 1024}K"


def main():
    loom = read_loom(sys.argv[1])
    torch = read_torch(sys.argv[2]) if len(sys.argv) > 2 else {}
    lengths = sorted({n for pts in loom.values() for n in pts})
    head = "| attention | pass | " + " | ".join(fmt_len(n) for n in lengths) + " | memory slope 4K→64K |"
    rule = "|" + "---|" * (len(lengths) + 3)
    print("Loom: milliseconds per step / peak MB (allocator high-water mark above the inputs)\n")
    print(head)
    print(rule)
    for key in sorted(loom):
        pts = loom[key]
        cells = []
        for n in lengths:
            if n in pts:
                s, peak = pts[n]
                cells.append(f"{s * 1e3:.1f} / {peak / 2**20:.1f}" if peak is not None else f"{s * 1e3:.1f}")
            else:
                cells.append("")
        sl = slope(pts)
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {sl:.2f} |" if sl else
              f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " | |")
    print("\nLoom's fused dense attention time / Loom's LSH attention time (above 1: LSH is faster)\n")
    print("| attention | pass | " + " | ".join(fmt_len(n) for n in lengths) + " |")
    print("|" + "---|" * (len(lengths) + 2))
    for key in sorted(loom):
        dense = loom.get(("dense (fused)", key[1]), {})
        if not key[0].startswith("LSH"):
            continue
        cells = [f"{dense[n][0] / loom[key][n][0]:.2f}" if n in dense and n in loom[key] else "" for n in lengths]
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    if torch:
        print("\nPyTorch time / Loom time (above 1: Loom is faster), same configuration and lengths\n")
        print("| attention | pass | " + " | ".join(fmt_len(n) for n in lengths) + " |")
        print("|" + "---|" * (len(lengths) + 2))
        for key in sorted(torch):
            ref = loom.get(key)
            if not ref:
                continue
            cells = [f"{torch[key][n][0] / ref[n][0]:.2f}" if n in torch[key] and n in ref else "" for n in lengths]
            print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
        print("\nPyTorch: peak resident-set growth (MB) and its slope 4K→64K\n")
        print("| attention | pass | " + " | ".join(fmt_len(n) for n in lengths) + " | slope |")
        print("|" + "---|" * (len(lengths) + 3))
        for key in sorted(torch):
            pts = torch[key]
            cells = [f"{pts[n][1] / 2**20:.0f}" if n in pts and pts[n][1] is not None else "" for n in lengths]
            sl = slope(pts)
            print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + (f" | {sl:.2f} |" if sl else " | |"))


if __name__ == "__main__":
    main()
