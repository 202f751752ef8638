#!/usr/bin/env python3
"""One training step of a Reformer language model in PyTorch, the reference for bench/bench_reformer.cpp (issue 6).

reformer-pytorch (lucidrains) cannot be installed here, so this is an independent implementation of the model its
ReformerLM builds with these arguments: num_tokens=256, dim=256, depth=N, heads=4 (dim_head 64), bucket_size=64,
n_hashes=2, causal=True, max_seq_len=L, and every other argument at its default. What that means:
  - token embedding + axial positions: two N(0, 1) tables [L / 64, 256] and [64, 256] broadcast over the grid
    (L / 64, 64) and SUMMED (reformer-pytorch's default axial shape (ceil(L / bucket_size), bucket_size));
  - x -> (x, x); N reversible blocks y1 = x1 + F(x2), y2 = x2 + G(y1), whose forward keeps nothing, whose
    backward recomputes each block from its outputs with the CPU RNG state saved before F and G restored
    (dropout masks and rotations are replayed), and the LSH buckets of each layer cached in the forward and reused
    in the backward (the hash is re-executed there, as reformer-pytorch does, and its result discarded);
  - F = LayerNorm -> LSH self-attention: one shared query/key projection and a value projection (no bias),
    4 heads of 64; rotations [64, n_hashes, n_buckets / 2] drawn per call and shared by every batch row and head,
    n_buckets = L / 64 (not factorised), buckets = argmax([xR, -xR]) offset per round; sort by (bucket,
    position); chunks of 64 (= bucket size) attending to themselves and the previous chunk (circularly); keys
    L2-normalised, logits scaled by 64^-1/2; causal logits set to -finfo.max, the self position to -5e4;
    each round's output and logsumexp unsorted and the rounds combined by a softmax over their logsumexps; an
    output projection with bias;
  - G = LayerNorm -> the sequence in 100 chunks (ff_chunks) -> Linear(256, 1024) -> GELU (erf) -> Linear(1024,
    256); no dropout anywhere (reformer-pytorch's defaults are 0);
  - the mean of the two streams -> LayerNorm(256) -> Linear(256, 256) logits; LayerNorm eps 1e-5 (PyTorch's).
A training step is forward, cross-entropy over all L positions, zero_grad(set_to_none), backward, AdamW.

Method: each configuration runs in a fresh process. It builds the model and AdamW, runs one warm-up step on 256
tokens (so gradients and AdamW's state exist: the model's own footprint), collects garbage and calls glibc's
malloc_trim(0) to hand freed heap pages back, reads VmRSS, resets the kernel's peak (VmHWM, via
/proc/self/clear_refs), runs one full-length step (the memory step, timed per phase) and reports VmHWM - VmRSS:
the peak resident-set growth over the footprint. That counts whole pages, the allocator's slack and anything
glibc keeps, so it is an upper bound on the tensors' own peak (Loom reports its allocator's exact tensor bytes
and the same RSS growth). The timed steps follow; time is their mean.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/reformer_lm.py --threads 2 > reformer_torch.jsonl
    /usr/bin/python3 bench/pytorch/reformer_lm.py --check     # reversible gradients == plain autograd's

Prints one JSON line per configuration.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from proc_memory import restart_peak_rss, run_in_fresh_process, status_bytes  # this script's directory

VOCAB, DIM, HEADS, DIM_HEAD, BUCKET, HASHES, FF_MULT, FF_CHUNKS = 256, 256, 4, 64, 64, 2, 4, 100
SELF_LOGIT = -5e4  # reformer-pytorch's TOKEN_SELF_ATTN_VALUE
WARMUP_LEN = 256


def previous_chunk_too(x):
    """[n, chunks, C, ...] -> [n, chunks, 2C, ...]: each chunk followed by the one before it (circularly)."""
    return torch.cat([x, x.roll(1, dims=1)], dim=2)


class LSHAttention(nn.Module):
    """Shared-QK LSH attention over [batch * heads, L, d]; the buckets of the last training forward are cached."""

    def __init__(self, causal=True):
        super().__init__()
        self.causal = causal
        self.cached_buckets = None

    def hash(self, qk, n_buckets):
        n, _, d = qk.shape
        rot = torch.randn(1, d, HASHES, n_buckets // 2, dtype=qk.dtype).expand(n, -1, -1, -1)
        proj = torch.einsum("nld,ndrk->nrlk", qk, rot)  # [n, rounds, L, nb / 2]
        buckets = torch.cat([proj, -proj], dim=-1).argmax(dim=-1)  # [n, rounds, L]
        buckets = buckets + (torch.arange(HASHES) * n_buckets).view(1, -1, 1)
        return buckets.reshape(n, -1)  # rounds laid end to end

    def forward(self, qk, v, replay=False):
        n, seq, d = qk.shape
        assert seq % (2 * BUCKET) == 0, f"length {seq} is not a multiple of 2 x bucket size"
        n_buckets = seq // BUCKET
        with torch.no_grad():
            fresh = self.hash(qk, n_buckets)  # re-executed on replay too (reformer-pytorch's reexecute=True)
            if replay:
                buckets = self.cached_buckets
            else:
                buckets = fresh
                if self.training:
                    self.cached_buckets = buckets
            del fresh
            ticker = torch.arange(HASHES * seq).unsqueeze(0).expand_as(buckets)
            order = (seq * buckets + ticker % seq).argsort(dim=-1)  # by (round, bucket, position)
            undo = order.argsort(dim=-1)
            pos = order % seq
        gather = pos.unsqueeze(-1).expand(-1, -1, d)
        sqk, sv = qk.gather(1, gather), v.gather(1, gather)
        chunks = HASHES * n_buckets
        q = sqk.view(n, chunks, -1, d)
        k = previous_chunk_too(F.normalize(q, p=2, dim=-1))
        vv = previous_chunk_too(sv.view(n, chunks, -1, d))
        qpos = pos.view(n, chunks, -1)
        kpos = previous_chunk_too(qpos)
        dots = torch.einsum("ncie,ncje->ncij", q, k) * d ** -0.5
        if self.causal:  # in place, as reformer-pytorch (the product's backward does not need its output)
            dots.masked_fill_(qpos.unsqueeze(-1) < kpos.unsqueeze(-2), -torch.finfo(dots.dtype).max)
        dots.masked_fill_(qpos.unsqueeze(-1) == kpos.unsqueeze(-2), SELF_LOGIT)
        lse = dots.logsumexp(dim=-1, keepdim=True)
        out = torch.einsum("ncij,ncje->ncie", torch.exp(dots - lse), vv).reshape(n, -1, d)
        out = out.gather(1, undo.unsqueeze(-1).expand(-1, -1, d)).view(n, HASHES, seq, d)
        lse = lse.reshape(n, -1).gather(1, undo).view(n, HASHES, seq, 1)
        return (out * torch.softmax(lse, dim=1)).sum(dim=1)


class LSHSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        inner = HEADS * DIM_HEAD
        self.to_qk = nn.Linear(DIM, inner, bias=False)
        self.to_v = nn.Linear(DIM, inner, bias=False)
        self.to_out = nn.Linear(inner, DIM)
        self.attn = LSHAttention()

    def forward(self, x, replay=False):
        b, t, _ = x.shape

        def heads_first(y):
            return y.view(b, t, HEADS, DIM_HEAD).transpose(1, 2).reshape(b * HEADS, t, DIM_HEAD)

        out = self.attn(heads_first(self.to_qk(x)), heads_first(self.to_v(x)), replay=replay)
        return self.to_out(out.view(b, HEADS, t, DIM_HEAD).transpose(1, 2).reshape(b, t, HEADS * DIM_HEAD))


class FeedForward(nn.Module):
    """LayerNorm, then Linear -> GELU -> Linear on the sequence split into FF_CHUNKS pieces."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(DIM)
        self.w1 = nn.Linear(DIM, DIM * FF_MULT)
        self.w2 = nn.Linear(DIM * FF_MULT, DIM)

    def forward(self, x, replay=False):
        pieces = self.norm(x).chunk(FF_CHUNKS, dim=-2)
        return torch.cat([self.w2(F.gelu(self.w1(p))) for p in pieces], dim=-2)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(DIM)
        self.lsh = LSHSelfAttention()

    def forward(self, x, replay=False):
        return self.lsh(self.norm(x), replay=replay)


