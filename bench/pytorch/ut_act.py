#!/usr/bin/env python3
"""One training step of the Universal Transformer's encoder with ACT in PyTorch, the reference for
bench/bench_ut.cpp (issue 7).

The model is models::UniversalTransformer's encoder (T2T universal_transformer_tiny's width), written in plain
PyTorch 1.13 with parameter names equal to Loom's, so --check can load Loom's weights:
  - embedding E [256, 128] ~ N(0, 128^-1/2); input E[tokens] * sqrt(128), PAD rows zeroed; no dropout anywhere;
  - before every step t: X = H + timing_signal_1d(L, d) (T2T's, sin channels then cos channels) + learned step
    signal step_embedding[t] * sqrt(d) (table [8, 128] ~ N(0, 128^-1/2));
  - one weight-shared pre-norm block: X + MHA(LN(X)) (nn.MultiheadAttention, 4 heads, packed in-projection, key
    padding mask = PAD positions), then + fc2(ReLU(fc1(LN(.)))) with d_ff 512; LayerNorm eps 1e-6;
  - ACT: halting unit Linear(128, 1) with bias 1.0, p = sigmoid(halting(X)) from the state entering the step;
    epsilon 0.01, at most 8 steps; final LayerNorm on the accumulator;
  - loss: logits = enc E^T (the shared embedding as the output layer), cross-entropy against random targets in
    [2, 256), plus 0.01 x the ponder cost mean(N + R) (T2T's act_loss); Adam (lr 1e-3, torch defaults) over
    every parameter; batch 32 x length 64, random tokens in [2, 256).

Loops:
  t2t    tensor2tensor's universal_transformer_act, act_type "basic", line for line (shared/research/ut_act.md 2.2):
         while any((hp < 1 - eps) & (N < max_steps)), every position is computed at every iteration and halted
         ones keep transforming; the accumulator interpolates S = w Y + (1 - w) S. This is the issue's anchor
         (260 ms there): with one position still running, all 8 iterations run for every position.
  fixed  8 steps of the block, no halting unit (T2T recurrence_type "basic").
Halting: natural (the unit as initialised) or injected: position i (flattened b * L + l) gets p = 1 / k_i at
every step, k_i = 8 for every 16th position and floor((j+1) x) - floor(j x) for the others (x = (16 m - 8) / 15),
mean N exactly m; bench_ut.cpp injects the same table into Loom.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/ut_act.py --threads 2 > ut_torch.jsonl
    /usr/bin/python3 bench/pytorch/ut_act.py --check DUMP_DIR   # the same model as Loom's (see bench_ut.cpp)

Each configuration runs in a fresh process: one warm-up step (gradients and Adam state exist), one step timed
phase by phase with the peak resident-set growth over the footprint (VmHWM after /proc/self/clear_refs, whole
pages and allocator slack included), then the timed steps; seconds is their median. One JSON line each.
"""
import argparse
import json
import math
import os
import statistics
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from proc_memory import restart_peak_rss, run_in_fresh_process, status_bytes  # this script's directory

VOCAB, D, HEADS, D_FF, BATCH, LENGTH, MAX_STEPS = 256, 128, 4, 512, 32, 64, 8
EPSILON, PONDER_WEIGHT, HALTING_BIAS, LN_EPS, CAP_EVERY, FIRST_TOKEN = 0.01, 0.01, 1.0, 1e-6, 16, 2


def timing_signal_1d(length, channels, start=0.0):
    """T2T get_timing_signal_1d: [length, channels], sin over the first half of the channels, cos over the second."""
    half = channels // 2
    log_inc = math.log(1.0e4) / max(half - 1, 1)
    pos = torch.arange(length, dtype=torch.float64) + start
    inv = torch.exp(-torch.arange(half, dtype=torch.float64) * log_inc)
    a = pos[:, None] * inv[None, :]
    sig = torch.cat([torch.sin(a), torch.cos(a)], dim=1)
    if channels % 2:
        sig = F.pad(sig, (0, 1))
    return sig.float()


