#!/usr/bin/env python3
"""PyTorch reference values for Loom's whole sentence classifiers (models/biblosa/text_classifier.h): token ids ->
embedding -> encoder (Bi-BloSA, DiSAN or the multi-head baseline) -> two-layer source2token -> the
single-sentence or the sentence-pair head, logits and every parameter's gradient.

Regenerate from the repository root (CI never runs this; the output is committed):

    /usr/bin/python3 tests/golden/biblosa_model/make_biblosa_model_golden.py

Writes tests/golden/biblosa_model/biblosa_model.safetensors. The encoders' layers (DiSA, mBloSA, source2token)
come from tests/golden/blosa/make_blosa_golden.py, the spec-derived reference the layer tests already use. What
this script adds is written from the reference TF code (taoshen58/BiBloSA):
  * the multi-head baseline (context_fusion/self_attn.py multi_head_attention): input plus the interleaved
    sin/cos positions with exponent 2 f / d_e, zeroed at padding, W [3, heads, d_e, head_dim] without bias,
    scores / sqrt(head_dim), key and query masks added as -1e30 (exp_mask), softmax, heads concatenated;
  * the heads (spec 2.7): single sentence p = act(s W1 + b1), logits = p W2 (no bias); pair
    z = [s1; s2; s1 - s2; s1 * s2], p = act(z W1 + b1), the highway (Bi-BloSAN and multi-head; not DiSAN),
    logits = q Wo + bo.
Dropout is off (the C++ test runs the model in eval mode).

Each case stores "ids" (and "ids2" for pairs), "padding" ("padding2"), the parameters under the C++ model's
state_dict names ([out, in] Linear layout), "probe" (loss = sum(logits * probe)), "output" (the logits) and
"grad/<param>" for every parameter. Metadata: per case the configuration the C++ test builds ("<case>" ->
"encoder=biblosa activation=relu ..."), torch_version and the command.
"""
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.dirname(HERE)
sys.path.insert(0, GOLDEN)
sys.path.insert(0, os.path.join(GOLDEN, "blosa"))
from make_golden import Gen, save_safetensors  # noqa: E402
from make_blosa_golden import act, disa, disa_shapes, linear, mblosa, mblosa_shapes, padding_for, s2t  # noqa: E402

COMMAND = "/usr/bin/python3 tests/golden/biblosa_model/make_biblosa_model_golden.py"
f64 = torch.float64


def positions(n, dim):
    """self_attn.py's positional_encoding: feature f even sin(t / 10000^(2f/dim)), odd cos(t / 10000^(2(f-1)/dim))."""
    t = torch.arange(n, dtype=f64)[:, None]
    f = torch.arange(dim)[None, :]
    even = (f - f % 2).to(f64)
    angle = t / torch.pow(torch.tensor(1e4, dtype=f64), 2.0 * even / dim)
    return torch.where(f % 2 == 0, torch.sin(angle), torch.cos(angle))


def multi_head(x, pad, w):
    """self_attn.py multi_head_attention, dropout off. w [3, heads, d_e, head_dim]."""
    b, n, de = x.shape
    heads, hd = w.shape[1], w.shape[3]
    valid = (~pad).to(f64)
    rep = (x + positions(n, de)) * valid[..., None]
    maps = torch.einsum("bnd,khde->khbne", rep, w)  # [3, heads, B, n, hd]
    q, k, v = maps[0], maps[1], maps[2]
    sim = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [heads, B, n, n]
    mask = valid[None, :, None, :] * valid[None, :, :, None]
    prob = torch.softmax(sim + (1 - mask) * (-1e30), dim=-1)
    out = prob @ v  # [heads, B, n, hd]
    return out.permute(1, 2, 0, 3).reshape(b, n, heads * hd)


def encode(ids, pad, params, c):
    x = params["embedding.weight"][ids]
    if c["encoder"] == "biblosa":
        u = torch.cat([mblosa(x, pad, "forward", c["block_len"], params, "encoder.fw.", c["activation"]),
                       mblosa(x, pad, "backward", c["block_len"], params, "encoder.bw.", c["activation"])], -1)
    elif c["encoder"] == "disan":
        u = torch.cat([disa(x, pad, "forward", params, "encoder.fw.", c["activation"]),
                       disa(x, pad, "backward", params, "encoder.bw.", c["activation"])], -1)
    else:
        u = multi_head(x, pad, params["encoder.weight"])
    return s2t(u, pad, params, "pooling.", 2, c["activation"])


def single_head(s, params, c):
    p = act(linear(s, params, "head.hidden"), c["activation"])
    return linear(p, params, "head.logits")