class Replayed:
    """Runs a branch, saving the CPU RNG state first, or restoring the saved state (the recompute)."""

    def __init__(self, branch):
        self.branch = branch
        self.rng = None

    def __call__(self, x, replay):
        if not replay:
            self.rng = torch.get_rng_state()
            return self.branch(x, replay=False)
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng)
            return self.branch(x, replay=True)


class ReversibleStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, pairs):
        x1, x2 = x.chunk(2, dim=-1)
        with torch.no_grad():
            for f, g in pairs:
                x1 = x1 + f(x2, replay=False)
                x2 = x2 + g(x1, replay=False)
        ctx.pairs = pairs
        ctx.y1, ctx.y2 = x1.detach(), x2.detach()
        return torch.cat([x1, x2], dim=-1)

    @staticmethod
    def backward(ctx, dy):
        y1, y2 = ctx.y1, ctx.y2
        dy1, dy2 = [t.contiguous() for t in dy.chunk(2, dim=-1)]
        del ctx.y1, ctx.y2
        for f, g in reversed(ctx.pairs):
            with torch.enable_grad():
                y1 = y1.detach().requires_grad_()
                gy1 = g(y1, replay=True)
                torch.autograd.backward(gy1, dy2)
            with torch.no_grad():
                x2 = y2 - gy1
                dx1 = dy1 + y1.grad
                del y2, gy1, dy1
            with torch.enable_grad():
                x2 = x2.detach().requires_grad_()
                fx2 = f(x2, replay=True)
                torch.autograd.backward(fx2, dx1)
            with torch.no_grad():
                x1 = y1.detach() - fx2
                dx2 = dy2 + x2.grad
                del fx2
            y1, y2, dy1, dy2 = x1, x2.detach(), dx1, dx2
        return torch.cat([dy1, dy2], dim=-1), None