def injected_steps(ponder10, n):
    """Steps k_i per flattened position for a mean N of ponder10 / 10 (bench_ut.cpp's injected_steps)."""
    num = 16 * ponder10 - 80
    assert num > 0 and num % 10 == 0 and n % CAP_EVERY == 0, ponder10
    k, j = [], 0
    for i in range(n):
        if i % CAP_EVERY == 0:
            k.append(MAX_STEPS)
        else:
            k.append(((j + 1) * num // 10) // 15 - (j * num // 10) // 15)
            j += 1
        assert 1 <= k[-1] <= MAX_STEPS
    return k


class Transition(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, D_FF)
        self.fc2 = nn.Linear(D_FF, D)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class UTBlock(nn.Module):
    """Pre-norm encoder layer (ut_blocks.h): x + SelfAttn(LN(x)), then + Transition(LN(.))."""

    def __init__(self):
        super().__init__()
        self.ln_self = nn.LayerNorm(D, eps=LN_EPS)
        self.self_attn = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.ln_transition = nn.LayerNorm(D, eps=LN_EPS)
        self.transition = Transition()

    def forward(self, x, padding):
        h = self.ln_self(x)
        y = x + self.self_attn(h, h, h, key_padding_mask=padding, need_weights=False)[0]
        return y + self.transition(self.ln_transition(y))


class Encoder(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.block = UTBlock()
        self.ln = nn.LayerNorm(D, eps=LN_EPS)
        if act:
            self.halting = nn.Linear(D, 1)
            with torch.no_grad():
                self.halting.bias.fill_(HALTING_BIAS)
        self.step_embedding = nn.Parameter(torch.randn(MAX_STEPS, D) * D ** -0.5)


class UTEncoder(nn.Module):
    def __init__(self, loop, injected=None):
        super().__init__()
        self.loop = loop
        self.embedding = nn.Parameter(torch.randn(VOCAB, D) * D ** -0.5)
        self.encoder = Encoder(act=loop == "t2t")
        self.register_buffer("position", timing_signal_1d(LENGTH, D).view(1, LENGTH, D), persistent=False)
        self.injected = injected  # [B, L] probabilities, or None: the halting unit

    def step_input(self, h, t):
        return h + self.position + self.encoder.step_embedding[t] * math.sqrt(D)

    def halting_p(self, x):
        if self.injected is not None:
            return self.injected
        return torch.sigmoid(self.encoder.halting(x)).squeeze(-1)

    def forward(self, src):
        """Returns (LN(accumulator) [B, L, d], ponder cost, mean N, mean N + R, iterations)."""
        padding = src.eq(0)
        h = self.embedding[src] * math.sqrt(D) * (~padding).unsqueeze(-1).to(self.embedding.dtype)
        if self.loop == "fixed":
            for t in range(MAX_STEPS):
                h = self.encoder.block(self.step_input(h, t), padding)
            steps = torch.full(src.shape, float(MAX_STEPS))
            return self.encoder.ln(h), None, steps, steps, MAX_STEPS
        # tensor2tensor universal_transformer_act, act_type "basic" (ut_act.md 2.2), line for line.
        threshold = 1.0 - EPSILON
        hp = torch.zeros(src.shape)
        remainders = torch.zeros(src.shape)
        n_updates = torch.zeros(src.shape)
        previous = torch.zeros_like(h)
        step = 0
        while step < MAX_STEPS and bool(((hp < threshold) & (n_updates < MAX_STEPS)).any()):
            x = self.step_input(h, step)
            p = self.halting_p(x)
            still_running = (hp < 1.0).float()
            new_halted = (hp + p * still_running > threshold).float() * still_running
            still_running = (hp + p * still_running <= threshold).float() * still_running
            hp = hp + p * still_running
            remainders = remainders + new_halted * (1 - hp)
            hp = hp + new_halted * remainders
            n_updates = n_updates + still_running + new_halted
            w = (p * still_running + new_halted * remainders).unsqueeze(-1)
            y = self.encoder.block(x, padding)  # every position, halted or not
            previous = y * w + previous * (1 - w)
            h = y
            step += 1
        ponder_times = n_updates + remainders
        return self.encoder.ln(previous), ponder_times.mean(), n_updates, ponder_times, step


def make(cfg):
    torch.manual_seed(0)
    injected = None
    if cfg["ponder10"]:
        k = torch.tensor(injected_steps(cfg["ponder10"], BATCH * LENGTH), dtype=torch.float32)
        injected = (1.0 / k).view(BATCH, LENGTH)
    model = UTEncoder(cfg["loop"], injected)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, opt


def loss_of(model, src, tgt):
    enc, cost, n, times, iterations = model(src)
    loss = F.cross_entropy((enc @ model.embedding.t()).reshape(-1, VOCAB), tgt.reshape(-1))
    if cost is not None:
        loss = loss + PONDER_WEIGHT * cost
    stats = dict(ponder=n.mean().item(), ponder_time=times.mean().item(), iterations=iterations)
    return loss, stats


def step(model, opt, src, tgt, phases=None):
    t0 = time.perf_counter()
    loss, stats = loss_of(model, src, tgt)
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    if phases is not None:
        phases.update(fwd_ms=1e3 * (t1 - t0), bwd_ms=1e3 * (t2 - t1), opt_ms=1e3 * (t3 - t2), **stats)
    return t3 - t0


def run_one(cfg, threads):
    torch.set_num_threads(threads)
    model, opt = make(cfg)
    g = torch.Generator().manual_seed(1)
    src = torch.randint(FIRST_TOKEN, VOCAB, (BATCH, LENGTH), generator=g)
    tgt = torch.randint(FIRST_TOKEN, VOCAB, (BATCH, LENGTH), generator=g)
    step(model, opt, src, tgt)  # gradients and Adam state: the model's footprint
    before = restart_peak_rss()
    phases = {}
    step(model, opt, src, tgt, phases)
    out = dict(cfg, torch=torch.__version__, threads=threads, footprint_rss_bytes=before,
               peak_rss_growth_bytes=status_bytes("VmHWM") - before, **phases)
    times = [step(model, opt, src, tgt) for _ in range(cfg["repeats"])]
    out["times_s"] = times
    out["seconds"] = statistics.median(times)
    return out


def configs(repeats):
    yield dict(name="T2T/Natural", loop="t2t", ponder10=0, repeats=repeats)
    for m10 in (25, 45):
        yield dict(name=f"T2T/Injected/{m10 / 10}", loop="t2t", ponder10=m10, repeats=repeats)
    yield dict(name="Fixed/8", loop="fixed", ponder10=0, repeats=repeats)


# --check: bench_ut.cpp with LOOM_UT_DUMP=<dir> writes, per row, the initial weights, the tokens, and after one
# forward + backward the loss, ponder statistics and every gradient (<dir>/<row with / as _>.safetensors).
SAFETENSORS_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        lo, hi = h["data_offsets"]
        arr = np.frombuffer(data[lo:hi], dtype=SAFETENSORS_DTYPES[h["dtype"]]).reshape(h["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def check(directory):
    """Loads Loom's weights into this model and compares loss and gradients, for the rows whose loops agree."""
    worst_all = 0.0
    for cfg in configs(0):
        path = os.path.join(directory, cfg["name"].replace("/", "_") + ".safetensors")
        if not os.path.exists(path):
            print(json.dumps(dict(name=cfg["name"], check="skipped: no " + path)))
            continue
        t = load_safetensors(path)
        model, _ = make(cfg)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(t["param." + name])
        loss, stats = loss_of(model, t["src"], t["tgt"])
        loss.backward()
        errors = {"loss": abs(loss.item() - t["loss"].item()) / abs(t["loss"].item())}
        for name, p in params.items():
            key = "grad." + name
            if p.grad is None or key not in t:
                assert p.grad is None and key not in t, f"{cfg['name']}: gradient of {name} on one side only"
                continue
            errors[name] = ((p.grad - t[key]).abs().max() / t[key].abs().max().clamp(min=1e-12)).item()
        worst = max(errors.values())
        worst_all = max(worst_all, worst)
        print(json.dumps(dict(name=cfg["name"], loss=loss.item(), loom_loss=t["loss"].item(),
                              ponder=stats["ponder"], loom_ponder=t["ponder"].item(),
                              iterations=stats["iterations"], loom_iterations=int(t["iterations"].item()),
                              worst_relative_error=worst, worst_name=max(errors, key=errors.get))))
        assert stats["iterations"] == int(t["iterations"].item()), cfg["name"]
    assert worst_all < 1e-3, worst_all


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per configuration")
    ap.add_argument("--filter", default="", help="only configurations whose name contains this")
    ap.add_argument("--check", metavar="DUMP_DIR", help="compare with Loom's dumped step (see above), then exit")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a JSON config: run it in this process (internal)
    args = ap.parse_args()
    if args.check:
        torch.set_num_threads(args.threads)
        check(args.check)
        return
    if args.one:
        print(json.dumps(run_one(json.loads(args.one), args.threads)))
        return
    for cfg in configs(args.repeats):
        if args.filter not in cfg["name"]:
            continue
        run_in_fresh_process(__file__, args.threads, cfg)


if __name__ == "__main__":
    main()
