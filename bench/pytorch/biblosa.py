#!/usr/bin/env python3
"""The models of bench/bench_biblosa.cpp (issue 8) in PyTorch 1.13, written as the reference TF code computes them.

Three sentence encoders, each followed by the same pooling and classifier, one training step each, over sequence
lengths 64 .. 4096 at a fixed batch (shared/research/biblosa.md §5):
  x [B, n, d_e] random embeddings (no grad) -> encoder -> U [B, n, 2d] -> two-layer source2token(2d) -> s [B, 2d]
  -> dropout -> Linear(2d, 5) -> cross-entropy against random labels; a step is forward, loss, backward, Adam.
  biblosa    forward and backward mBloSA (spec 2.5, 2.6), block length r = ceil((2n)^1/3) (the library rule)
  disan      forward and backward DiSA (spec 2.3) over the whole sentence, concatenated
  multihead  dropout -> Linear(d_e, 2d) -> torch.nn.MultiheadAttention(2d, 8 heads, dropout 0.3): in training
             with dropout, torch 1.13 computes bmm, softmax, dropout, bmm and keeps the [B * 8, n, n] weights
ReLU, dropout 0.3 on every dense layer's input (spec P8), float32, no padding. The multi-dimensional attention is
tests/golden/blosa/make_blosa_golden.py's multi_dim_attention (imported): like the TF code it materialises the
[.., i, j, d] logits, masked logits, softmax and product, that is [B, m, r, r, d] tensors for the intra-block
attention and [B, n, n, d] for DiSA, so memory here grows like time (Loom's kernel stores no scores).

Method: each configuration runs in a fresh process. It builds the model and Adam, runs a warm-up step on 16
tokens (gradients and Adam's state: the model's footprint), collects garbage and calls malloc_trim(0), reads
VmRSS and resets the kernel's peak (VmHWM, /proc/self/clear_refs). The next full-length step (the memory step)
runs under torch.autograd.profiler with profile_memory=True: its allocation and free events, summed in order,
give the tensors' exact high-water mark above what was live before (peak_bytes: the same quantity as Loom's
allocator peak; torch's CPU allocator keeps no statistics of its own). peak_rss_growth_bytes = VmHWM - VmRSS is
the resident-set growth over that step (whole pages and malloc's slack included, as bench/pytorch/reformer_lm.py
reports). Then --repeats (default 3, 2 from 1024 tokens, 1 from 4096) timed steps without the profiler; seconds is
their mean. Lengths go up per encoder; a configuration whose peak, extrapolated from the two lengths before it
along their log-log slope, would exceed --limit-gb (default 12) is not run and is printed with "skipped".

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/biblosa.py --threads 2 > biblosa_torch.jsonl
    /usr/bin/python3 bench/pytorch/biblosa.py --check    # the encoders == the golden reference (dropout off)

Prints one JSON line per configuration, named as the Google Benchmark rows ("Encoder/disan/512").
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "golden", "blosa"))
import make_blosa_golden as golden  # noqa: E402  (the TF-shaped reference of Loom's golden tests)
from make_blosa_golden import multi_dim_attention, source2token  # noqa: E402

sys.path.insert(0, HERE)
from proc_memory import restart_peak_rss, status_bytes  # noqa: E402  (this script's directory)

# As bench/bench_biblosa.cpp.
BATCH, EMBED, HIDDEN, CLASSES, HEADS, WARMUP_LEN, DROPOUT = 4, 128, 128, 5, 8, 16, 0.3
ENCODERS = ("biblosa", "disan", "multihead")
LENGTHS = [64 << i for i in range(7)]  # 64 .. 4096


def drop(x, module):
    return F.dropout(x, DROPOUT, module.training)


class DiSA(nn.Module):
    """Spec 2.3: rep = relu(fc(drop(x))); keys and queries from one dropped copy of rep (one mask, as the TF
    code's two linears on one dropout); S = multi-dim attention over rep; gate G = sigmoid(gate_in(drop(rep)) +
    gate_attn(drop(S)) + o_bias); U = G rep + (1 - G) S (zeroed at padding keys' blocks when pad is given)."""

    def __init__(self, din, d, direction):
        super().__init__()
        self.d, self.direction = d, direction
        self.fc = nn.Linear(din, d)
        self.key_query = nn.Linear(d, 2 * d, bias=False)
        self.f_bias = nn.Parameter(torch.zeros(d))
        self.gate_in = nn.Linear(d, d)
        self.gate_attn = nn.Linear(d, d)
        self.o_bias = nn.Parameter(torch.zeros(d))

    def forward(self, x, pad=None):
        hm = torch.relu(self.fc(drop(x, self)))
        kq = self.key_query(drop(hm, self))
        k, q = kq[..., :self.d], kq[..., self.d:]
        s = multi_dim_attention(q, k, hm, self.f_bias, self.direction, pad, mask_queries=False)
        g = torch.sigmoid(self.gate_in(drop(hm, self)) + self.gate_attn(drop(s, self)) + self.o_bias)
        u = g * hm + (1 - g) * s
        if pad is not None:
            u = u * (~pad).to(u.dtype)[..., None]
        return u


class MBloSA(nn.Module):
    """One direction of spec §3 (the reference pseudo-code), with dropout; empty blocks masked in the inter-block
    DiSA as Loom does (there are none here: no padding, and the block-padded tail never fills a whole block)."""

    def __init__(self, din, d, direction):
        super().__init__()
        self.d, self.direction = d, direction
        self.fc = nn.Linear(din, d)
        self.key_query = nn.Linear(d, 2 * d, bias=False)
        self.f_bias = nn.Parameter(torch.zeros(d))
        self.block_summary = nn.Linear(d, d)  # the one-layer source2token (spec 2.4)
        self.inter_block = DiSA(d, d, direction)
        self.fusion = nn.Linear(3 * d, 2 * d)

    def forward(self, x):
        b, n, de = x.shape
        d = self.d
        r = math.ceil((2 * n) ** (1.0 / 3.0) - 1e-9)  # default_block_length: ceil(cbrt(2 n))
        m = math.ceil(n / r)
        xp = torch.cat([x, x.new_zeros(b, m * r - n, de)], 1).view(b, m, r, de)
        mk = (torch.arange(m * r) >= n).view(1, m, r).expand(b, m, r)  # true = block padding
        h0 = torch.relu(self.fc(drop(xp, self)))
        kq = self.key_query(drop(h0, self))
        k, q = kq[..., :d], kq[..., d:]
        h = multi_dim_attention(q, k, h0, self.f_bias, self.direction, mk, mask_queries=True)  # [B, m, r, r, d] inside
        v = source2token(self.block_summary(drop(h, self)), h, mk)
        e = self.inter_block(v, mk.all(-1))  # [B, m, m, d] inside
        z = self.fusion(drop(torch.cat([h0, h, e[:, :, None, :].expand(b, m, r, d)], -1), self))
        g = torch.sigmoid(z[..., d:])
        u = g * torch.relu(z[..., :d]) + (1 - g) * h0
        return u.reshape(b, m * r, d)[:, :n]


class Classifier(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.kind = encoder
        d = HIDDEN
        if encoder == "biblosa":
            self.fw, self.bw = MBloSA(EMBED, d, "forward"), MBloSA(EMBED, d, "backward")
        elif encoder == "disan":
            self.fw, self.bw = DiSA(EMBED, d, "forward"), DiSA(EMBED, d, "backward")
        else:
            self.project = nn.Linear(EMBED, 2 * d)
            self.attention = nn.MultiheadAttention(2 * d, HEADS, dropout=DROPOUT, batch_first=True)
        self.hidden = nn.Linear(2 * d, 2 * d)  # the sentence source2token's two layers (spec 2.4)
        self.score = nn.Linear(2 * d, 2 * d)
        self.classifier = nn.Linear(2 * d, CLASSES)

    def forward(self, x):
        if self.kind == "multihead":
            h = self.project(drop(x, self))
            u = self.attention(h, h, h, need_weights=False)[0]
        else:
            u = torch.cat([self.fw(x), self.bw(x)], -1)
        t = self.score(drop(torch.relu(self.hidden(drop(u, self))), self))
        s = source2token(t, u, None)
        return self.classifier(drop(s, self))


def step(model, opt, x, y, phases=None):
    t0 = time.perf_counter()
    with torch.autograd.profiler.record_function("bench::forward"):
        loss = F.cross_entropy(model(x), y)
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    with torch.autograd.profiler.record_function("bench::backward"):
        loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    if phases is not None:
        phases.update(fwd_s=t1 - t0, bwd_s=t2 - t1, opt_s=t3 - t2)
    return t3 - t0


def profiled_peaks(prof):
    """(peak, forward peak) bytes above the start: allocation events (+nbytes) and frees (-nbytes) in order."""
    events = sorted(prof.kineto_results.events(), key=lambda e: e.start_us())  # stable: ties keep their order
    live = peak = fwd_peak = 0
    in_forward = True
    for e in events:
        if e.name() == "bench::backward":
            in_forward = False
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU:
            live += e.nbytes()
            peak = max(peak, live)
            if in_forward:
                fwd_peak = max(fwd_peak, live)
    return peak, fwd_peak


def run_one(cfg, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Classifier(cfg["encoder"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = cfg["len"]
    warm_x, warm_y = torch.randn(BATCH, WARMUP_LEN, EMBED), torch.randint(0, CLASSES, (BATCH,))
    x, y = torch.randn(BATCH, n, EMBED), torch.randint(0, CLASSES, (BATCH,))
    step(model, opt, warm_x, warm_y)  # gradients and Adam state: the model's footprint
    before = restart_peak_rss()
    phases = {}
    with torch.autograd.profiler.profile(profile_memory=True) as prof:
        first = step(model, opt, x, y, phases)
    rss_growth = status_bytes("VmHWM") - before
    peak, fwd_peak = profiled_peaks(prof)
    del prof
    times = [step(model, opt, x, y) for _ in range(cfg["repeats"])]
    r = math.ceil((2 * n) ** (1.0 / 3.0) - 1e-9) if cfg["encoder"] == "biblosa" else 0
    return dict(cfg, torch=torch.__version__, threads=threads, batch=BATCH, d_e=EMBED, d=HIDDEN, block_len=r,
                parameters=sum(p.numel() for p in model.parameters()), peak_bytes=peak, fwd_peak=fwd_peak,
                peak_rss_growth_bytes=rss_growth, footprint_rss_bytes=before, memory_step_s=first, **phases,
                times_s=times, seconds=sum(times) / len(times) if times else first,
                tokens_per_s=BATCH * n / (sum(times) / len(times) if times else first))


def predicted_peak(done, n):
    """The next peak along the log-log slope of the last two lengths measured (slope at least 1)."""
    if len(done) < 2:
        return None
    (n1, p1), (n2, p2) = done[-2], done[-1]
    slope = max(1.0, math.log(p2 / p1) / math.log(n2 / n1)) if p1 > 0 and p2 > 0 else 2.0
    return p2 * (n / n2) ** slope


def check():
    """With dropout off, MBloSA and DiSA here equal tests/golden/blosa/make_blosa_golden.py's mblosa and disa
    (the functions Loom's golden tests are generated from) on the same parameters, in float64."""
    torch.manual_seed(3)
    worst = 0.0
    for n in (5, 9, 16):  # r = 3, 3, 4: a padded last block, a whole last block, m = 4
        for direction in ("forward", "backward"):
            for cls, ref in ((MBloSA, lambda x, p: golden.mblosa(x, torch.zeros(2, n, dtype=torch.bool), direction,
                                                                  math.ceil((2 * n) ** (1 / 3) - 1e-9), p, "", "relu")),
                             (DiSA, lambda x, p: golden.disa(x, None, direction, p, "", "relu"))):
                module = cls(6, 4, direction).double().eval()
                for t in module.parameters():  # nonzero biases, so every term is exercised
                    torch.nn.init.normal_(t, std=0.5)
                params = {k.replace("block_summary.", "block_summary.score."): v for k, v in module.state_dict().items()}
                x = torch.randn(2, n, 6, dtype=torch.float64)
                with torch.no_grad():
                    worst = max(worst, (module(x) - ref(x, params)).abs().max().item())
    print(json.dumps(dict(check="MBloSA and DiSA against make_blosa_golden.py", worst_abs_error=worst)))
    assert worst < 1e-12, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encoder", choices=ENCODERS, action="append", help="only these encoders (repeatable)")
    ap.add_argument("--max-len", type=int, default=4096, help="skip longer sequences (a quick check)")
    ap.add_argument("--repeats", type=int, help="timed steps per configuration (default: 3, 2 from 1024, 1 from 4096)")
    ap.add_argument("--limit-gb", type=float, default=12.0, help="skip configurations predicted above this peak")
    ap.add_argument("--check", action="store_true", help="compare the encoders with the golden reference, then exit")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a JSON config: run it in this process (internal)
    args = ap.parse_args()
    if args.check:
        check()
        return
    if args.one:
        print(json.dumps(run_one(json.loads(args.one), args.threads)))
        return
    limit = args.limit_gb * 1e9

    def cap_memory():  # a safety net under the prediction: the child fails rather than the machine swapping
        cap = int(limit + 8e9)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    for encoder in args.encoder or ENCODERS:
        done, stopped = [], None
        for n in LENGTHS:
            if n > args.max_len:
                continue
            name = f"Encoder/{encoder}/{n}"
            reps = args.repeats if args.repeats is not None else (3 if n < 1024 else 2 if n < 4096 else 1)
            cfg = dict(name=name, encoder=encoder, len=n, repeats=reps)
            pred = predicted_peak(done, n)
            if stopped:
                print(json.dumps(dict(cfg, skipped=f"not run: {stopped} was skipped or failed",
                                      predicted_peak_bytes=pred)), flush=True)
                continue
            if pred is not None and pred > limit:
                stopped = name
                print(json.dumps(dict(cfg, skipped=f"predicted peak above {args.limit_gb:g} GB",
                                      predicted_peak_bytes=pred)), flush=True)
                continue
            res = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one", json.dumps(cfg)],
                                 capture_output=True, text=True, preexec_fn=cap_memory)
            if res.returncode != 0:
                stopped = name
                tail = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
                print(json.dumps(dict(cfg, skipped=f"failed: {tail}", predicted_peak_bytes=pred)), flush=True)
                continue
            out = json.loads(res.stdout.strip().splitlines()[-1])
            done.append((n, out["peak_bytes"]))  # exact; the RSS growth of small steps is mostly noise
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
