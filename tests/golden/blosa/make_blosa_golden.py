#!/usr/bin/env python3
"""PyTorch reference values for Loom's Bi-BloSA / DiSAN primitives and modules (ops/multidim_attention.h,
nn/block_attention.h).

Regenerate from the repository root (CI never runs this; the output is committed):

    /usr/bin/python3 tests/golden/blosa/make_blosa_golden.py

Writes tests/golden/blosa/blosa.safetensors. The reference below is written straight from the spec
(shared/research/biblosa.md, sections 2.2-2.6 and the section 3 pseudo-code), the way the TF code computes it:
masking by adding -1e30 and multiplying the softmax by the mask afterwards, the tiled [.., i, j, d] score
tensor, plain torch.softmax. It shares nothing with Loom but the parameter names and the [out, in] weight layout
of nn::Linear, so that Loom loads the weights directly. Two decisions the spec leaves to the implementation are
Loom's here too:
  * source2token multiplies its softmax by the mask as well, so that a row that is all padding pools to 0 (TF
    would average the padded values there; no sentence is all padding in practice, and an all-padding block has
    h = 0, so the intra-block summary is 0 either way);
  * empty blocks (every token padding) are masked out of the inter-block DiSA (spec P4's recommendation),
    where the TF code passes a mask of ones; the "parity" case keeps the TF behaviour, which Loom reproduces
    with BlockSelfAttentionOptions::reference_parity.

Every case is float64 (inputs, parameters and results); the C++ tests also run the float32 kernels against the
rounded values. Each case stores its inputs, parameters under the module's state_dict names, "probe" (the
backward seed: loss = sum(output * probe)), "output", and "grad/<name>" for every input and parameter. The
metadata holds torch_version, the command, and per case a string of the settings the C++ test must use
("<case>" -> "direction=forward block_len=3 ..."), which the test parses and checks.
"""
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from make_golden import Gen, save_safetensors  # noqa: E402

COMMAND = "/usr/bin/python3 tests/golden/blosa/make_blosa_golden.py"
f64 = torch.float64
C = 5.0  # the attention scale c of c * tanh(x / c), hard-coded in the reference


def act(x, name):
    return torch.nn.functional.elu(x) if name == "elu" else torch.relu(x)


def direction_mask(l, direction):
    """D(i, j) of spec 2.2: rows i are queries, columns j keys."""
    i = torch.arange(l)[:, None]
    j = torch.arange(l)[None, :]
    return {"forward": j < i, "backward": j > i, "no_diagonal": j != i, "all": torch.ones(l, l, dtype=torch.bool)}[
        direction]


def multi_dim_attention(q, k, v, bias, direction, pad, mask_queries):
    """Spec 2.2 / section 3: L = c tanh((K_j + Q_i + b_f) / c), P = softmax_j(L + (1 - A)(-1e30)) * A."""
    l = q.shape[-2]
    a = direction_mask(l, direction)
    if pad is not None:
        valid = ~pad
        a = a & valid[..., None, :]
        if mask_queries:
            a = a & valid[..., :, None]
    a = a.expand(*q.shape[:-2], l, l).to(q.dtype)[..., None]  # [..., i, j, 1]
    logits = C * torch.tanh((k[..., None, :, :] + q[..., :, None, :] + bias) / C)  # [..., i, j, d]
    p = torch.softmax(logits + (1 - a) * (-1e30), dim=-2) * a
    return (p * v[..., None, :, :]).sum(-2)


def source2token(scores, values, pad):
    """Spec 2.4: feature-wise softmax over n of the masked scores, weighting the values."""
    if pad is None:
        return (torch.softmax(scores, dim=-2) * values).sum(-2)
    m = (~pad).to(scores.dtype)[..., None]
    p = torch.softmax(scores + (1 - m) * (-1e30), dim=-2) * m
    return (p * values).sum(-2)


def linear(x, params, name):
    y = x @ params[name + ".weight"].T
    b = params.get(name + ".bias")
    return y if b is None else y + b


def disa(x, pad, direction, params, prefix, activation):
    """Spec 2.3 (dropout off)."""
    d = params[prefix + "f_bias"].shape[0]
    hm = act(linear(x, params, prefix + "fc"), activation)
    kq = linear(hm, params, prefix + "key_query")
    k, q = kq[..., :d], kq[..., d:]
    s = multi_dim_attention(q, k, hm, params[prefix + "f_bias"], direction, pad, mask_queries=False)
    g = torch.sigmoid(linear(hm, params, prefix + "gate_in") + linear(s, params, prefix + "gate_attn") +
                      params[prefix + "o_bias"])
    u = g * hm + (1 - g) * s
    if pad is not None:
        u = u * (~pad).to(u.dtype)[..., None]
    return u


