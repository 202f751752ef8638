#!/usr/bin/env python3
"""Issue 8's efficiency table: Bi-BloSA against DiSAN and multi-head attention, peak training memory and step
time over sequence length, with log-log slopes; Markdown for docs/performance.md on stdout and an SVG plot.

From one sitting's runs (repository root, a build with -DLOOM_BUILD_BENCH=ON in build-c):

    build-c/bench/bench_biblosa --benchmark_out=biblosa.json --benchmark_out_format=json
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/biblosa.py --threads 2 > biblosa_torch.jsonl
    python3 bench/biblosa_report.py biblosa.json biblosa_torch.jsonl [--svg docs/models/biblosa_efficiency.svg]

or let it run both first:  python3 bench/biblosa_report.py --run build-c  (writes biblosa.json and
biblosa_torch.jsonl in the current directory, then reports). The PyTorch file is optional.

Slopes are least-squares fits of log(value) against log(n): over the upper half of the lengths measured (the
asymptotic regime; the lower half is dominated by the O(n d^2) dense layers) and over all of them. Memory is the
tensors' peak above the model's footprint (Loom: its allocator; PyTorch: the profiler's allocation events, the
same quantity); time is seconds per training step. MB = 10^6 bytes. Standard library only (no matplotlib).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys

ENCODERS = [("biblosa", "Bi-BloSA"), ("disan", "DiSAN"), ("multihead", "multi-head")]
COLOURS = {"biblosa": "#1b9e77", "disan": "#d95f02", "multihead": "#7570b3"}
MB = 1e6
HERE = os.path.dirname(os.path.abspath(__file__))


def load_loom(path):
    """{(encoder, n): {"seconds", "peak", "rss", "block_len", ...}} from a Google Benchmark JSON file."""
    rows = {}
    with open(path) as f:
        data = json.load(f)
    for b in data["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration" or "error_occurred" in b:
            continue
        m = re.match(r"Encoder/(\w+)/(\d+)", b["name"])
        if m:
            rows[(m.group(1), int(m.group(2)))] = dict(b, seconds=b["step_s"], peak=b["peak_bytes"], rss=b["peak_rss"])
    return rows, data.get("context", {})


def load_torch(path):
    """The same from bench/pytorch/biblosa.py's JSON lines; skipped configurations are kept with their reason."""
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            key = (r["encoder"], r["len"])
            if "skipped" in r:
                rows[key] = dict(r, seconds=None, peak=None, rss=None)
            else:
                rows[key] = dict(r, peak=r["peak_bytes"], rss=r["peak_rss_growth_bytes"])
    return rows


