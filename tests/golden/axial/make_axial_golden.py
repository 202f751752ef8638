#!/usr/bin/env python3
"""PyTorch reference values for Loom's nn::AxialPositionEmbedding (Reformer's factorised position table).

Regenerate from the repository root (CI never runs this; the output is committed):

    /usr/bin/python3 tests/golden/axial/make_axial_golden.py

Writes tests/golden/axial/axial.safetensors (a subdirectory, so the op golden loader, which reads
tests/golden/*.safetensors, does not take it for op cases). tests/test_axial_golden.cpp reads it.

The embedding is written out twice, independently of Loom's code, and the two must agree bit for bit:
  - Hugging Face's AxialPositionEmbeddings (transformers/models/reformer/modeling_reformer.py), eval path: axis k's
    weight has shape (1, .., n_k, .., 1, d_k) (n_k at position k of the axial shape), is expanded to
    (B, n_1, .., n_K, d_k), reshaped to (B, prod n, d_k); the K tables are concatenated along the width and the
    rows at position_ids = arange(L) are taken with index_select (HF's training path demands L == prod n; Loom
    accepts any L <= prod n, which is what the eval path computes);
  - trax's AxialPositionalEncoding: each weight broadcast to (B,) + shape + (d_k,), concatenated along the last
    axis, reshaped to (B, prod n, d) and added to x as x + emb[:, :L].
Weights are stored in Loom's layout, [n_k, d_k] per axis (Loom's parameter k, named "<k>"), and reshaped to HF's
here. Values are float64 throughout (the C++ test also checks float32 against them).

Per case:
  <case>/shape, <case>/dims   int64 [K]: the axial shape (n_1 .. n_K) and the widths (d_1 .. d_K)
  <case>/weight/<k>           float64 [n_k, d_k]
  <case>/x                    float64 [B, L, d]          (L < prod n in the "short" cases)
  <case>/emb                  float64 [L, d]             forward(L)
  <case>/probe_emb            float64 [L, d]             weights of the scalar sum(emb * probe_emb)
  <case>/grad_emb/<k>         float64 [n_k, d_k]         its gradient w.r.t. weight k
  <case>/out                  float64 [B, L, d]          forward(x) = x + emb
  <case>/probe                float64 [B, L, d]          weights of the scalar sum(out * probe)
  <case>/grad/x, grad/<k>     its gradients w.r.t. x and weight k
"""
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from make_golden import Gen, save_safetensors  # noqa: E402

COMMAND = "/usr/bin/python3 tests/golden/axial/make_axial_golden.py"
f64 = torch.float64


def hf_weights(weights, shape):
    """Loom's [n_k, d_k] tables as HF's parameters: axis k's weight of shape (1, .., n_k, .., 1, d_k)."""
    out = []
    for axis, w in enumerate(weights):
        ax_shape = [1] * len(shape)
        ax_shape[axis] = shape[axis]
        out.append(w.reshape(tuple(ax_shape) + (w.shape[-1],)))
    return out


def hf_axial(weights, shape, batch, length):
    """HF AxialPositionEmbeddings.forward (eval branch) for position_ids = arange(length): [B, L, d]."""
    position_ids = torch.arange(length).repeat(batch, 1)
    broadcasted = [w.expand((batch,) + tuple(shape) + w.shape[-1:]) for w in hf_weights(weights, shape)]
    encodings = torch.cat([torch.reshape(w, (batch, -1, w.shape[-1])) for w in broadcasted], dim=-1)
    return torch.cat([torch.index_select(encodings[i], 0, position_ids[i]).unsqueeze(0) for i in range(batch)], dim=0)


def trax_axial_add(x, weights, shape):
    """trax AxialPositionalEncoding.forward: x + the concatenated, broadcast tables' first L rows."""
    batch, length, d = x.shape
    embs = [torch.broadcast_to(w, (batch,) + tuple(shape) + w.shape[-1:]) for w in hf_weights(weights, shape)]
    emb = torch.reshape(torch.cat(embs, dim=-1), (batch, -1, d))
    return x + emb[:, :length, :]


def case(tensors, name, shape, dims, batch, length):
    assert len(shape) == len(dims) and 1 <= length <= math.prod(shape)
    g = Gen(name)
    d = sum(dims)
    weights = [g.normal((n, dk), dtype=f64) for n, dk in zip(shape, dims)]
    x = g.normal((batch, length, d), dtype=f64)
    probe_emb = g.normal((length, d), dtype=f64)
    probe = g.normal((batch, length, d), dtype=f64)

    # forward(L): HF's embedding of batch 1, and its weight gradients.
    w1 = [w.clone().requires_grad_(True) for w in weights]
    emb = hf_axial(w1, shape, 1, length)[0]
    (emb * probe_emb).sum().backward()

    # forward(x) = x + emb: trax's form, and its gradients; checked against HF's embedding added to x.
    w2 = [w.clone().requires_grad_(True) for w in weights]
    xg = x.clone().requires_grad_(True)
    out = trax_axial_add(xg, w2, shape)
    (out * probe).sum().backward()
    with torch.no_grad():
        assert torch.equal(out, x + hf_axial(weights, shape, batch, length)), name
        assert torch.equal(emb, hf_axial(weights, shape, batch, length)[batch - 1]), name

    tensors.update({f"{name}/shape": torch.tensor(shape, dtype=torch.int64),
                    f"{name}/dims": torch.tensor(dims, dtype=torch.int64), f"{name}/x": x,
                    f"{name}/emb": emb.detach(), f"{name}/probe_emb": probe_emb, f"{name}/out": out.detach(),
                    f"{name}/probe": probe, f"{name}/grad/x": xg.grad})
    for k, w in enumerate(weights):
        tensors[f"{name}/weight/{k}"] = w
        tensors[f"{name}/grad_emb/{k}"] = w1[k].grad
        tensors[f"{name}/grad/{k}"] = w2[k].grad


CASES = [
    # name, axial shape, widths, batch, length
    ("two_axes_full", (3, 4), (2, 5), 2, 12),
    ("two_axes_short", (4, 8), (3, 5), 3, 27),  # ends mid-row: the last row of axis 0 is reached by 3 positions
    ("two_axes_one_row", (5, 6), (4, 2), 2, 4),  # L < n_2: only row 0 of axis 0 gets a gradient
    ("three_axes_full", (2, 3, 4), (2, 3, 4), 2, 24),
    ("three_axes_short", (3, 2, 5), (1, 4, 3), 2, 17),
]


def main():
    torch.use_deterministic_algorithms(True)
    tensors = {}
    for name, shape, dims, batch, length in CASES:
        case(tensors, name, shape, dims, batch, length)
    path = os.path.join(HERE, "axial.safetensors")
    meta = {"torch_version": torch.__version__, "generator": "tests/golden/axial/make_axial_golden.py",
            "command": COMMAND, "family": "axial_position_embedding",
            "cases": " ".join(name for name, *_ in CASES)}
    save_safetensors(path, tensors, meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
