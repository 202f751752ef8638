#!/usr/bin/env python3
"""The configurations of bench/bench_long_attention.cpp in PyTorch, for docs/performance.md.

One example, 2 heads of 64, float32, non-causal; forward alone and forward + backward (the gradient of
sum(out * probe) with respect to q, k and v). PyTorch 1.13 (Debian's python3-torch) has no fused attention, so:
  dense   matmul, softmax, matmul (what torch.nn.MultiheadAttention does), up to 8K tokens
  lsh     LSH attention as Hugging Face's ReformerAttention computes it (shared QK, random rotations per head,
          trax's bucket count 2 L / C factorised above 128 as Loom's default, argsort by (round, bucket,
          position), chunks with one chunk of look-back, self-mask -1e5, rounds combined by their logsumexp),
          batched over chunks with autograd for the backward
  local   chunked attention with one chunk of look-back (HF LocalSelfAttention), chunk 128
Time is the median of --repeats runs after one warm-up. Peak memory (--memory) is measured in a fresh process per
configuration: after a warm-up step the kernel's peak resident set (VmHWM) is reset, and the peak's growth over
the resident set during one more step is reported. It counts whole pages and the allocator's slack, unlike
Loom's allocator statistics, so compare growth with length rather than bytes one to one.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/long_attention.py --threads 2 [--memory]

Prints one JSON line per configuration.
"""
import argparse
import json
import math
import subprocess
import sys
import time

import torch

from proc_memory import status_bytes  # this script's directory

HEADS, HEAD_DIM = 2, 64


def dense(q, k, v, _cfg):
    scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)
    return scores.softmax(-1) @ v


def look_one_back(x):
    """[B, H, n_ch, C, ...] -> [B, H, n_ch, 2C, ...]: the previous chunk (circularly) then the chunk itself."""
    return torch.cat([torch.roll(x, 1, dims=2), x], dim=3)


def local(q, k, v, cfg):
    b, h, n, d = q.shape
    c = cfg["chunk"]
    qc = q.view(b, h, n // c, c, d)
    kc = look_one_back(k.view(b, h, n // c, c, d))
    vc = look_one_back(v.view(b, h, n // c, c, d))
    scores = (qc / math.sqrt(d)) @ kc.transpose(-2, -1)
    return (scores.softmax(-1) @ vc).view(b, h, n, d)


def default_buckets(n, c):
    """trax's rule, as Loom's lsh_default_buckets: 2 L / C buckets, factorised above 128."""
    nb = 2 * max(1, n // c)
    if nb <= 128:
        return [nb]
    f1 = 1
    while f1 * f1 < nb:
        f1 *= 2
    return [f1, 2 * (nb // (2 * f1))]


def lsh(qk, _k, v, cfg):
    b, h, n, d = qk.shape
    c, rounds = cfg["chunk"], cfg["rounds"]
    factors = default_buckets(n, c)
    n_buckets = math.prod(factors)
    with torch.no_grad():
        rot = torch.randn(h, d, rounds, sum(f // 2 for f in factors), generator=torch.Generator().manual_seed(1))
        proj = torch.einsum("bhnd,hdrk->bhrnk", qk, rot)
        buckets, scale, col = torch.zeros(b, h, rounds, n, dtype=torch.long), 1, 0
        for f in factors:  # bucket = b1 + f1 b2 + ...
            p = proj[..., col:col + f // 2]
            buckets += scale * torch.cat([p, -p], -1).argmax(-1)
            scale, col = scale * f, col + f // 2
        buckets = buckets + (torch.arange(rounds) * n_buckets).view(1, 1, rounds, 1)
        keys = buckets.view(b, h, rounds * n) * n + torch.arange(rounds * n) % n
        sticker = keys.argsort(-1)
        undo = sticker.argsort(-1)
        st = sticker % n
    sq = qk.gather(2, st.unsqueeze(-1).expand(-1, -1, -1, d))
    sv = v.gather(2, st.unsqueeze(-1).expand(-1, -1, -1, d))
    n_ch = rounds * n // c
    sq = sq.view(b, h, n_ch, c, d)
    sk = sq / torch.sqrt((sq * sq).mean(-1, keepdim=True) + 1e-6) / math.sqrt(d)
    kk = look_one_back(sk)
    vv = look_one_back(sv.view(b, h, n_ch, c, d))
    qpos = st.view(b, h, n_ch, c)
    kpos = look_one_back(qpos)
    dots = sq @ kk.transpose(-2, -1)
    dots = torch.where(qpos.unsqueeze(-1) == kpos.unsqueeze(-2), torch.tensor(-1e5), dots)
    lse = dots.logsumexp(-1, keepdim=True)
    so = (torch.exp(dots - lse) @ vv).view(b, h, rounds * n, d)
    slse = lse.view(b, h, rounds * n)
    o = so.gather(2, undo.unsqueeze(-1).expand(-1, -1, -1, d)).view(b, h, rounds, n, d)
    lse_u = slse.gather(2, undo).view(b, h, rounds, n, 1)
    w = torch.exp(lse_u - lse_u.logsumexp(2, keepdim=True))
    return (w * o).sum(2)


IMPLS = {"dense": dense, "local": local, "lsh": lsh}


def configs():
    for backward in (False, True):
        for n in [1024 << i for i in range(4)]:
            yield dict(impl="dense", len=n, backward=backward)
        for c in (64, 128):
            for r in (1, 2, 4):
                for n in [1024 << i for i in range(7)]:
                    yield dict(impl="lsh", len=n, chunk=c, rounds=r, backward=backward)
        for n in [1024 << i for i in range(7)]:
            yield dict(impl="local", len=n, chunk=128, backward=backward)


def make_step(cfg):
    torch.manual_seed(0)
    n = cfg["len"]
    q, k, v, probe = (torch.randn(1, HEADS, n, HEAD_DIM) for _ in range(4))
    leaves = [q, k, v]
    for t in leaves:
        t.requires_grad_(cfg["backward"])
    fn = IMPLS[cfg["impl"]]

    def step():
        for t in leaves:
            t.grad = None
        if cfg["backward"]:
            (fn(q, k, v, cfg) * probe).sum().backward()
        else:
            with torch.no_grad():
                fn(q, k, v, cfg)

    return step


def measure_time(cfg, repeats):
    step = make_step(cfg)
    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure_memory(cfg):
    step = make_step(cfg)
    step()  # warm up, as the timing does; then restart the peak (VmHWM) from the current resident set
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_bytes("VmRSS")
    step()
    return max(0, status_bytes("VmHWM") - before)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--memory", action="store_true", help="also measure peak RSS growth, one process each")
    ap.add_argument("--max-len", type=int, default=65536, help="skip longer sequences (a quick check)")
    ap.add_argument("--min-len", type=int, default=0, help="skip shorter sequences")
    ap.add_argument("--impl", choices=sorted(IMPLS), help="only this attention")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a JSON config: print its peak memory (internal)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(measure_memory(json.loads(args.one)))
        return
    for cfg in configs():
        if not args.min_len <= cfg["len"] <= args.max_len or args.impl not in (None, cfg["impl"]):
            continue
        out = dict(cfg, torch=torch.__version__, threads=args.threads)
        # Quadratic configurations past 4K take seconds a step: fewer repeats.
        out["seconds"] = measure_time(cfg, args.repeats if cfg["len"] <= 4096 or cfg["impl"] != "dense" else 2)
        if args.memory:
            res = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one", json.dumps(cfg)],
                                 capture_output=True, text=True, check=True)
            out["peak_rss_growth_bytes"] = int(res.stdout.strip())
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
