#!/usr/bin/env python3
"""PyTorch reference values for Loom's LSH attention (ops/lsh.h, ops/lsh_attention.h).

Regenerate from the repository root (CI never runs this; the output is committed):

    /usr/bin/python3 tests/golden/lsh/make_lsh_golden.py

Writes tests/golden/lsh/lsh_attention.safetensors. The reference below is written straight from
the Reformer paper and the HF transformers / current trax LSH attention mathematics, independently of the C++ code:
hash with h(x) = argmax([xR; -xR]) per bucket factor, padding to an extra last bucket, sort each round by
(bucket, position), chunks with a circular look-adjacent over the rounds laid end to end, keys RMS-normalised
(eps 1e-6) and divided by sqrt(d), logits minus 1e5 on the self position, minus log N_ij without duplicates,
then replaced by -1e9 where causal (key after query) or padded, softmax and logsumexp per chunk row, un-sort,
rounds combined by a softmax over the rounds' logsumexp. Gradients come from torch.autograd on sum(out * probe).

Per case <c> (all float64; metadata "<c>/config" holds the options, which tests/test_lsh_attention.cpp
rebuilds and compares):
  <c>/qk [B, H, L, d], <c>/v [B, H, L, dv], <c>/rotations [H, d, n_hashes, sum(f/2)], <c>/padding int64 [B, L]
  (1 = padding; all zeros when the case has none), <c>/buckets int64 [B, H, n_hashes, L], <c>/out [B, H, L, dv],
  <c>/probe like out, <c>/grad_qk, <c>/grad_v.
"""
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from make_golden import Gen, save_safetensors  # noqa: E402

COMMAND = "/usr/bin/python3 tests/golden/lsh/make_lsh_golden.py"
f64 = torch.float64

# name, B, H, L, d, dv, chunk_len, n_before, n_after, n_hashes, n_buckets, causal, allow_duplicates, padded
CASES = [
    ("basic", 2, 2, 32, 8, 8, 8, 1, 0, 1, [8], False, True, False),
    ("rounds_causal_factorised", 1, 3, 32, 6, 4, 8, 1, 0, 2, [4, 2], True, True, False),
    ("padded_three_rounds", 2, 1, 24, 5, 5, 4, 1, 1, 3, [8], False, True, True),
    ("no_duplicates_causal_padded", 2, 2, 16, 4, 3, 4, 2, 0, 2, [4], True, False, True),
]


