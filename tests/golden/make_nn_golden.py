#!/usr/bin/env python3
"""PyTorch reference values for Loom's nn layer: optimizer updates and attention / Transformer-block outputs.

Regenerate from the repository root (CI never runs this; the outputs are committed):

    /usr/bin/python3 tests/golden/make_nn_golden.py

Writes tests/golden/nn/optim.safetensors and tests/golden/nn/modules.safetensors (a subdirectory, so the op
golden loader, which reads tests/golden/*.safetensors, does not take them for op cases). The case tables here
have counterparts in tests/test_optim.cpp and tests/test_nn_modules.cpp: a change on one side needs the same
change on the other. Each optimizer case stores its hyperparameters as a metadata string that the C++ test
rebuilds and compares, so the two tables cannot drift apart silently.

optim.safetensors, per case:
  <case>/param<i>            initial parameter i
  <case>/grad<i>_step<k>     its gradient at step k (1..3); absent = no gradient that step (the parameter is skipped)
  <case>/param<i>_step<k>    the parameter after step k
  <case>/<buffer><i>         optimizer state after step 3 (momentum_buffer, exp_avg, exp_avg_sq)
modules.safetensors: inputs and outputs of torch.nn.MultiheadAttention (batch_first) and of
torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu", batch_first=True), with parameter
gradients of sum(out * probe). Module references are computed in float64 from float32 inputs and rounded once.
"""
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_golden import Gen, save_safetensors  # noqa: E402

COMMAND = "/usr/bin/python3 tests/golden/make_nn_golden.py"
f32, f64 = torch.float32, torch.float64

# name, optimizer class, hyperparameters, dtype, per-step learning rates, steps at which param1 has no gradient
OPTIM_CASES = [
    ("sgd_plain", "SGD", dict(momentum=0.0, dampening=0.0, weight_decay=0.01, nesterov=False), f64,
     [0.1, 0.1, 0.05], []),
    ("sgd_momentum", "SGD", dict(momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False), f64,
     [0.1, 0.1, 0.1], []),
    ("sgd_nesterov", "SGD", dict(momentum=0.8, dampening=0.0, weight_decay=0.001, nesterov=True), f64,
     [0.05, 0.05, 0.02], [2]),
    ("adam", "Adam", dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0), f64, [1e-2, 1e-2, 5e-3], [2]),
    ("adam_l2", "Adam", dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), f64, [1e-2, 1e-2, 1e-2], []),
    ("adamw", "AdamW", dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05), f64, [1e-2, 2e-2, 1e-2], [2]),
    ("adamw_f32", "AdamW", dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1), f32, [3e-3, 3e-3, 3e-3], []),
]
PARAM_SHAPES = [(3, 4), (5,)]
STEPS = 3


def describe_case(kind, hp, lrs, skips):
    """The metadata string the C++ test rebuilds: "type=<kind>" then sorted key=value pairs (%.17g)."""
    parts = []
    for key, value in hp.items():
        if key == "betas":
            parts += [f"beta1={value[0]:.17g}", f"beta2={value[1]:.17g}"]
        else:
            parts.append(f"{key}={float(value):.17g}")
    parts.append("lrs=" + ",".join(f"{lr:.17g}" for lr in lrs))
    parts.append("skips=" + ",".join(str(s) for s in skips))
    return " ".join([f"type={kind}"] + sorted(parts))


def optim_cases():
    tensors, meta = {}, {}
    for name, kind, hp, dtype, lrs, skips in OPTIM_CASES:
        g = Gen(name)
        params = [g.normal(s, dtype).requires_grad_(True) for s in PARAM_SHAPES]
        for i, p in enumerate(params):
            tensors[f"{name}/param{i}"] = p.detach().clone()
        opt = getattr(torch.optim, kind)(params, lr=lrs[0], **hp)
        for k in range(1, STEPS + 1):
            for group in opt.param_groups:
                group["lr"] = lrs[k - 1]
            for i, p in enumerate(params):
                if i == 1 and k in skips:
                    p.grad = None
                    continue
                grad = g.normal(PARAM_SHAPES[i], dtype)
                tensors[f"{name}/grad{i}_step{k}"] = grad
                p.grad = grad.clone()
            opt.step()
            for i, p in enumerate(params):
                tensors[f"{name}/param{i}_step{k}"] = p.detach().clone()
        for i, p in enumerate(params):
            for buf, value in opt.state[p].items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    tensors[f"{name}/{buf}{i}"] = value.detach().clone()
        meta[name] = describe_case(kind, hp, lrs, skips)
    return tensors, meta


def rounded(t):
    return t.detach().to(f32).contiguous()