def pair_head(s1, s2, params, c):
    z = torch.cat([s1, s2, s1 - s2, s1 * s2], -1)
    p = act(linear(z, params, "head.hidden"), c["activation"])
    if "head.highway_gate.weight" in params:
        t = act(linear(p, params, "head.highway_transform"), c["activation"])
        g = torch.sigmoid(linear(p, params, "head.highway_gate"))
        p = g * t + (1 - g) * p
    return linear(p, params, "head.logits")


def shapes_for(c):
    v, de, d, classes = c["vocab"], c["embed_dim"], c["hidden_dim"], c["classes"]
    shapes = {"embedding.weight": (v, de)}
    if c["encoder"] == "biblosa":
        shapes.update(mblosa_shapes("encoder.fw.", de, d))
        shapes.update(mblosa_shapes("encoder.bw.", de, d))
    elif c["encoder"] == "disan":
        shapes.update(disa_shapes("encoder.fw.", de, d))
        shapes.update(disa_shapes("encoder.bw.", de, d))
    else:
        shapes["encoder.weight"] = (3, c["heads"], de, 2 * d // c["heads"])
    shapes.update({"pooling.hidden.weight": (2 * d, 2 * d), "pooling.hidden.bias": (2 * d,),
                   "pooling.score.weight": (2 * d, 2 * d), "pooling.score.bias": (2 * d,)})
    if c["pair"]:
        shapes.update({"head.hidden.weight": (d, 8 * d), "head.hidden.bias": (d,)})
        if c["encoder"] != "disan":
            shapes.update({"head.highway_transform.weight": (d, d), "head.highway_transform.bias": (d,),
                           "head.highway_gate.weight": (d, d), "head.highway_gate.bias": (d,)})
        shapes.update({"head.logits.weight": (classes, d), "head.logits.bias": (classes,)})
    else:
        shapes.update({"head.hidden.weight": (d, 2 * d), "head.hidden.bias": (d,),
                       "head.logits.weight": (classes, d)})
    return shapes


def make_params(g, shapes):
    """Weights ~ N(0, (1.2 / sqrt(fan_in))^2), biases N(0, 0.2^2), the embedding N(0, 1): every path active."""
    params = {}
    for name, shape in shapes.items():
        if name == "embedding.weight":
            scale = 1.0
        elif len(shape) == 1:
            scale = 0.2
        else:
            scale = 1.2 / math.sqrt(shape[-2] if len(shape) == 4 else shape[1])
        params[name] = g.normal(shape, f64, scale=scale).requires_grad_(True)
    return params


def ids_for(g, lengths, n, vocab):
    """Real tokens in [2, vocab); padded positions hold random ids too (the model must never read them)."""
    ids = g.ints([len(lengths), n], 0, vocab)
    real = g.ints([len(lengths), n], 2, vocab)
    pad = padding_for(lengths, n)
    return torch.where(pad, ids, real), pad


CASES = [
    dict(name="biblosa_single", encoder="biblosa", activation="relu", pair=False, classes=5, block_len=3),
    dict(name="biblosa_pair", encoder="biblosa", activation="elu", pair=True, classes=3, block_len=3),
    dict(name="disan_pair", encoder="disan", activation="elu", pair=True, classes=3, block_len=3),
    dict(name="multihead_single", encoder="multihead", activation="relu", pair=False, classes=4, block_len=3),
]


def main():
    torch.use_deterministic_algorithms(True)
    tensors, meta = {}, {}
    for case in CASES:
        c = dict(case, vocab=12, embed_dim=6, hidden_dim=4, heads=2)
        name = c["name"]
        g = Gen(name)
        params = make_params(g, shapes_for(c))
        ids, pad = ids_for(g, [13, 5, 1], 13, c["vocab"])
        inputs = {"ids": ids, "padding": pad}
        if c["pair"]:
            ids2, pad2 = ids_for(g, [4, 9, 6], 9, c["vocab"])
            inputs.update({"ids2": ids2, "padding2": pad2})
            out = pair_head(encode(ids, pad, params, c), encode(ids2, pad2, params, c), params, c)
        else:
            out = single_head(encode(ids, pad, params, c), params, c)
        probe = g.normal(tuple(out.shape), f64)
        (out * probe).sum().backward()
        for key, t in inputs.items():
            tensors[f"{name}/{key}"] = t.clone()
        for key, t in params.items():
            tensors[f"{name}/{key}"] = t.detach().clone()
            tensors[f"{name}/grad/{key}"] = t.grad.detach().clone()
        tensors[f"{name}/probe"] = probe
        tensors[f"{name}/output"] = out.detach().clone()
        meta[name] = " ".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(c.items())
                              if k != "name")
    meta.update({"torch_version": torch.__version__, "generator": "tests/golden/biblosa_model/"
                 "make_biblosa_model_golden.py", "command": COMMAND, "family": "biblosa_model"})
    path = os.path.join(HERE, "biblosa_model.safetensors")
    save_safetensors(path, tensors, meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