def s2t(x, pad, params, prefix, layers, activation):
    """Spec 2.4: one layer (block summary) or two (sentence pooling)."""
    t = x
    if layers == 2:
        t = act(linear(t, params, prefix + "hidden"), activation)
    return source2token(linear(t, params, prefix + "score"), x, pad)


def mblosa(x, pad, direction, r, params, prefix, activation, parity=False):
    """Spec section 3, one direction (dropout off); empty blocks masked in the inter-block DiSA unless parity
    (then every block is valid, as the TF code's tf.ones([bs, bn]))."""
    b, n, de = x.shape
    d = params[prefix + "f_bias"].shape[0]
    m = math.ceil(n / r)
    padded = m * r
    xp = torch.cat([x, torch.zeros(b, padded - n, de, dtype=x.dtype)], 1)
    mk = torch.cat([pad, torch.ones(b, padded - n, dtype=torch.bool)], 1).view(b, m, r)
    xb = xp.view(b, m, r, de)
    h0 = act(linear(xb, params, prefix + "fc"), activation)
    kq = linear(h0, params, prefix + "key_query")
    k, q = kq[..., :d], kq[..., d:]
    h = multi_dim_attention(q, k, h0, params[prefix + "f_bias"], direction, mk, mask_queries=True)
    v = s2t(h, mk, params, prefix + "block_summary.", 1, activation)
    empty_block = mk.all(-1)
    e = disa(v, None if parity else empty_block, direction, params, prefix + "inter_block.", activation)
    big_e = e[:, :, None, :].expand(b, m, r, d)
    z = linear(torch.cat([h0, h, big_e], -1), params, prefix + "fusion")
    zc, zg = z[..., :d], z[..., d:]
    u = torch.sigmoid(zg) * act(zc, activation) + (1 - torch.sigmoid(zg)) * h0
    return u.reshape(b, padded, d)[:, :n]


# ---- parameters, under nn/block_attention.h's names and nn::Linear's [out, in] layout ------------------------

def disa_shapes(prefix, din, d):
    return {prefix + "fc.weight": (d, din), prefix + "fc.bias": (d,), prefix + "key_query.weight": (2 * d, d),
            prefix + "f_bias": (d,), prefix + "gate_in.weight": (d, d), prefix + "gate_in.bias": (d,),
            prefix + "gate_attn.weight": (d, d), prefix + "gate_attn.bias": (d,), prefix + "o_bias": (d,)}


def mblosa_shapes(prefix, de, d):
    shapes = {prefix + "fc.weight": (d, de), prefix + "fc.bias": (d,), prefix + "key_query.weight": (2 * d, d),
              prefix + "f_bias": (d,), prefix + "block_summary.score.weight": (d, d),
              prefix + "block_summary.score.bias": (d,)}
    shapes.update(disa_shapes(prefix + "inter_block.", d, d))
    shapes.update({prefix + "fusion.weight": (2 * d, 3 * d), prefix + "fusion.bias": (2 * d,)})
    return shapes


def make_params(g, shapes):
    """Weights ~ N(0, 1/fan_in) scaled up a little, biases ~ N(0, 0.2^2): every path active, nothing saturated."""
    params = {}
    for name, shape in shapes.items():
        scale = 0.2 if len(shape) == 1 else 1.2 / math.sqrt(shape[1])
        params[name] = g.normal(shape, f64, scale=scale).requires_grad_(True)
    return params


def padding_for(lengths, n):
    return torch.arange(n)[None, :] >= torch.tensor(lengths)[:, None]


def finish(tensors, name, inputs, params, output, g):
    """Stores inputs, parameters, output, probe and the gradients of sum(output * probe)."""
    probe = g.normal(tuple(output.shape), f64)
    (output * probe).sum().backward()
    for key, t in list(inputs.items()) + list(params.items()):
        tensors[f"{name}/{key}"] = t.detach().clone()
        if t.dtype == f64 and t.requires_grad:
            tensors[f"{name}/grad/{key}"] = t.grad.detach().clone()
    tensors[f"{name}/probe"] = probe
    tensors[f"{name}/output"] = output.detach().clone()


def settings(**kw):
    return " ".join(f"{k}={v}" for k, v in sorted(kw.items()))


# ---- cases ----------------------------------------------------------------------------------------------------

