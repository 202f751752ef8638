#!/usr/bin/env python3
"""PyTorch reference trajectory of loom::models::TransformerLm (llm.c's test_gpt2 habit): one batch, its
logits, loss and every parameter gradient, then 10 AdamW steps on that batch with each step's loss and the
weights they end at.

Regenerate from the repository root (CI never runs this; the outputs are committed):

    /usr/bin/python3 tests/golden/make_trajectory.py

The model is written out plainly below (no torch.nn.Transformer*), with exactly Loom's parameter names and
registration order (models/transformer_lm/transformer_lm.cpp, nn/transformer.cpp, nn/attention.cpp):
  tok.weight [V, D], pos.weight [max_seq, D],
  blocks.<i>.ln1.{weight,bias}, blocks.<i>.attn.in_proj_weight [3D, D], blocks.<i>.attn.in_proj_bias [3D],
  blocks.<i>.attn.out_proj.{weight,bias}, blocks.<i>.ln2.{weight,bias}, blocks.<i>.fc1.{weight,bias} [4D, D],
  blocks.<i>.fc2.{weight,bias} [D, 4D], ln_f.{weight,bias}, head.weight [V, D] (no bias).
As a cross-check the script also runs each block through torch.nn.TransformerEncoderLayer (norm_first=True,
activation="gelu", the mapping in nn/transformer.h) and asserts that the plain block agrees.

Two files, each a complete trajectory under the same keys (tests/test_trajectory.cpp reads both):
  trajectory/transformer_lm.safetensors       float32 throughout (as Loom trains)
  trajectory/transformer_lm_f64.safetensors   the same run in float64 from the same (float32-valued) start
Keys:
  <name>          initial parameter (Loom's dotted name)
  tokens, targets int64 [B, T]
  logits          [B, T, V] of the initial weights
  loss            scalar: mean cross-entropy of the initial weights
  grad.<name>     d loss / d parameter at the initial weights
  losses          [STEPS]: the loss computed in step k's forward, before step k's update (losses[0] == loss)
  final.<name>    parameters after STEPS updates
  final_loss      scalar: the loss at the final weights
Metadata: torch version, the command, the configuration and the optimizer's hyperparameters (the C++ test
checks these against its own, so the two sides cannot drift apart silently).
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_golden import Gen, save_safetensors  # noqa: E402

COMMAND = "/usr/bin/python3 tests/golden/make_trajectory.py"
f32, f64 = torch.float32, torch.float64

# TransformerLmConfig in the C++ test.
VOCAB, D_MODEL, LAYERS, HEADS, MAX_SEQ = 23, 32, 2, 4, 16
BATCH, SEQ = 4, 16
# torch.optim.AdamW, the same hyperparameters as nn::AdamW in the C++ test.
LR, BETAS, EPS, WEIGHT_DECAY, STEPS = 1e-3, (0.9, 0.99), 1e-8, 0.01, 10
LN_EPS = 1e-5  # nn::LayerNorm's default, as torch.nn.LayerNorm's


class Attention(torch.nn.Module):
    """Causal multi-head self-attention with torch.nn.MultiheadAttention's packed parameters."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = torch.nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = torch.nn.Parameter(torch.empty(3 * d))
        self.out_proj = torch.nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # rows: query, key, value
        q, k, v = (part.view(b, t, self.heads, hd).transpose(1, 2) for part in qkv.split(d, dim=-1))
        scores = (q / math.sqrt(hd)) @ k.transpose(-2, -1)  # [B, H, T, T]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # true = may not attend
        weights = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
        context = (weights @ v).transpose(1, 2).reshape(b, t, d)
        return self.out_proj(context)


class Block(torch.nn.Module):
    """Pre-norm block: x + attn(ln1(x)), then + fc2(gelu(fc1(ln2(x)))) with exact (erf) GELU."""

    def __init__(self, d, heads):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(d, eps=LN_EPS)
        self.attn = Attention(d, heads)
        self.ln2 = torch.nn.LayerNorm(d, eps=LN_EPS)
        self.fc1 = torch.nn.Linear(d, 4 * d)
        self.fc2 = torch.nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="none"))


class TransformerLm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding(VOCAB, D_MODEL)
        self.pos = torch.nn.Embedding(MAX_SEQ, D_MODEL)
        self.blocks = torch.nn.ModuleList([Block(D_MODEL, HEADS) for _ in range(LAYERS)])
        self.ln_f = torch.nn.LayerNorm(D_MODEL, eps=LN_EPS)
        self.head = torch.nn.Linear(D_MODEL, VOCAB, bias=False)

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[1])
        x = self.tok(tokens) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def loss(self, tokens, targets):
        logits = self(tokens)
        return logits, F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


# Loom's TransformerLm::named_parameters(), in order; the PyTorch model must list exactly these.
LOOM_NAMES = ["tok.weight", "pos.weight"]
for _i in range(LAYERS):
    LOOM_NAMES += [f"blocks.{_i}.{n}" for n in (
        "ln1.weight", "ln1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
        "attn.out_proj.bias", "ln2.weight", "ln2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")]
LOOM_NAMES += ["ln_f.weight", "ln_f.bias", "head.weight"]