def hash_buckets(qk, rotations, n_buckets):
    rot = torch.einsum("bhld,hdrk->bhrlk", qk, rotations)  # [B, H, nr, L, K]
    bucket, col, stride = 0, 0, 1
    for f in n_buckets:
        part = rot[..., col:col + f // 2]
        bucket = bucket + stride * torch.argmax(torch.cat([part, -part], -1), -1)
        col += f // 2
        stride *= f
    return bucket  # [B, H, nr, L]


def lsh_attention(qk, v, buckets, C, P, A, causal, allow_dup, pad):
    B, H, L, d = qk.shape
    nr = buckets.shape[2]
    N, n_ch = nr * L, nr * L // C
    pos = torch.arange(L)
    # Sort each round by (bucket, position); rounds end to end.
    spos = torch.argsort(buckets * L + pos, dim=-1).reshape(B, H, N)                   # original position of row
    slot = (spos.view(B, H, nr, L) + (torch.arange(nr) * L).view(nr, 1)).reshape(B, H, N)
    undo = torch.argsort(slot, dim=-1)                                                  # row of (r, t)
    sqk = qk.gather(2, spos[..., None].expand(B, H, N, d))
    sv = v.gather(2, spos[..., None].expand(B, H, N, v.shape[-1]))
    khat = sqk / torch.sqrt((sqk ** 2).mean(-1, keepdim=True) + 1e-6) / math.sqrt(d)

    def look_adjacent(x):  # [B, H, n_ch, C, ...] -> [B, H, n_ch, (P+1+A) C, ...], chunk c sees (c+i) mod n_ch
        return torch.cat([torch.roll(x, shifts=-i, dims=2) for i in range(-P, A + 1)], dim=3)

    q = sqk.view(B, H, n_ch, C, d)
    k = look_adjacent(khat.view(B, H, n_ch, C, d))
    vw = look_adjacent(sv.view(B, H, n_ch, C, -1))
    qpos = spos.view(B, H, n_ch, C, 1)
    kpos = look_adjacent(spos.view(B, H, n_ch, C)).unsqueeze(3)                       # [B, H, n_ch, 1, W]
    dots = q @ k.transpose(-1, -2)
    dots = dots - 1e5 * (qpos == kpos).to(dots.dtype)
    if not allow_dup:
        # N_ij: over the rounds of i and of j and the window offsets, how often j's chunk is i's chunk + offset.
        loc = (undo // C).view(B, H, nr, L)                                             # chunk of (r, t)
        li = torch.stack([loc[:, :, r].gather(2, spos) for r in range(nr)], -1).view(B, H, n_ch, C, 1, nr, 1)
        kp = kpos.reshape(B, H, -1)
        lj = torch.stack([loc[:, :, r].gather(2, kp) for r in range(nr)], -1).view(B, H, n_ch, 1, -1, 1, nr)
        count = sum(((li + i) % n_ch == lj).sum((-1, -2)) for i in range(-P, A + 1))
        dots = dots - torch.log(count.to(dots.dtype))
    masked = torch.zeros_like(dots, dtype=torch.bool)
    if causal:
        masked = masked | (kpos > qpos)
    if pad is not None:
        masked = masked | pad.gather(1, kpos.reshape(B, -1)).view(kpos.shape).bool()
    dots = torch.where(masked, torch.full_like(dots, -1e9), dots)
    lse = torch.logsumexp(dots, -1)
    so = (torch.softmax(dots, -1) @ vw).reshape(B, H, N, -1)
    o = so.gather(2, undo[..., None].expand_as(so)).view(B, H, nr, L, -1)
    l_u = lse.reshape(B, H, N).gather(2, undo).view(B, H, nr, L)
    w = torch.softmax(l_u, dim=2)
    return (o * w[..., None]).sum(2)


def main():
    torch.set_default_dtype(f64)
    tensors, meta = {}, {"torch_version": torch.__version__, "command": COMMAND}
    for (name, B, H, L, d, dv, C, P, A, nr, nb, causal, dup, padded) in CASES:
        g = Gen("lsh/" + name)
        qk = g.normal([B, H, L, d], f64).requires_grad_()
        v = g.normal([B, H, L, dv], f64).requires_grad_()
        rotations = g.normal([H, d, nr, sum(f // 2 for f in nb)], f64)
        pad = g.bools([B, L], 0.25) if padded else torch.zeros(B, L, dtype=torch.bool)
        buckets = hash_buckets(qk.detach(), rotations, nb)
        if padded:
            buckets = torch.where(pad[:, None, None, :], torch.full_like(buckets, math.prod(nb)), buckets)
        out = lsh_attention(qk, v, buckets, C, P, A, causal, dup, pad if padded else None)
        probe = g.normal(list(out.shape), f64)
        (out * probe).sum().backward()
        for key, t in [("qk", qk), ("v", v), ("rotations", rotations), ("padding", pad.to(torch.int64)),
                       ("buckets", buckets), ("out", out), ("probe", probe), ("grad_qk", qk.grad),
                       ("grad_v", v.grad)]:
            tensors[f"{name}/{key}"] = t.detach().contiguous()
        meta[f"{name}/config"] = json.dumps(dict(chunk_len=C, n_chunks_before=P, n_chunks_after=A, n_hashes=nr,
                                                 n_buckets=nb, causal=causal, allow_duplicate_attention=dup,
                                                 padded=padded))
    path = os.path.join(HERE, "lsh_attention.safetensors")
    save_safetensors(path, tensors, meta)
    print("wrote", path, len(tensors), "tensors")


if __name__ == "__main__":
    main()