def op_cases(tensors, meta):
    # multi_dim_attention on [2, 3, L, d] (two leading dims, as the intra-block call has), padding with fully
    # padded rows, every direction, queries masked or not.
    for direction, mask_queries, l, d in [("forward", True, 5, 7), ("backward", False, 5, 7),
                                          ("no_diagonal", True, 4, 3), ("all", False, 6, 9), ("forward", False, 1, 4)]:
        name = f"mda_{direction}_{'mq' if mask_queries else 'kq'}_l{l}"
        g = Gen(name)
        q, k, v = (g.normal((2, 3, l, d), f64).requires_grad_(True) for _ in range(3))
        bias = g.normal((d,), f64, scale=0.5).requires_grad_(True)
        pad = g.bools((2, 3, l), 0.3)
        pad[1, 2] = True  # a sequence that is all padding
        out = multi_dim_attention(q, k, v, bias, direction, pad, mask_queries)
        finish(tensors, name, {"q": q, "k": k, "v": v, "bias": bias, "padding": pad}, {}, out, g)
        meta[name] = settings(direction=direction, mask_queries=int(mask_queries))
    name = "s2t_op"
    g = Gen(name)
    scores = g.normal((3, 6, 5), f64, scale=2.0).requires_grad_(True)
    values = g.normal((3, 6, 5), f64).requires_grad_(True)
    pad = padding_for([6, 2, 0], 6)  # full, partly padded, all padding
    finish(tensors, name, {"scores": scores, "values": values, "padding": pad}, {},
           source2token(scores, values, pad), g)
    meta[name] = settings()


def module_cases(tensors, meta):
    b, de, d = 3, 6, 4
    lengths = [13, 5, 1]  # with r = 3: 5 blocks; the 1-token sentence has 4 empty blocks
    for direction, activation in [("forward", "elu"), ("backward", "relu")]:
        name = f"disa_{direction}"
        g = Gen(name)
        params = make_params(g, disa_shapes("", de, d))
        x = g.normal((b, 7, de), f64).requires_grad_(True)
        pad = padding_for([7, 4, 1], 7)
        out = disa(x, pad, direction, params, "", activation)
        finish(tensors, name, {"x": x, "padding": pad}, params, out, g)
        meta[name] = settings(direction=direction, activation=activation, hidden=d, input=de)

    name = "s2t_sentence"
    g = Gen(name)
    params = make_params(g, {"hidden.weight": (2 * d, 2 * d), "hidden.bias": (2 * d,), "score.weight": (2 * d, 2 * d),
                             "score.bias": (2 * d,)})
    x = g.normal((b, 7, 2 * d), f64).requires_grad_(True)
    pad = padding_for([7, 4, 1], 7)
    finish(tensors, name, {"x": x, "padding": pad}, params, s2t(x, pad, params, "", 2, "elu"), g)
    meta[name] = settings(activation="elu", dim=2 * d, layers=2)

    for direction, activation, r, parity in [("forward", "elu", 3, False), ("backward", "elu", 3, False),
                                             ("forward", "relu", 4, False), ("backward", "elu", 3, True)]:
        name = f"blosa_{direction}_{activation}_r{r}" + ("_parity" if parity else "")
        g = Gen(name)
        params = make_params(g, mblosa_shapes("", de, d))
        x = g.normal((b, 13, de), f64).requires_grad_(True)
        pad = padding_for(lengths, 13)
        out = mblosa(x, pad, direction, r, params, "", activation, parity)
        finish(tensors, name, {"x": x, "padding": pad}, params, out, g)
        meta[name] = settings(direction=direction, activation=activation, block_len=r, hidden=d, input=de,
                              parity=int(parity))

    # Bi-BloSA with the default block-length rule: n = 11 gives r = ceil(cbrt(22)) = 3, m = 4.
    name = "bi_blosa_default_r"
    g = Gen(name)
    n = 11
    r = math.ceil((2 * n) ** (1.0 / 3.0))
    shapes = mblosa_shapes("fw.", de, d)
    shapes.update(mblosa_shapes("bw.", de, d))
    params = make_params(g, shapes)
    x = g.normal((b, n, de), f64).requires_grad_(True)
    pad = padding_for([11, 7, 2], n)
    out = torch.cat([mblosa(x, pad, "forward", r, params, "fw.", "elu"),
                     mblosa(x, pad, "backward", r, params, "bw.", "elu")], -1)
    finish(tensors, name, {"x": x, "padding": pad}, params, out, g)
    meta[name] = settings(activation="elu", block_len=0, expected_block_len=r, hidden=d, input=de)


def main():
    torch.use_deterministic_algorithms(True)
    tensors, meta = {}, {}
    op_cases(tensors, meta)
    module_cases(tensors, meta)
    meta.update({"torch_version": torch.__version__, "generator": "tests/golden/blosa/make_blosa_golden.py",
                 "command": COMMAND, "family": "blosa"})
    path = os.path.join(HERE, "blosa.safetensors")
    save_safetensors(path, tensors, meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