def fit(points):
    """Least-squares slope of log y on log x; None below two points."""
    pts = [(math.log(x), math.log(y)) for x, y in points if y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def slopes(rows, encoder, field):
    """(upper-half slope, all-lengths slope, number of lengths) of one encoder's field."""
    pts = sorted((n, r[field]) for (e, n), r in rows.items() if e == encoder and r.get(field))
    upper = pts[len(pts) // 2:] if len(pts) >= 4 else pts
    return fit(upper), fit(pts), len(pts)


def fmt(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}"


def fmt_ms(s):
    if s is None:
        return ""
    ms = 1e3 * s
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"


def fmt_mb(b):
    if b is None:
        return ""
    mb = b / MB
    return f"{mb:.0f}" if mb >= 100 else f"{mb:.1f}"


def markdown(loom, torch, lengths, context, svg_rel):
    b, de, d = (context.get(k, "?") for k in ("batch", "d_e", "d"))
    out = [f"One training step (forward, cross-entropy, backward, Adam) of a sentence classifier: random embeddings "
           f"[B = {b}, n, d_e = {de}] that require no grad -> encoder (output 2d = {2 * d if d != '?' else '?'}) -> "
           f"two-layer source2token -> Linear(2d, 5); ReLU, dropout 0.3 on every dense layer's input, float32, "
           f"no padding, 2 threads. Bi-BloSA: `nn::BiBlockSelfAttention(d_e, d)` with r = ceil((2n)^1/3); DiSAN: "
           f"forward and backward `nn::DirectionalSelfAttention(d_e, d)`; multi-head: Linear(d_e, 2d) -> "
           f"`nn::MultiheadAttention(2d, 8)` with attention dropout (its explicit [B, 8, n, n] path). PyTorch "
           f"(`bench/pytorch/biblosa.py`): the same models written as the TF reference computes them, the "
           f"[B, m, r, r, d] and [B, n, n, d] score tensors materialised. Memory: tensor bytes above the model's "
           f"footprint at their peak (Loom's allocator; PyTorch's profiler events). Slopes: least-squares fit of "
           f"log value on log n over the upper half of the lengths measured, and over all of them.\n",
           f"![peak memory and step time against sequence length]({svg_rel})\n"]
    head = "| encoder | run | " + " | ".join(str(n) for n in lengths) + \
        " | time slope (upper half / all) | memory slope (upper half / all) |"
    out.append("Each cell: milliseconds per training step / peak MB above the model's footprint (MB = 10^6 bytes).\n")
    out.append(head)
    out.append("|" + "---|" * (len(lengths) + 4))
    for enc, label in ENCODERS:
        for run, rows in (("Loom", loom), ("PyTorch (TF-style)", torch)):
            if not any(e == enc for e, _ in rows):
                continue
            cells = []
            for n in lengths:
                r = rows.get((enc, n))
                if r is None:
                    cells.append("")
                elif r.get("skipped"):
                    pred = r.get("predicted_peak_bytes")
                    cells.append(f"skipped (~{pred / 1e9:.0f} GB)" if pred else "skipped")
                else:
                    cells.append(f"{fmt_ms(r['seconds'])} / {fmt_mb(r['peak'])}")
            tu, ta, _ = slopes(rows, enc, "seconds")
            mu, ma, _ = slopes(rows, enc, "peak")
            out.append(f"| {label} | {run} | " + " | ".join(cells) + f" | {fmt(tu)} / {fmt(ta)} | {fmt(mu)} / {fmt(ma)} |")
    blocks = [str(int(loom[("biblosa", n)]["block_len"])) if ("biblosa", n) in loom else "" for n in lengths]
    out.append("| Bi-BloSA block length r | | " + " | ".join(blocks) + " | | |")

    # The paper's comparison as ratios: how much more each baseline costs than Bi-BloSA.
    out.append("\nRatios to Bi-BloSA (time / memory; above 1: Bi-BloSA cheaper):\n")
    out.append("| baseline | run | " + " | ".join(str(n) for n in lengths) + " |")
    out.append("|" + "---|" * (len(lengths) + 2))
    for enc, label in ENCODERS[1:]:
        for run, rows in (("Loom", loom), ("PyTorch (TF-style)", torch)):
            cells = []
            for n in lengths:
                a, b = rows.get((enc, n)), rows.get(("biblosa", n))
                if a and b and a.get("seconds") and b.get("seconds") and a.get("peak") and b.get("peak"):
                    cells.append(f"{a['seconds'] / b['seconds']:.2f} / {a['peak'] / b['peak']:.2f}")
                else:
                    cells.append("")
            if any(cells):
                out.append(f"| {label} | {run} | " + " | ".join(cells) + " |")

    # Both memory measures side by side: the allocator's (or profiler's) exact tensor bytes and the RSS growth.
    out.append("\nPeak MB, tensors (Loom allocator / PyTorch profiler) and resident-set growth (VmHWM):\n")
    out.append("| encoder | n | Loom tensors | Loom RSS | PyTorch tensors | PyTorch RSS |")
    out.append("|---|---|---|---|---|---|")
    for enc, label in ENCODERS:
        for n in lengths:
            a, b = loom.get((enc, n), {}), torch.get((enc, n), {})
            if a or b:
                out.append(f"| {label} | {n} | {fmt_mb(a.get('peak'))} | {fmt_mb(a.get('rss'))} | "
                           f"{fmt_mb(b.get('peak'))} | {fmt_mb(b.get('rss'))} |")
    return "\n".join(out)


# ---- SVG ------------------------------------------------------------------------------------------------------

def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def panel(x0, y0, w, h, title, unit, series, lengths):
    """One log-log panel of height h (plot and axes) and its legend below it. series: [(label, colour, dashed,
    [(n, value)])]."""
    values = [v for _, _, _, pts in series for _, v in pts]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    xl, xh = math.log2(lengths[0]), math.log2(lengths[-1])
    left, right, top, bottom = 62, 24, 28, 40
    pw, ph = w - left - right, h - top - bottom

    def px(n):
        return x0 + left + (math.log2(n) - xl) / max(xh - xl, 1e-9) * pw

    def py(v):
        return y0 + top + (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))) * ph

    s = [f'<text x="{x0 + left + pw / 2:.1f}" y="{y0 + 18}" text-anchor="middle" font-size="14" '
         f'font-weight="bold">{esc(title)}</text>',
         f'<rect x="{x0 + left}" y="{y0 + top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>']
    decade = lo
    while decade <= hi * 1.0001:
        y = py(decade)
        s.append(f'<line x1="{x0 + left}" y1="{y:.1f}" x2="{x0 + left + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{x0 + left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{decade:g}</text>')
        decade *= 10
    for n in lengths:
        x = px(n)
        s.append(f'<line x1="{x:.1f}" y1="{y0 + top}" x2="{x:.1f}" y2="{y0 + top + ph}" stroke="#eee"/>')
        s.append(f'<text x="{x:.1f}" y="{y0 + top + ph + 15}" text-anchor="middle" font-size="11">{n}</text>')
    s.append(f'<text x="{x0 + left + pw / 2:.1f}" y="{y0 + h - 6}" text-anchor="middle" font-size="12">'
             f'sequence length n (log scale)</text>')
    s.append(f'<text x="{x0 + 14}" y="{y0 + top + ph / 2:.1f}" text-anchor="middle" font-size="12" '
             f'transform="rotate(-90 {x0 + 14} {y0 + top + ph / 2:.1f})">{esc(unit)}</text>')
    for i, (label, colour, dashed, pts) in enumerate(series):
        pts = sorted(pts)
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(n):.1f},{py(v):.1f}" for j, (n, v) in enumerate(pts))
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        s.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for n, v in pts:
            if dashed:
                s.append(f'<rect x="{px(n) - 3:.1f}" y="{py(v) - 3:.1f}" width="6" height="6" fill="white" '
                         f'stroke="{colour}"/>')
            else:
                s.append(f'<circle cx="{px(n):.1f}" cy="{py(v):.1f}" r="3" fill="{colour}"/>')
        # Legend under the panel: Loom entries in the left column, PyTorch in the right.
        row = sum(1 for other in series[:i] if other[2] == dashed)
        lx = x0 + left + (pw / 2 if dashed else 0)
        ly = y0 + h + 14 + 16 * row
        s.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"{dash}/>')
        s.append(f'<text x="{lx + 28}" y="{ly}" font-size="11">{esc(label)}</text>')
    return s