class ReformerLM(nn.Module):
    def __init__(self, seq_len, depth, reversible=True):
        super().__init__()
        self.token = nn.Embedding(VOCAB, DIM)
        rows = math.ceil(seq_len / BUCKET)
        self.pos_rows = nn.Parameter(torch.randn(rows, 1, DIM))
        self.pos_cols = nn.Parameter(torch.randn(1, BUCKET, DIM))
        self.attns = nn.ModuleList(Attention() for _ in range(depth))
        self.ffs = nn.ModuleList(FeedForward() for _ in range(depth))
        self.pairs = [(Replayed(a), Replayed(f)) for a, f in zip(self.attns, self.ffs)]
        self.reversible = reversible
        self.norm = nn.LayerNorm(DIM)
        self.out = nn.Linear(DIM, VOCAB)

    def forward(self, tokens):
        t = tokens.shape[1]
        pos = (self.pos_rows + self.pos_cols).reshape(-1, DIM)[:t]
        x = self.token(tokens) + pos
        x = torch.cat([x, x], dim=-1)
        if self.reversible:
            x = ReversibleStack.apply(x, self.pairs)
        else:  # the same blocks on the ordinary tape (for --check)
            x1, x2 = x.chunk(2, dim=-1)
            for f, g in self.pairs:
                x1 = x1 + f(x2, replay=False)
                x2 = x2 + g(x1, replay=False)
            x = torch.cat([x1, x2], dim=-1)
        x = torch.stack(x.chunk(2, dim=-1)).mean(dim=0)
        return self.out(self.norm(x))


def make(cfg):
    torch.manual_seed(0)
    model = ReformerLM(cfg["len"], cfg["layers"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    return model, opt


def step(model, opt, x, y, phases=None):
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    if phases is not None:
        phases.update(fwd_s=t1 - t0, bwd_s=t2 - t1, opt_s=t3 - t2)
    return t3 - t0


def run_one(cfg, threads):
    torch.set_num_threads(threads)
    model, opt = make(cfg)
    g = torch.Generator().manual_seed(1)
    warm = [torch.randint(0, VOCAB, (1, WARMUP_LEN), generator=g) for _ in range(2)]
    x, y = (torch.randint(0, VOCAB, (1, cfg["len"]), generator=g) for _ in range(2))
    step(model, opt, *warm)  # gradients and AdamW state: the model's footprint
    before = restart_peak_rss()
    phases = {}
    first = step(model, opt, x, y, phases)
    out = dict(cfg, torch=torch.__version__, threads=threads, footprint_rss_bytes=before,
               peak_rss_growth_bytes=status_bytes("VmHWM") - before, memory_step_s=first, **phases)
    times = [step(model, opt, x, y) for _ in range(cfg["repeats"])]
    out["times_s"] = times
    out["seconds"] = sum(times) / len(times) if times else first  # the mean, as Google Benchmark reports
    return out


def configs():
    for n, reps in ((1024, 5), (4096, 5), (16384, 3), (65536, 2)):
        yield dict(name=f"Reformer/Length/{n}", len=n, layers=6, repeats=reps)
    for depth in (2, 4, 6, 8, 12):
        yield dict(name=f"Reformer/Depth/{depth}", len=4096, layers=depth, repeats=3)


def check():
    """Reversible backward against plain autograd on the same blocks (same seed, so same rotations)."""
    torch.set_num_threads(2)
    model, _ = make(dict(len=512, layers=3))
    x, y = (torch.randint(0, VOCAB, (1, 512), generator=torch.Generator().manual_seed(i)) for i in (1, 2))
    grads = []
    for reversible in (True, False):
        model.reversible = reversible
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1)).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    worst = max(((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item() for a, b in zip(*grads))
    print(json.dumps(dict(check="reversible vs plain gradients", worst_relative_error=worst)))
    assert worst < 1e-4, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=65536, help="skip longer sequences (a quick check)")
    ap.add_argument("--filter", default="", help="only configurations whose name contains this")
    ap.add_argument("--repeats", type=int, help="timed steps per configuration (default: 5 / 3 / 2 by length)")
    ap.add_argument("--check", action="store_true", help="compare reversible and plain gradients, then exit")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a JSON config: run it in this process (internal)
    args = ap.parse_args()
    if args.check:
        check()
        return
    if args.one:
        print(json.dumps(run_one(json.loads(args.one), args.threads)))
        return
    for cfg in configs():
        if cfg["len"] > args.max_len or args.filter not in cfg["name"]:
            continue
        if args.repeats is not None:
            cfg["repeats"] = args.repeats
        run_in_fresh_process(__file__, args.threads, cfg)


if __name__ == "__main__":
    main()