def mha_case(tensors, name, b, l, s, e, h, mode, attn_mask=None, key_padding_mask=None):
    """mode: "self" (q = k = v), "kv" (k = v != q) or "qkv" (all different)."""
    g = Gen(name)
    mha = torch.nn.MultiheadAttention(e, h, batch_first=True).to(f64)
    with torch.no_grad():
        for pname, p in mha.named_parameters():
            p.copy_(g.normal(tuple(p.shape), f32, scale=0.5).to(f64))
            tensors[f"{name}/{pname}"] = rounded(p)
    q = g.normal((b, l, e), f32)
    tensors[f"{name}/query"] = q
    if mode == "self":
        k = v = q
    elif mode == "kv":
        k = v = g.normal((b, s, e), f32)
        tensors[f"{name}/key"] = k
    else:
        k = g.normal((b, s, e), f32)
        v = g.normal((b, s, e), f32)
        tensors[f"{name}/key"] = k
        tensors[f"{name}/value"] = v
    if attn_mask is not None:
        tensors[f"{name}/attn_mask"] = attn_mask
    if key_padding_mask is not None:
        tensors[f"{name}/key_padding_mask"] = key_padding_mask
    q64 = q.to(f64).requires_grad_(True)  # requires_grad keeps PyTorch off its inference fast path
    k64 = q64 if mode == "self" else k.to(f64)
    v64 = k64 if mode in ("self", "kv") else v.to(f64)
    mask = attn_mask.to(f64) if attn_mask is not None and attn_mask.is_floating_point() else attn_mask
    out, weights = mha(q64, k64, v64, attn_mask=mask, key_padding_mask=key_padding_mask, need_weights=True,
                       average_attn_weights=False)
    tensors[f"{name}/output"] = rounded(out)
    tensors[f"{name}/weights"] = rounded(weights)


def causal(l, s):
    return torch.triu(torch.ones(l, s, dtype=torch.bool), diagonal=1)


def module_cases():
    tensors = {}
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    mha_case(tensors, "mha_self_causal_padded", 2, 5, 5, 8, 2, "self", attn_mask=causal(5, 5),
             key_padding_mask=padding)
    mha_case(tensors, "mha_kv", 2, 4, 6, 8, 4, "kv",
             key_padding_mask=torch.tensor([[False] * 6, [False] * 4 + [True] * 2]))
    mha_case(tensors, "mha_qkv", 2, 3, 4, 6, 3, "qkv")
    float_mask = Gen("mha_float_mask_values").normal((2 * 2, 5, 5), f32)
    mha_case(tensors, "mha_float_mask", 2, 5, 5, 8, 2, "self", attn_mask=float_mask)

    # A pre-norm Transformer block with PyTorch's names mapped to Loom's (see nn/transformer.h).
    name = "block"
    g = Gen(name)
    d, heads, hidden, b, t = 8, 2, 32, 2, 5
    layer = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=hidden, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=True).to(f64)
    rename = {"self_attn.": "attn.", "norm1.": "ln1.", "norm2.": "ln2.", "linear1.": "fc1.", "linear2.": "fc2."}
    loom_names = {}
    with torch.no_grad():
        for pname, p in layer.named_parameters():
            scale = 0.2 if p.dim() == 1 else 0.4
            shift = 1.0 if pname.endswith("norm1.weight") or pname.endswith("norm2.weight") else 0.0
            p.copy_(g.normal(tuple(p.shape), f32, scale=scale, shift=shift).to(f64))
            lname = pname
            for old, new in rename.items():
                lname = lname.replace(old, new)
            loom_names[pname] = lname
            tensors[f"{name}/{lname}"] = rounded(p)
    x = g.normal((b, t, d), f32)
    probe = g.normal((b, t, d), f32)
    tensors[f"{name}/x"] = x
    tensors[f"{name}/probe"] = probe
    tensors[f"{name}/key_padding_mask"] = padding
    x64 = x.to(f64).requires_grad_(True)
    out = layer(x64, src_mask=causal(t, t), src_key_padding_mask=padding)
    (out * probe.to(f64)).sum().backward()
    tensors[f"{name}/output"] = rounded(out)
    tensors[f"{name}/grad/x"] = rounded(x64.grad)
    for pname, p in layer.named_parameters():
        tensors[f"{name}/grad/{loom_names[pname]}"] = rounded(p.grad)
    return tensors


def metadata(family, extra=None):
    meta = {"torch_version": torch.__version__, "generator": "tests/golden/make_nn_golden.py", "command": COMMAND,
            "family": family}
    meta.update(extra or {})
    return meta


def main():
    torch.use_deterministic_algorithms(True)
    out_dir = os.path.join(HERE, "nn")
    os.makedirs(out_dir, exist_ok=True)
    tensors, meta = optim_cases()
    path = os.path.join(out_dir, "optim.safetensors")
    save_safetensors(path, tensors, metadata("optim", meta))
    print(f"{path}: {len(OPTIM_CASES)} cases, {os.path.getsize(path)} bytes")
    path = os.path.join(out_dir, "modules.safetensors")
    save_safetensors(path, module_cases(), metadata("modules"))
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