def svg(loom, torch, lengths, context):
    w, plot_h, legend_h = 1000, 380, 60
    h = plot_h + legend_h + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'font-family="sans-serif">', f'<rect width="{w}" height="{h}" fill="white"/>']
    for i, (field, title, unit, scale) in enumerate([("peak", "Peak training memory", "MB above the footprint", MB),
                                                     ("seconds", "Training step time", "seconds per step", 1.0)]):
        series = []
        for enc, label in ENCODERS:
            for run, rows, dashed in (("Loom", loom, False), ("PyTorch", torch, True)):
                pts = [(n, r[field] / scale) for (e, n), r in rows.items() if e == enc and r.get(field)]
                if pts:
                    up, _, _ = slopes(rows, enc, field)
                    series.append((f"{label}, {run} (slope {fmt(up)})", COLOURS[enc], dashed, pts))
        if series:
            parts += panel(i * w / 2, 0, w / 2, plot_h, title, unit, series, lengths)
    notes = [f"B = {context.get('batch', '?')}, d_e = {context.get('d_e', '?')}, d = {context.get('d', '?')}, "
             "float32, dropout 0.3, one training step (forward, cross-entropy, backward, Adam), 2 threads.",
             "Solid: Loom. Dashed: PyTorch 1.13 written as the TF reference (score tensors materialised). "
             "Slopes: least-squares log-log fit over the upper half of the lengths."]
    for j, note in enumerate(notes):
        parts.append(f'<text x="{w / 2}" y="{h - 24 + 14 * j}" text-anchor="middle" font-size="11" '
                     f'fill="#333">{esc(note)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def run_both(build):
    bench = os.path.join(build, "bench", "bench_biblosa")
    subprocess.run([bench, "--benchmark_out=biblosa.json", "--benchmark_out_format=json"], check=True)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    with open("biblosa_torch.jsonl", "w") as f:
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "pytorch", "biblosa.py"), "--threads", "2"],
                       stdout=f, env=env, check=True)
    return "biblosa.json", "biblosa_torch.jsonl"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("loom_json", nargs="?")
    ap.add_argument("torch_jsonl", nargs="?")
    ap.add_argument("--run", metavar="BUILD_DIR", help="run bench_biblosa and bench/pytorch/biblosa.py first")
    ap.add_argument("--svg", default=os.path.join(HERE, "..", "docs", "models", "biblosa_efficiency.svg"))
    args = ap.parse_args()
    if args.run:
        args.loom_json, args.torch_jsonl = run_both(args.run)
    if not args.loom_json:
        sys.exit(__doc__)
    loom, ctx = load_loom(args.loom_json)
    torch = load_torch(args.torch_jsonl) if args.torch_jsonl else {}
    lengths = sorted({n for _, n in loom} | {n for _, n in torch})
    any_row = next(iter(loom.values()), {})
    context = {k: int(any_row[k]) for k in ("batch", "d_e", "d") if k in any_row}
    docs = os.path.join(HERE, "..", "docs")
    print(markdown(loom, torch, lengths, context, os.path.relpath(os.path.abspath(args.svg), os.path.abspath(docs))))
    with open(args.svg, "w") as f:
        f.write(svg(loom, torch, lengths, context))
    print(f"\n(plot written to {os.path.relpath(args.svg)}; Loom run: {ctx.get('date', '?')}, "
          f"{ctx.get('num_cpus', '?')} CPUs)")


if __name__ == "__main__":
    main()
