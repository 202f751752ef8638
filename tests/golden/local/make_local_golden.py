#!/usr/bin/env python3
"""PyTorch reference values for Loom's local (chunked) attention: the op local_attention and nn::LocalSelfAttention.

Regenerate from the repository root (CI never runs this; the output is committed):

    /usr/bin/python3 tests/golden/local/make_local_golden.py

Writes tests/golden/local/local_attention.safetensors (a subdirectory, so the op golden loader, which reads
tests/golden/*.safetensors, does not take it for op cases). tests/test_local_attention.cpp reads it.

The attention is Hugging Face's LocalSelfAttention (transformers modeling_reformer.py) written out in torch:
chunks of chunk_len in the original order, keys divided by sqrt(head_dim), _look_adjacent (circular concat of
the n_chunks_before previous and n_chunks_after next chunks), the mask from original positions (causal:
query index >= key index; padding: key not padded), masked logits REPLACED by -1e9, logsumexp, exp, @ values;
L <= chunk_len is plain attention (do_standard_self_attention). No dropout. Every case has
n_chunks >= n_chunks_before + 1 + n_chunks_after (HF double counts a chunk the window lists twice; Loom counts it
once, tested against a dense reference instead) and no query whose window is all padding (HF gives uniform
weights there, Loom zeros).

Per case:
  <case>/config           int64 [chunk_len, n_chunks_before, n_chunks_after, causal]
  <case>/q, k, v          float32 [B, H, L, d]              (op cases)
  <case>/x, <param names> float32                            (module cases: query.weight, key.weight, ...)
  <case>/dims             int64 [d_model, num_heads, head_dim] (module cases)
  <case>/padding_mask     bool [B, L], true = padding (optional)
  <case>/probe            the weights of the scalar sum(out * probe) whose gradients are stored
  <case>/out, grad_q, grad_k, grad_v (op) or out, grad/x, grad/<param> (module)
References are computed in float64 from the float32 inputs and rounded once.
"""
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from make_golden import Gen, save_safetensors  # noqa: E402

COMMAND = "/usr/bin/python3 tests/golden/local/make_local_golden.py"
f32, f64 = torch.float32, torch.float64


def look_adjacent(vectors, before, after):
    """HF ReformerAttention._look_adjacent on [B, H, n_chunks, C, ...]."""
    if before == 0 and after == 0:
        return vectors
    slices = []
    for i in range(-before, after + 1):
        if i == 0:
            slices.append(vectors)
        else:
            slices.append(torch.cat([vectors[:, :, i:, ...], vectors[:, :, :i, ...]], dim=2))
    return torch.cat(slices, dim=3)