def initial_weights():
    """Random float32 values for every parameter, all non-trivial (no zero biases, no unit LayerNorm gains) so
    that every gradient formula is exercised. Matrices get std 1/sqrt(fan_in): activations and logits stay of
    order one and the loss is a realistic ~3 nats rather than the uniform log(23)."""
    g = Gen("transformer_lm_trajectory")
    out = {}
    for name in LOOM_NAMES:
        shape = reference_shapes[name]
        if name.startswith(("tok.", "pos.")):
            t = g.normal(shape, f32, scale=0.5)
        elif ".ln" in name or name.startswith("ln_f"):
            t = g.normal(shape, f32, scale=0.1, shift=1.0 if name.endswith("weight") else 0.0)
        elif len(shape) == 2:
            t = g.normal(shape, f32, scale=1.0 / math.sqrt(shape[1]))
        else:
            t = g.normal(shape, f32, scale=0.1)
        out[name] = t
    return out


def make_batch():
    g = Gen("transformer_lm_trajectory_batch")
    seq = g.ints((BATCH, SEQ + 1), 0, VOCAB)
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def build(weights, dtype):
    model = TransformerLm().to(dtype)
    names = [n for n, _ in model.named_parameters()]
    assert names == LOOM_NAMES, f"PyTorch names {names} != Loom names {LOOM_NAMES}"
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(weights[name].to(dtype))
    return model


def cross_check_blocks(model, tokens):
    """The plain Block against torch.nn.TransformerEncoderLayer with the same weights (in float64)."""
    rename = {"self_attn.": "attn.", "norm1.": "ln1.", "norm2.": "ln2.", "linear1.": "fc1.", "linear2.": "fc2."}
    x = (model.tok(tokens) + model.pos(torch.arange(tokens.shape[1]))).detach()
    causal = torch.triu(torch.ones(SEQ, SEQ, dtype=torch.bool), diagonal=1)
    for block in model.blocks:
        layer = torch.nn.TransformerEncoderLayer(D_MODEL, HEADS, dim_feedforward=4 * D_MODEL, dropout=0.0,
                                                 activation="gelu", batch_first=True, norm_first=True,
                                                 layer_norm_eps=LN_EPS).to(x.dtype)
        ours = dict(block.named_parameters())
        with torch.no_grad():
            for pname, p in layer.named_parameters():
                lname = pname
                for old, new in rename.items():
                    lname = lname.replace(old, new)
                p.copy_(ours[lname])
        want = layer(x.requires_grad_(True), src_mask=causal)  # requires_grad keeps it off the fast path
        got = block(x)
        err = (got - want).abs().max().item()
        assert err < 1e-12, f"plain block differs from TransformerEncoderLayer by {err}"
        x = got.detach()


def trajectory(weights, tokens, targets, dtype):
    model = build(weights, dtype)
    if dtype == f64:
        cross_check_blocks(model, tokens)
    out = {name: p.detach().clone() for name, p in model.named_parameters()}
    out["tokens"], out["targets"] = tokens, targets

    logits, loss = model.loss(tokens, targets)
    loss.backward()
    out["logits"] = logits.detach().clone()
    out["loss"] = loss.detach().clone()
    for name, p in model.named_parameters():
        out[f"grad.{name}"] = p.grad.detach().clone()

    model.zero_grad(set_to_none=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        _, loss = model.loss(tokens, targets)
        loss.backward()
        opt.step()
        losses.append(loss.detach().clone())
    out["losses"] = torch.stack(losses)
    assert torch.equal(out["losses"][0], out["loss"]), "step 1's loss must be the initial loss"
    for name, p in model.named_parameters():
        out[f"final.{name}"] = p.detach().clone()
    with torch.no_grad():
        out["final_loss"] = model.loss(tokens, targets)[1].clone()
    return out


def metadata(dtype):
    return {
        "torch_version": torch.__version__,
        "generator": "tests/golden/make_trajectory.py",
        "command": COMMAND,
        "dtype": "float32" if dtype == f32 else "float64",
        "config": f"vocab={VOCAB} d_model={D_MODEL} layers={LAYERS} heads={HEADS} max_seq={MAX_SEQ}",
        "optimizer": f"AdamW lr={LR:.17g} beta1={BETAS[0]:.17g} beta2={BETAS[1]:.17g} eps={EPS:.17g} "
                     f"weight_decay={WEIGHT_DECAY:.17g} steps={STEPS}",
    }


reference_shapes = {n: tuple(p.shape) for n, p in TransformerLm().named_parameters()}


def main():
    torch.use_deterministic_algorithms(True)
    out_dir = os.path.join(HERE, "trajectory")
    os.makedirs(out_dir, exist_ok=True)
    weights = initial_weights()
    tokens, targets = make_batch()
    for dtype, file in ((f32, "transformer_lm.safetensors"), (f64, "transformer_lm_f64.safetensors")):
        out = trajectory(weights, tokens, targets, dtype)
        path = os.path.join(out_dir, file)
        save_safetensors(path, out, metadata(dtype))
        losses = ", ".join(f"{x:.6f}" for x in out["losses"].tolist())
        print(f"{path}: {os.path.getsize(path)} bytes; losses {losses}; final {out['final_loss'].item():.6f}")


if __name__ == "__main__":
    main()
