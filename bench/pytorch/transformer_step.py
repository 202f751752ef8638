#!/usr/bin/env python3
"""One training step of the baseline Transformer language model in PyTorch, for docs/performance.md.

The same configuration as bench/bench_transformer_step.cpp: byte vocabulary (256), d_model 256, 4 pre-norm
blocks with 4 heads and a GELU MLP of 1024, learned positions, causal attention, sequence 512, batch 8, no
dropout, AdamW. A step is forward, loss, backward and the optimizer update.

--impl encoder (the default) builds the blocks from torch.nn.TransformerEncoderLayer(norm_first=True), PyTorch's
own fused-where-possible implementation and the faster of the two here; --impl manual spells the block out
(packed QKV, masked_fill, softmax), as Loom's nn::TransformerBlock does.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/transformer_step.py --threads 2

OMP_WAIT_POLICY=PASSIVE keeps OpenMP workers from spinning between ops, which is PyTorch at its best on this
machine; without it the workers fight OpenBLAS's threads. Prints one JSON line.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = self.qkv(h).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class LM(nn.Module):
    def __init__(self, vocab, d, layers, heads, seq, impl):
        super().__init__()
        self.impl = impl
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        if impl == "manual":
            self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
            self.register_buffer("mask", torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1))
        else:
            layer = nn.TransformerEncoderLayer(d, heads, 4 * d, 0.0, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, layers)
            self.register_buffer("mask", torch.triu(torch.full((seq, seq), float("-inf")), 1))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t))
        if self.impl == "manual":
            for blk in self.blocks:
                x = blk(x, self.mask[:t, :t])
        else:
            x = self.blocks(x, mask=self.mask[:t, :t])
        return self.head(self.ln_f(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--impl", choices=["encoder", "manual"], default="encoder")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab, d, layers, heads, seq, batch = 256, 256, 4, 4, 512, 8
    model = LM(vocab, d, layers, heads, seq, args.impl)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    x = torch.randint(0, vocab, (batch, seq))
    y = torch.randint(0, vocab, (batch, seq))
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x).view(-1, vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"framework": "pytorch", "impl": args.impl, "torch": torch.__version__, "threads": args.threads,
                      "median_s": times[len(times) // 2], "min_s": times[0], "steps": args.steps}))


if __name__ == "__main__":
    main()