def split_chunks(x, chunk):
    """[B, H, L, ...] -> [B, H, L / chunk, chunk, ...]."""
    b, h, l = x.shape[:3]
    return x.reshape(b, h, l // chunk, chunk, *x.shape[3:])


def hf_local_attention(q, k, v, chunk, before, after, causal, padding_mask):
    """q, k, v [B, H, L, d]; padding_mask bool [B, L] (true = padding) or None. Returns [B, H, L, dv]."""
    b, h, l, d = q.shape
    k = k / math.sqrt(d)
    indices = torch.arange(l).repeat(b, h, 1)
    standard = l <= chunk
    if not standard:
        assert l % chunk == 0 and l // chunk >= before + 1 + after
        q, k, v = split_chunks(q, chunk), split_chunks(k, chunk), split_chunks(v, chunk)
        k, v = look_adjacent(k, before, after), look_adjacent(v, before, after)
        q_idx = split_chunks(indices, chunk)
        k_idx = look_adjacent(q_idx, before, after)
    else:
        q_idx = k_idx = indices
    dots = torch.matmul(q, k.transpose(-1, -2))
    mask = torch.ones_like(dots, dtype=torch.bool)
    if padding_mask is not None:
        keep = (~padding_mask).to(torch.long)[:, None, :].expand(b, h, l)
        if not standard:
            keep = look_adjacent(split_chunks(keep, chunk), before, after)
        mask = mask & keep[..., None, :].to(torch.bool)
    if causal:
        mask = mask & torch.ge(q_idx.unsqueeze(-1), k_idx.unsqueeze(-2))
    dots = torch.where(mask, dots, torch.tensor(-1e9, dtype=dots.dtype))
    probs = torch.exp(dots - torch.logsumexp(dots, dim=-1, keepdim=True))
    out = torch.matmul(probs, v)
    return out.reshape(b, h, l, v.shape[-1]) if not standard else out


def rounded(t):
    return t.detach().to(f32).contiguous()


def config(chunk, before, after, causal):
    return torch.tensor([chunk, before, after, int(causal)], dtype=torch.int64)


def padding_mask(tensors, name, b, l, padded):
    """The bool [B, L] mask with the (batch, position) pairs in `padded` set, stored as <name>/padding_mask;
    None (nothing stored) when padded is None."""
    if padded is None:
        return None
    pad = torch.zeros(b, l, dtype=torch.bool)
    for bi, p in padded:
        pad[bi, p] = True
    tensors[f"{name}/padding_mask"] = pad
    return pad


def op_case(tensors, name, b, h, l, d, dv, chunk, before, after, causal, padded=None):
    g = Gen(name)
    q, k, v = g.normal((b, h, l, d)), g.normal((b, h, l, d)), g.normal((b, h, l, dv))
    probe = g.normal((b, h, l, dv))
    pad = padding_mask(tensors, name, b, l, padded)
    q64, k64, v64 = (t.to(f64).requires_grad_(True) for t in (q, k, v))
    out = hf_local_attention(q64, k64, v64, chunk, before, after, causal, pad)
    (out * probe.to(f64)).sum().backward()
    tensors.update({f"{name}/config": config(chunk, before, after, causal), f"{name}/q": q, f"{name}/k": k,
                    f"{name}/v": v, f"{name}/probe": probe, f"{name}/out": rounded(out),
                    f"{name}/grad_q": rounded(q64.grad), f"{name}/grad_k": rounded(k64.grad),
                    f"{name}/grad_v": rounded(v64.grad)})


def module_case(tensors, name, b, l, d_model, heads, head_dim, chunk, before, after, causal, padded=None):
    """HF LocalSelfAttention (+ ReformerSelfOutput's dense, no dropout): Linear q, k, v, out without bias."""
    g = Gen(name)
    all_head = heads * head_dim
    params = {"query.weight": g.normal((all_head, d_model), scale=0.5),
              "key.weight": g.normal((all_head, d_model), scale=0.5),
              "value.weight": g.normal((all_head, d_model), scale=0.5),
              "output.weight": g.normal((d_model, all_head), scale=0.5)}
    x = g.normal((b, l, d_model))
    probe = g.normal((b, l, d_model))
    pad = padding_mask(tensors, name, b, l, padded)
    p64 = {n: t.to(f64).requires_grad_(True) for n, t in params.items()}
    x64 = x.to(f64).requires_grad_(True)

    def heads_of(w):
        return (x64 @ w.t()).view(b, l, heads, head_dim).transpose(1, 2)

    a = hf_local_attention(heads_of(p64["query.weight"]), heads_of(p64["key.weight"]), heads_of(p64["value.weight"]),
                           chunk, before, after, causal, pad)
    out = a.transpose(1, 2).reshape(b, l, all_head) @ p64["output.weight"].t()
    (out * probe.to(f64)).sum().backward()
    tensors.update({f"{name}/config": config(chunk, before, after, causal),
                    f"{name}/dims": torch.tensor([d_model, heads, head_dim], dtype=torch.int64),
                    f"{name}/x": x, f"{name}/probe": probe, f"{name}/out": rounded(out),
                    f"{name}/grad/x": rounded(x64.grad)})
    for n, t in params.items():
        tensors[f"{name}/{n}"] = t
        tensors[f"{name}/grad/{n}"] = rounded(p64[n].grad)


def main():
    torch.use_deterministic_algorithms(True)
    tensors = {}
    suffix = [(1, 13), (1, 14), (1, 15), (0, 2)]
    op_case(tensors, "op_noncausal_padded", 2, 2, 16, 4, 3, 4, 1, 1, False, suffix)
    op_case(tensors, "op_causal", 2, 3, 12, 5, 5, 4, 1, 0, True)
    op_case(tensors, "op_causal_p2_padded", 2, 2, 24, 4, 4, 4, 2, 0, True, [(0, 22), (0, 23), (1, 5)])
    op_case(tensors, "op_after_only", 1, 2, 16, 4, 4, 4, 0, 2, False)
    op_case(tensors, "op_short", 2, 2, 6, 4, 4, 8, 1, 0, False, [(1, 5)])
    module_case(tensors, "module_causal", 2, 16, 8, 2, 4, 4, 1, 0, True)
    module_case(tensors, "module_noncausal_padded", 2, 12, 6, 3, 2, 4, 1, 1, False, [(1, 10), (1, 11)])
    out_dir = HERE
    path = os.path.join(out_dir, "local_attention.safetensors")
    meta = {"torch_version": torch.__version__, "generator": "tests/golden/local/make_local_golden.py",
            "command": COMMAND, "family": "local_attention"}
    save_safetensors(path, tensors, meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
