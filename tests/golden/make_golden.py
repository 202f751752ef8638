#!/usr/bin/env python3
"""PyTorch reference outputs ("golden files") for every op of Loom's public API.

Regenerate from the repository root (CI never runs this; the outputs are committed):

    /usr/bin/python3 tests/golden/make_golden.py

Each case stores its inputs as "<case>/in<i>" and PyTorch's outputs as "<case>/out<j>" in one safetensors file
per op family; the case name is the row of tests/support/op_table.cpp that runs the same op on the same inputs.
Parameters (dims, flags, views such as a transpose) live in the code on both sides, so a change here needs the
matching change there. Inputs come from a generator seeded by the case name, so reruns give identical files.
Float32 references are computed in float64 from the float32 inputs and rounded once, which makes them at least
as accurate as PyTorch's own float32 kernels. Files are written in the reference `safetensors` layout by hand
(the package is not needed): 8-byte little-endian header length, compact JSON with __metadata__ first, tensors
ordered by alignment then name, header padded with spaces to a multiple of 8, packed little-endian data.
"""
import json
import math
import os
import struct
import sys
import zlib

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
COMMAND = "/usr/bin/python3 tests/golden/make_golden.py"
f32, f64, i64, i32, b8 = torch.float32, torch.float64, torch.int64, torch.int32, torch.bool
INF = math.inf
NAN = math.nan

DTYPES = {f32: ("F32", 4), f64: ("F64", 8), i64: ("I64", 8), i32: ("I32", 4), b8: ("BOOL", 1)}


def save_safetensors(path, tensors, metadata):
    assert sys.byteorder == "little"
    items = sorted(tensors.items(), key=lambda kv: (-DTYPES[kv[1].dtype][1], kv[0]))
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in items:
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


class Gen:
    """Seeded input factory; op_table.cpp has a counterpart with the same shapes, ranges and guarantees."""

    def __init__(self, name):
        self.g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def normal(self, shape, dtype=f32, scale=1.0, shift=0.0):
        return (torch.randn(shape, generator=self.g, dtype=f64) * scale + shift).to(dtype)

    def uniform(self, shape, lo, hi, dtype=f32):
        return (torch.rand(shape, generator=self.g, dtype=f64) * (hi - lo) + lo).to(dtype)

    def ints(self, shape, lo, hi, dtype=i64):
        """Integers in [lo, hi) in any dtype (integer-valued floats give ties on purpose)."""
        return torch.randint(lo, hi, shape, generator=self.g, dtype=i64).to(dtype)

    def bools(self, shape, p=0.5):
        return torch.rand(shape, generator=self.g, dtype=f64) < p

    def distinct(self, shape, dtype=f32):
        """A random arrangement of 0 .. n-1 (halved for floats): no ties (PyTorch leaves topk's tie order open)."""
        n = math.prod(shape)
        perm = torch.randperm(n, generator=self.g).reshape(shape)
        return (perm.to(f64) * 0.5).to(dtype) if dtype in (f32, f64) else perm.to(dtype)

    def unique_index(self, shape, dim, n):
        """int64 indices in [0, n) that never repeat along `dim` (scatter with repeats is order-dependent)."""
        moved = list(shape)
        moved[dim], moved[-1] = moved[-1], moved[dim]
        rows = math.prod(moved[:-1])
        idx = torch.stack([torch.randperm(n, generator=self.g)[: moved[-1]] for _ in range(rows)])
        return idx.reshape(moved).transpose(dim, len(shape) - 1).contiguous()


FILES = {}


def as_list(result):
    if isinstance(result, torch.Tensor):
        return [result]
    return list(result)


def reference(fn, inputs):
    native = as_list(fn(*[x.clone() for x in inputs]))
    if not any(x.dtype == f32 for x in inputs):
        return native
    wide = as_list(fn(*[x.double() if x.dtype == f32 else x.clone() for x in inputs]))
    outs = []
    for n, w in zip(native, wide):
        if n.is_floating_point():
            outs.append(w.to(n.dtype))
        else:
            assert torch.equal(n, w), "integer output differs between float32 and float64 evaluation"
            outs.append(n)
    return outs


def case(file, name, make, fn):
    inputs = make(Gen(name))
    outputs = reference(fn, inputs)
    cases = FILES.setdefault(file, {})
    assert name not in cases, name
    cases[name] = (inputs, outputs)


# --- elementwise ----------------------------------------------------------------------------------------------
def elementwise():
    E = "elementwise"
    n35 = lambda g: [g.normal([3, 5])]
    pos35 = lambda g: [g.uniform([3, 5], 0.1, 4.0)]
    for name, fn in [("neg", torch.neg), ("exp", torch.exp), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
                     ("relu", torch.relu), ("gelu", F.gelu), ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
                     ("elu", F.elu), ("elu_alpha", lambda x: F.elu(x, alpha=0.5)), ("abs", torch.abs),
                     ("square", torch.square), ("clamp", lambda x: torch.clamp(x, -0.5, 0.8)),
                     ("clamp_min", lambda x: torch.clamp(x, min=-0.5)),
                     ("clamp_max", lambda x: torch.clamp(x, max=0.3)),
                     ("pow_scalar_int_exponent", lambda x: torch.pow(x, 3.0)),
                     ("pow_scalar_base", lambda x: torch.pow(2.0, x))]:
        case(E, name, n35, fn)
    for name, fn in [("log", torch.log), ("sqrt", torch.sqrt), ("rsqrt", torch.rsqrt),
                     ("reciprocal", torch.reciprocal), ("pow_scalar", lambda x: torch.pow(x, 2.5))]:
        case(E, name, pos35, fn)
    case(E, "sign", lambda g: [g.ints([3, 5], -2, 3, f32)], torch.sign)
    case(E, "logical_not", lambda g: [g.bools([3, 5])], torch.logical_not)
    for name, fn in [("exp_f64", torch.exp), ("tanh_f64", torch.tanh), ("sigmoid_f64", torch.sigmoid),
                     ("gelu_f64", F.gelu), ("gelu_tanh_f64", lambda x: F.gelu(x, approximate="tanh")),
                     ("elu_f64", F.elu)]:
        case(E, name, lambda g: [g.normal([3, 5], f64)], fn)
    case(E, "log_f64", lambda g: [g.uniform([3, 5], 0.1, 4.0, f64)], torch.log)
    case(E, "neg_int64", lambda g: [g.ints([7], -5, 5)], torch.neg)
    case(E, "abs_int32", lambda g: [g.ints([7], -5, 5, i32)], torch.abs)
    extreme = lambda g: [torch.tensor([-100.0, -30.0, -5.0, -0.0, 0.0, 5.0, 30.0, 100.0])]
    case(E, "sigmoid_extreme", extreme, torch.sigmoid)
    case(E, "tanh_extreme", extreme, torch.tanh)
    case(E, "gelu_extreme", extreme, F.gelu)
    case(E, "elu_extreme", extreme, F.elu)
    case(E, "exp_extreme", lambda g: [torch.tensor([-200.0, -100.0, -80.0, 0.0, 80.0, 88.0, 89.0, 100.0])], torch.exp)
    case(E, "log_edge", lambda g: [torch.tensor([0.0, 1e-30, 1.0, 1e30, INF])], torch.log)
    # Non-contiguous inputs: the C++ side applies the same view to the stored base tensor.
    case(E, "exp_transposed", lambda g: [g.normal([5, 3])], lambda x: torch.exp(x.t()))
    case(E, "tanh_strided", lambda g: [g.normal([3, 8])], lambda x: torch.tanh(x[:, 0:8:2]))
    case(E, "sigmoid_expanded", lambda g: [g.normal([3, 1])], lambda x: torch.sigmoid(x.expand(3, 4)))

    n34x2 = lambda g: [g.normal([3, 4]), g.normal([3, 4])]
    for name, fn in [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("maximum", torch.maximum),
                     ("minimum", torch.minimum)]:
        case(E, name, n34x2, fn)
    case(E, "div", lambda g: [g.normal([3, 4]), g.uniform([3, 4], 0.5, 2.0)], torch.div)
    case(E, "pow", lambda g: [g.uniform([3, 4], 0.5, 2.0), g.normal([3, 4])], torch.pow)
    case(E, "add_broadcast", lambda g: [g.normal([2, 1, 4]), g.normal([3, 1])], torch.add)
    case(E, "mul_broadcast_0d", lambda g: [g.normal([3, 4]), g.normal([])], torch.mul)
    case(E, "sub_broadcast_rank", lambda g: [g.normal([4]), g.normal([3, 4])], torch.sub)
    case(E, "maximum_broadcast", lambda g: [g.normal([3, 1]), g.normal([1, 4])], torch.maximum)
    case(E, "add_transposed", lambda g: [g.normal([3, 4]), g.normal([4, 3])], lambda a, b: a + b.t())
    case(E, "mul_sliced", lambda g: [g.normal([3, 8]), g.normal([3, 4])], lambda a, b: a[:, 1:8:2] * b)
    case(E, "div_expanded", lambda g: [g.normal([3, 4]), g.uniform([1, 4], 0.5, 2.0)],
         lambda a, b: a / b.expand(3, 4))
    case(E, "add_int64", lambda g: [g.ints([3, 4], -100, 100), g.ints([3, 4], -100, 100)], torch.add)
    case(E, "sub_int32", lambda g: [g.ints([3, 4], -100, 100, i32), g.ints([3, 4], -100, 100, i32)], torch.sub)
    case(E, "mul_int64", lambda g: [g.ints([3, 4], -100, 100), g.ints([3, 4], -100, 100)], torch.mul)
    case(E, "add_int32_int64", lambda g: [g.ints([5], -9, 9, i32), g.ints([5], -9, 9)], torch.add)
    case(E, "add_int_float", lambda g: [g.ints([3, 4], -9, 9), g.normal([3, 4])], torch.add)
    case(E, "div_int", lambda g: [g.ints([3, 4], -9, 9), g.ints([3, 4], 1, 5)], torch.div)
    case(E, "pow_int64", lambda g: [g.ints([6], 0, 5), g.ints([6], 0, 4)], torch.pow)
    case(E, "maximum_nan", lambda g: [torch.tensor([1.0, NAN, 3.0, NAN]), torch.tensor([2.0, 1.0, NAN, NAN])],
         torch.maximum)
    case(E, "minimum_nan", lambda g: [torch.tensor([1.0, NAN, 3.0, NAN]), torch.tensor([2.0, 1.0, NAN, NAN])],
         torch.minimum)
    f64x2 = lambda g: [g.normal([3, 4], f64), g.normal([3, 4], f64)]
    case(E, "add_f64", f64x2, torch.add)
    case(E, "mul_f64", f64x2, torch.mul)
    case(E, "div_f64", lambda g: [g.normal([3, 4], f64), g.uniform([3, 4], 0.5, 2.0, f64)], torch.div)
    case(E, "pow_f64", lambda g: [g.uniform([3, 4], 0.5, 2.0, f64), g.normal([3, 4], f64)], torch.pow)

    n34 = lambda g: [g.normal([3, 4])]
    case(E, "add_scalar", n34, lambda x: x + 2.5)
    case(E, "sub_scalar", n34, lambda x: x - 1.5)
    case(E, "mul_scalar", n34, lambda x: x * -3.0)
    case(E, "div_scalar", n34, lambda x: x / 4.0)
    case(E, "rsub_scalar", n34, lambda x: 2.0 - x)
    case(E, "rdiv_scalar", lambda g: [g.uniform([3, 4], 0.5, 2.0)], lambda x: 1.5 / x)
    # Loom's double scalars adopt an integral tensor's dtype when integral-valued (PyTorch's Python-int rule).
    case(E, "add_scalar_int", lambda g: [g.ints([3, 4], -9, 9)], lambda x: x + 3)
    case(E, "mul_scalar_int_frac", lambda g: [g.ints([3, 4], -9, 9)], lambda x: x * 0.5)
    case(E, "operators", lambda g: [g.normal([3, 4]), g.normal([3, 4]), g.uniform([3, 4], 0.5, 2.0)],
         lambda a, b, c: [(a + b) * c, a - b / c, -a, 2.0 * a + 1.0, 3.0 - a, 1.0 / c, a / 2.0 - 1.0])

    case(E, "add_inplace", n34x2, lambda a, b: a.add_(b))
    case(E, "sub_inplace", n34x2, lambda a, b: a.sub_(b))
    case(E, "mul_inplace", n34x2, lambda a, b: a.mul_(b))
    case(E, "div_inplace", lambda g: [g.normal([3, 4]), g.uniform([3, 4], 0.5, 2.0)], lambda a, b: a.div_(b))
    case(E, "add_inplace_broadcast", lambda g: [g.normal([3, 4]), g.normal([4])], lambda a, b: a.add_(b))
    case(E, "add_scalar_inplace", n34, lambda a: a.add_(1.5))
    case(E, "mul_scalar_inplace", n34, lambda a: a.mul_(-0.5))

    ties34x2 = lambda g: [g.ints([3, 4], -2, 3, f32), g.ints([3, 4], -2, 3, f32)]
    for name, fn in [("eq", torch.eq), ("ne", torch.ne), ("lt", torch.lt), ("le", torch.le), ("gt", torch.gt),
                     ("ge", torch.ge)]:
        case(E, name, ties34x2, fn)
    ties34 = lambda g: [g.ints([3, 4], -2, 3, f32)]
    for name, fn in [("eq_scalar", lambda x: x == 1.0), ("ne_scalar", lambda x: x != 1.0),
                     ("lt_scalar", lambda x: x < 0.5), ("le_scalar", lambda x: x <= 0.0),
                     ("gt_scalar", lambda x: x > -1.0), ("ge_scalar", lambda x: x >= 1.0)]:
        case(E, name, ties34, fn)
    case(E, "eq_broadcast", lambda g: [g.ints([3, 4], -2, 3, f32), g.ints([4], -2, 3, f32)], torch.eq)
    case(E, "lt_int64", lambda g: [g.ints([3, 4], -2, 3), g.ints([3, 4], -2, 3)], torch.lt)
    case(E, "le_mixed", lambda g: [g.ints([6], -2, 3), g.ints([6], -2, 3, f32)], torch.le)
    case(E, "logical_and", lambda g: [g.bools([3, 4]), g.bools([3, 4])], torch.logical_and)
    case(E, "logical_or", lambda g: [g.bools([3, 4]), g.bools([3, 4])], torch.logical_or)
    case(E, "logical_and_broadcast", lambda g: [g.bools([3, 1]), g.bools([4])], torch.logical_and)

    case(E, "where", lambda g: [g.bools([3, 4]), g.normal([3, 4]), g.normal([4])], torch.where)
    case(E, "where_scalar", lambda g: [g.bools([3, 4]), g.normal([3, 4])], lambda c, a: torch.where(c, a, -1.0))
    case(E, "where_int64", lambda g: [g.bools([3, 4]), g.ints([3, 4], -9, 9), g.ints([3, 4], -9, 9)], torch.where)
    case(E, "where_cond_broadcast", lambda g: [g.bools([3, 1]), g.normal([3, 4]), g.normal([])], torch.where)
    case(E, "masked_fill", lambda g: [g.normal([3, 4]), g.bools([3, 4])], lambda x, m: x.masked_fill(m, -2.5))
    case(E, "masked_fill_broadcast", lambda g: [g.normal([3, 4]), g.bools([3, 1])],
         lambda x, m: x.masked_fill(m, 7.0))
    case(E, "masked_fill_neginf", lambda g: [g.normal([3, 4]), g.bools([3, 4])],
         lambda x, m: x.masked_fill(m, -INF))
    case(E, "masked_fill_int64", lambda g: [g.ints([3, 4], -9, 9), g.bools([3, 4])],
         lambda x, m: x.masked_fill(m, 7))
    near = lambda g: (lambda a: [a, a + 1e-7 * g.normal([3, 4])])(g.normal([3, 4]))
    case(E, "allclose_true", near, lambda a, b: torch.tensor(torch.allclose(a, b, rtol=1e-5, atol=1e-6)))
    case(E, "allclose_false", lambda g: [g.normal([3, 4]), g.normal([3, 4])],
         lambda a, b: torch.tensor(torch.allclose(a, b)))
    case(E, "allclose_loose", lambda g: (lambda a: [a, a * 1.005])(g.normal([3, 4])),
         lambda a, b: torch.tensor(torch.allclose(a, b, rtol=1e-2, atol=0.0)))


# --- reductions and scans ---------------------------------------------------------------------------------
def reduce():
    R = "reduce"
    n345 = lambda g: [g.normal([3, 4, 5])]
    case(R, "sum_all", n345, lambda x: torch.sum(x))
    case(R, "sum_dim1", n345, lambda x: torch.sum(x, (1,)))
    case(R, "sum_dims_keepdim", n345, lambda x: torch.sum(x, (0, 2), keepdim=True))
    case(R, "sum_neg_dim", n345, lambda x: torch.sum(x, (-1,)))
    case(R, "sum_int32", lambda g: [g.ints([3, 4], -50, 50, i32)], lambda x: torch.sum(x, (1,)))
    case(R, "sum_bool", lambda g: [g.bools([3, 4])], lambda x: torch.sum(x))
    case(R, "sum_empty_dim", lambda g: [g.normal([3, 0])], lambda x: torch.sum(x, (1,)))
    case(R, "sum_transposed", lambda g: [g.normal([5, 3])], lambda x: torch.sum(x.t(), (1,)))
    case(R, "sum_long_rows", lambda g: [g.normal([4, 1000])], lambda x: torch.sum(x, (1,)))
    case(R, "sum_f64", lambda g: [g.normal([100], f64)], lambda x: torch.sum(x))
    case(R, "mean_all", n345, lambda x: torch.mean(x))
    case(R, "mean_dims", n345, lambda x: torch.mean(x, (0, 1)))
    case(R, "mean_keepdim", n345, lambda x: torch.mean(x, (2,), keepdim=True))
    case(R, "mean_f64", lambda g: [g.normal([3, 4], f64)], lambda x: torch.mean(x, (1,)))
    case(R, "prod_dim", lambda g: [g.uniform([3, 4], 0.5, 1.5)], lambda x: torch.prod(x, 1))
    case(R, "prod_all", lambda g: [g.uniform([3, 4], 0.5, 1.5)], lambda x: torch.prod(x))
    case(R, "prod_int64", lambda g: [g.ints([6], 1, 4)], lambda x: torch.prod(x))
    case(R, "amax_all", n345, lambda x: torch.amax(x))
    case(R, "amax_dims_keepdim", n345, lambda x: torch.amax(x, (1, 2), keepdim=True))
    case(R, "amin_dim", n345, lambda x: torch.amin(x, (0,)))
    case(R, "amin_neg_dim", n345, lambda x: torch.amin(x, (-1,)))
    case(R, "amax_int64", lambda g: [g.ints([3, 4], -50, 50)], lambda x: torch.amax(x, (1,)))
    case(R, "logsumexp_dim", n345, lambda x: torch.logsumexp(x, (1,)))
    case(R, "logsumexp_multi_keepdim", n345, lambda x: torch.logsumexp(x, (0, 2), keepdim=True))
    case(R, "logsumexp_large", lambda g: [g.normal([3, 6], scale=50.0, shift=1000.0)],
         lambda x: torch.logsumexp(x, (1,)))
    case(R, "logsumexp_neginf", lambda g: [torch.tensor([[-INF, -INF, -INF], [-INF, 0.5, -1.0]])],
         lambda x: torch.logsumexp(x, (1,)))
    case(R, "var_all", n345, lambda x: torch.var(x))
    case(R, "var_dim_correction0", n345, lambda x: torch.var(x, (1,), correction=0))
    case(R, "var_dims_keepdim", n345, lambda x: torch.var(x, (0, 2), keepdim=True))
    case(R, "var_correction2", n345, lambda x: torch.var(x, (2,), correction=2))
    case(R, "var_large_mean", lambda g: [g.normal([4, 64], shift=1e4)], lambda x: torch.var(x, (1,)))
    case(R, "var_f64", lambda g: [g.normal([3, 7], f64)], lambda x: torch.var(x, (1,)))
    b34 = lambda g: [g.bools([3, 4], 0.3)]
    case(R, "any_dim", b34, lambda x: torch.any(x, 1))
    case(R, "all_dim", lambda g: [g.bools([3, 4], 0.7)], lambda x: torch.all(x, 0))
    case(R, "any_all", b34, lambda x: torch.any(x))
    case(R, "all_all", b34, lambda x: torch.all(x))
    case(R, "any_keepdim", b34, lambda x: torch.any(x, 1, keepdim=True))
    n35 = lambda g: [g.normal([3, 5])]
    case(R, "max_dim", n35, lambda x: torch.max(x, 1))
    case(R, "max_dim_keepdim", n35, lambda x: torch.max(x, 0, keepdim=True))
    case(R, "min_dim", n35, lambda x: torch.min(x, 0))
    case(R, "max_ties", lambda g: [g.ints([4, 6], 0, 3, f32)], lambda x: torch.max(x, 1))
    case(R, "min_ties", lambda g: [g.ints([4, 6], 0, 3, f32)], lambda x: torch.min(x, 1))
    case(R, "argmax_dim", n35, lambda x: torch.argmax(x, 1))
    case(R, "argmin_keepdim", n35, lambda x: torch.argmin(x, 0, keepdim=True))
    case(R, "argmax_ties", lambda g: [g.ints([4, 6], 0, 3, f32)], lambda x: torch.argmax(x, 1))
    case(R, "argmin_ties", lambda g: [g.ints([4, 6], 0, 3, f32)], lambda x: torch.argmin(x, 1))
    case(R, "argmax_int64", lambda g: [g.ints([3, 5], -9, 9)], lambda x: torch.argmax(x, 1))
    case(R, "cumsum_dim0", lambda g: [g.normal([4, 3])], lambda x: torch.cumsum(x, 0))
    case(R, "cumsum_dim1", n345, lambda x: torch.cumsum(x, 1))
    case(R, "cumsum_neg_dim", n345, lambda x: torch.cumsum(x, -1))
    case(R, "cumsum_int64", lambda g: [g.ints([3, 5], -9, 9)], lambda x: torch.cumsum(x, 1))
    case(R, "cumsum_transposed", lambda g: [g.normal([5, 3])], lambda x: torch.cumsum(x.t(), 1))
    case(R, "cumprod_dim1", lambda g: [g.uniform([3, 6], 0.5, 1.5)], lambda x: torch.cumprod(x, 1))
    case(R, "cumprod_f64", lambda g: [g.uniform([3, 6], -1.5, 1.5, f64)], lambda x: torch.cumprod(x, 0))


def check_first_extremum():
    """Loom promises the first index among ties; make sure the stored PyTorch answers say the same."""
    for name in ("max_ties", "min_ties", "argmax_ties", "argmin_ties"):
        (x,), outs = FILES["reduce"][name]
        idx = outs[-1]
        target = x.max(1, keepdim=True).values if "max" in name else x.min(1, keepdim=True).values
        first = torch.tensor([int((row == t).nonzero()[0]) for row, t in zip(x, target)])
        assert torch.equal(idx, first), name


# --- linear algebra -------------------------------------------------------------------------------------------
def linalg():
    L = "linalg"
    mm = lambda *shapes, dtype=f32: (lambda g: [g.normal(s, dtype) for s in shapes])
    case(L, "matmul_2d", mm([3, 4], [4, 5]), torch.matmul)
    case(L, "matmul_1d_1d", mm([4], [4]), torch.matmul)
    case(L, "matmul_1d_2d", mm([4], [4, 5]), torch.matmul)
    case(L, "matmul_2d_1d", mm([3, 4], [4]), torch.matmul)
    case(L, "matmul_batched", mm([2, 3, 4], [2, 4, 5]), torch.matmul)
    case(L, "matmul_broadcast", mm([2, 1, 3, 4], [3, 4, 5]), torch.matmul)
    case(L, "matmul_batched_1d", mm([2, 3, 4], [4]), torch.matmul)
    case(L, "matmul_1d_batched", mm([4], [2, 4, 5]), torch.matmul)
    case(L, "matmul_transposed_a", mm([4, 3], [4, 5]), lambda a, b: a.t() @ b)
    case(L, "matmul_transposed_b", mm([3, 4], [5, 4]), lambda a, b: a @ b.t())
    case(L, "matmul_f64", mm([5, 6], [6, 7], dtype=f64), torch.matmul)
    case(L, "matmul_long_k", mm([4, 256], [256, 3]), torch.matmul)
    case(L, "matmul_empty_k", mm([3, 0], [0, 4]), torch.matmul)
    case(L, "bmm", mm([2, 3, 4], [2, 4, 5]), torch.bmm)
    case(L, "bmm_transposed", mm([2, 3, 4], [2, 5, 4]), lambda a, b: torch.bmm(a, b.transpose(1, 2)))
    case(L, "linear", mm([3, 4], [5, 4], [5]), F.linear)
    case(L, "linear_nobias", mm([3, 4], [5, 4]), F.linear)
    case(L, "linear_3d", mm([2, 3, 4], [5, 4], [5]), F.linear)
    case(L, "linear_f64", mm([3, 4], [5, 4], [5], dtype=f64), F.linear)


# --- shape, indexing, factories and conversions -------------------------------------------------------------
def shape():
    S = "shape"
    case(S, "cat_dim0", lambda g: [g.normal([2, 3]), g.normal([1, 3]), g.normal([3, 3])], lambda *t: torch.cat(t, 0))
    case(S, "cat_dim1", lambda g: [g.normal([2, 1]), g.normal([2, 3])], lambda *t: torch.cat(t, 1))
    case(S, "cat_neg_dim", lambda g: [g.normal([2, 2, 3]), g.normal([2, 2, 1])], lambda *t: torch.cat(t, -1))
    case(S, "cat_int64", lambda g: [g.ints([2], 0, 9), g.ints([3], 0, 9)], lambda *t: torch.cat(t, 0))
    case(S, "cat_transposed", lambda g: [g.normal([2, 3]), g.normal([3, 2])], lambda a, b: torch.cat([a, b.t()], 0))
    case(S, "cat_with_empty", lambda g: [g.normal([2, 3]), g.normal([0, 3])], lambda *t: torch.cat(t, 0))
    case(S, "stack_dim0", lambda g: [g.normal([2, 3]) for _ in range(3)], lambda *t: torch.stack(t, 0))
    case(S, "stack_dim1", lambda g: [g.normal([2, 3]) for _ in range(2)], lambda *t: torch.stack(t, 1))
    case(S, "stack_dim_last", lambda g: [g.normal([2, 3]) for _ in range(2)], lambda *t: torch.stack(t, -1))
    case(S, "split_size", lambda g: [g.normal([7, 3])], lambda x: torch.split(x, 3, 0))
    case(S, "split_sizes", lambda g: [g.normal([2, 6])], lambda x: torch.split(x, [1, 2, 3], 1))
    case(S, "chunk", lambda g: [g.normal([7, 2])], lambda x: torch.chunk(x, 3, 0))
    case(S, "chunk_fewer", lambda g: [g.normal([6])], lambda x: torch.chunk(x, 4, 0))
    case(S, "chunk_dim1", lambda g: [g.normal([2, 5])], lambda x: torch.chunk(x, 2, 1))
    case(S, "gather_dim0", lambda g: [g.normal([4, 3]), g.ints([2, 3], 0, 4)], lambda x, i: torch.gather(x, 0, i))
    case(S, "gather_dim1", lambda g: [g.normal([3, 5]), g.ints([3, 4], 0, 5)], lambda x, i: torch.gather(x, 1, i))
    case(S, "gather_3d", lambda g: [g.normal([2, 3, 4]), g.ints([2, 3, 2], 0, 4)],
         lambda x, i: torch.gather(x, -1, i))
    case(S, "scatter_dim0", lambda g: [g.normal([4, 3]), g.unique_index([3, 3], 0, 4), g.normal([3, 3])],
         lambda x, i, s: torch.scatter(x, 0, i, s))
    case(S, "scatter_dim1", lambda g: [g.normal([3, 5]), g.unique_index([3, 2], 1, 5), g.normal([3, 2])],
         lambda x, i, s: torch.scatter(x, 1, i, s))
    case(S, "scatter_add_dim0", lambda g: [g.normal([4, 3]), g.ints([6, 3], 0, 4), g.normal([6, 3])],
         lambda x, i, s: torch.scatter_add(x, 0, i, s))
    case(S, "scatter_add_dim1", lambda g: [g.normal([3, 4]), g.ints([3, 5], 0, 4), g.normal([3, 5])],
         lambda x, i, s: torch.scatter_add(x, 1, i, s))
    case(S, "index_select_dim0", lambda g: [g.normal([5, 3]), g.ints([4], 0, 5)],
         lambda x, i: torch.index_select(x, 0, i))
    case(S, "index_select_dim1", lambda g: [g.normal([3, 5]), g.ints([3], 0, 5)],
         lambda x, i: torch.index_select(x, 1, i))
    case(S, "index_select_transposed", lambda g: [g.normal([5, 3]), g.ints([4], 0, 5)],
         lambda x, i: torch.index_select(x.t(), 1, i))
    case(S, "index_select_int64", lambda g: [g.ints([5, 2], -9, 9), g.ints([3], 0, 5)],
         lambda x, i: torch.index_select(x, 0, i))
    case(S, "index_add_dim0", lambda g: [g.normal([5, 3]), g.ints([6], 0, 5), g.normal([6, 3])],
         lambda x, i, s: torch.index_add(x, 0, i, s))
    case(S, "index_add_dim1", lambda g: [g.normal([3, 5]), g.ints([4], 0, 5), g.normal([3, 4])],
         lambda x, i, s: torch.index_add(x, 1, i, s))
    ties38 = lambda g: [g.ints([3, 8], 0, 4, f32)]
    case(S, "sort_asc", ties38, lambda x: torch.sort(x, dim=-1, stable=True))
    case(S, "sort_desc", ties38, lambda x: torch.sort(x, dim=-1, descending=True, stable=True))
    case(S, "sort_dim0", lambda g: [g.normal([5, 3])], lambda x: torch.sort(x, dim=0, stable=True))
    case(S, "sort_f64", lambda g: [g.normal([2, 6], f64)], lambda x: torch.sort(x, dim=-1, stable=True))
    case(S, "sort_int64", lambda g: [g.ints([2, 7], -3, 3)], lambda x: torch.sort(x, dim=-1, stable=True))
    case(S, "argsort", ties38, lambda x: torch.sort(x, dim=-1, stable=True).indices)
    case(S, "argsort_desc", ties38, lambda x: torch.sort(x, dim=-1, descending=True, stable=True).indices)
    case(S, "argsort_dim0", lambda g: [g.ints([6, 2], 0, 3, f32)], lambda x: torch.sort(x, dim=0, stable=True).indices)
    case(S, "topk_largest", lambda g: [g.distinct([3, 8])], lambda x: torch.topk(x, 3, -1))
    case(S, "topk_smallest", lambda g: [g.distinct([3, 8])], lambda x: torch.topk(x, 3, -1, largest=False))
    case(S, "topk_dim0", lambda g: [g.distinct([6, 3])], lambda x: torch.topk(x, 2, 0))
    case(S, "topk_int64", lambda g: [g.distinct([2, 6], i64)], lambda x: torch.topk(x, 4, -1))
    case(S, "one_hot", lambda g: [g.ints([5], 0, 4)], lambda i: F.one_hot(i))
    case(S, "one_hot_num_classes", lambda g: [g.ints([2, 3], 0, 3)], lambda i: F.one_hot(i, 5))
    n45 = lambda g: [g.normal([4, 5])]
    case(S, "tril", n45, torch.tril)
    case(S, "triu", n45, torch.triu)
    case(S, "tril_diag_neg1", n45, lambda x: torch.tril(x, -1))
    case(S, "triu_diag2", n45, lambda x: torch.triu(x, 2))
    case(S, "tril_batched", lambda g: [g.normal([2, 3, 3])], torch.tril)
    case(S, "triu_int64", lambda g: [g.ints([3, 3], 1, 9)], torch.triu)
    case(S, "tril_transposed", lambda g: [g.normal([5, 4])], lambda x: torch.tril(x.t()))

    none = lambda g: []
    case(S, "arange_end", none, lambda: torch.arange(5))
    case(S, "arange_start_step", none, lambda: torch.arange(1, 10, 3))
    case(S, "arange_float", none, lambda: torch.arange(0, 2, 0.25, dtype=f32))
    case(S, "arange_neg_step", none, lambda: torch.arange(5, -1, -1.5, dtype=f32))
    case(S, "arange_f64", none, lambda: torch.arange(0, 1, 0.1, dtype=f64))
    case(S, "zeros", none, lambda: torch.zeros(2, 3))
    case(S, "ones_int32", none, lambda: torch.ones(4, dtype=i32))
    case(S, "full", none, lambda: torch.full((2, 2), 3.5))
    case(S, "full_int64", none, lambda: torch.full((3,), -7, dtype=i64))
    case(S, "full_bool", none, lambda: torch.full((2,), True))
    case(S, "scalar_tensor", none, lambda: torch.tensor(2.5, dtype=f64))
    n23 = lambda g: [g.normal([2, 3])]
    case(S, "zeros_like", n23, torch.zeros_like)
    case(S, "ones_like", lambda g: [g.ints([2, 3], 0, 9)], torch.ones_like)
    case(S, "full_like", n23, lambda x: torch.full_like(x, -1.25))
    case(S, "to_int64", lambda g: [g.normal([3, 4], scale=3.0)], lambda x: x.to(i64))
    case(S, "to_int32", lambda g: [g.normal([3, 4], scale=3.0)], lambda x: x.to(i32))
    case(S, "to_bool", lambda g: [g.ints([3, 4], -1, 2, f32)], lambda x: x.to(b8))
    case(S, "to_f64", n23, lambda x: x.to(f64))
    case(S, "int_to_f32", lambda g: [g.ints([2, 3], -9, 9)], lambda x: x.to(f32))
    case(S, "bool_to_f32", lambda g: [g.bools([2, 3])], lambda x: x.to(f32))
    case(S, "contiguous_permuted", lambda g: [g.normal([2, 3, 4])], lambda x: x.permute(2, 0, 1).contiguous())
    case(S, "clone_strided", lambda g: [g.normal([4, 6])], lambda x: x[1:4:2, ::3].clone())
    case(S, "copy_broadcast", lambda g: [g.normal([4])], lambda s: torch.zeros(3, 4).copy_(s))
    case(S, "fill", n23, lambda x: x.fill_(0.75))


# --- neural-network ops --------------------------------------------------------------------------------------
def masked_softmax(x, mask, dim):
    return torch.softmax(x.masked_fill(mask, -INF), dim).nan_to_num(0.0)


def masked_log_softmax(x, mask, dim):
    r = torch.log_softmax(x.masked_fill(mask, -INF), dim)
    return torch.where(torch.isnan(r), torch.full_like(r, -INF), r)


def row_masked(shape, full_row):
    """Random bool mask with row `full_row` (of the last two dims) fully excluded."""
    def make(g):
        m = g.bools(shape, 0.3)
        m[..., full_row, :] = True
        return m
    return make


def nn():
    N = "nn"
    n35 = lambda g: [g.normal([3, 5])]
    case(N, "softmax_last", n35, lambda x: torch.softmax(x, -1))
    case(N, "softmax_dim0", n35, lambda x: torch.softmax(x, 0))
    case(N, "softmax_dim1_3d", lambda g: [g.normal([2, 3, 4])], lambda x: torch.softmax(x, 1))
    case(N, "softmax_large", lambda g: [g.normal([3, 5], scale=100.0, shift=1000.0)], lambda x: torch.softmax(x, -1))
    case(N, "softmax_f64", lambda g: [g.normal([3, 5], f64)], lambda x: torch.softmax(x, -1))
    case(N, "softmax_neginf", lambda g: [torch.tensor([[-INF, 0.0, 1.0], [2.0, -INF, -INF]])],
         lambda x: torch.softmax(x, -1))
    case(N, "softmax_masked", lambda g: [g.normal([3, 5]), row_masked([3, 5], 1)(g)],
         lambda x, m: masked_softmax(x, m, -1))
    case(N, "softmax_masked_broadcast", lambda g: [g.normal([2, 3, 5]), g.bools([1, 5], 0.4)],
         lambda x, m: masked_softmax(x, m, -1))
    case(N, "softmax_masked_dim0", lambda g: [g.normal([4, 3]), g.bools([4, 3], 0.3)],
         lambda x, m: masked_softmax(x, m, 0))
    case(N, "log_softmax_last", n35, lambda x: torch.log_softmax(x, -1))
    case(N, "log_softmax_dim0", n35, lambda x: torch.log_softmax(x, 0))
    case(N, "log_softmax_large", lambda g: [g.normal([3, 5], scale=100.0, shift=-1000.0)],
         lambda x: torch.log_softmax(x, -1))
    case(N, "log_softmax_f64", lambda g: [g.normal([3, 5], f64)], lambda x: torch.log_softmax(x, -1))
    case(N, "log_softmax_masked", lambda g: [g.normal([3, 5]), row_masked([3, 5], 2)(g)],
         lambda x, m: masked_log_softmax(x, m, -1))
    case(N, "layer_norm", lambda g: [g.normal([3, 8]), g.normal([8]), g.normal([8])],
         lambda x, w, b: F.layer_norm(x, (8,), w, b))
    case(N, "layer_norm_no_affine", lambda g: [g.normal([3, 8])], lambda x: F.layer_norm(x, (8,)))
    case(N, "layer_norm_weight_only", lambda g: [g.normal([3, 8]), g.normal([8])],
         lambda x, w: F.layer_norm(x, (8,), w))
    case(N, "layer_norm_2d", lambda g: [g.normal([2, 3, 4]), g.normal([3, 4]), g.normal([3, 4])],
         lambda x, w, b: F.layer_norm(x, (3, 4), w, b))
    case(N, "layer_norm_eps", lambda g: [g.normal([3, 8], scale=0.05)], lambda x: F.layer_norm(x, (8,), eps=1e-2))
    case(N, "layer_norm_large_mean", lambda g: [g.normal([3, 16], shift=100.0)], lambda x: F.layer_norm(x, (16,)))
    case(N, "layer_norm_f64", lambda g: [g.normal([3, 8], f64), g.normal([8], f64), g.normal([8], f64)],
         lambda x, w, b: F.layer_norm(x, (8,), w, b))
    case(N, "embedding", lambda g: [g.ints([4], 0, 6), g.normal([6, 3])], F.embedding)
    case(N, "embedding_2d", lambda g: [g.ints([2, 3], 0, 6), g.normal([6, 3])], F.embedding)
    ce = lambda g: [g.normal([5, 4]), g.ints([5], 0, 4)]
    case(N, "cross_entropy_mean", ce, F.cross_entropy)
    case(N, "cross_entropy_sum", ce, lambda x, t: F.cross_entropy(x, t, reduction="sum"))
    case(N, "cross_entropy_none", ce, lambda x, t: F.cross_entropy(x, t, reduction="none"))

    def ignored(value, positions):
        def make(g):
            x, t = g.normal([6, 4]), g.ints([6], 0, 4)
            t[positions] = value
            return [x, t]
        return make
    case(N, "cross_entropy_ignore_index", ignored(-100, [1, 4]), F.cross_entropy)
    case(N, "cross_entropy_ignore_custom", ignored(2, [0, 3]),
         lambda x, t: F.cross_entropy(x, t, ignore_index=2, reduction="none"))
    case(N, "cross_entropy_ignore_sum", ignored(-100, [2]), lambda x, t: F.cross_entropy(x, t, reduction="sum"))
    case(N, "cross_entropy_3d", lambda g: [g.normal([2, 4, 3]), g.ints([2, 3], 0, 4)], F.cross_entropy)
    case(N, "cross_entropy_large_logits", lambda g: [g.normal([4, 5], scale=100.0), g.ints([4], 0, 5)],
         F.cross_entropy)
    case(N, "cross_entropy_f64", lambda g: [g.normal([5, 4], f64), g.ints([5], 0, 4)], F.cross_entropy)
    case(N, "dropout_eval", n35, lambda x: F.dropout(x, 0.5, training=False))
    case(N, "dropout_p0", n35, lambda x: F.dropout(x, 0.0, training=True))


def format_file():
    """Known values of every dtype, for tests/test_safetensors.cpp (ReadsFileWrittenByPython)."""
    tensors = {
        "f32": torch.tensor([[0.5, -1.25, 3.0], [1e-3, -0.0, 65504.0]], dtype=f32),
        "f64": torch.tensor([math.pi, -math.e], dtype=f64),
        "i64": torch.tensor([[-2**63, -1], [0, 2**63 - 1]], dtype=i64),
        "i32": torch.tensor([-2**31, 5, 2**31 - 1], dtype=i32),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(7.0, dtype=f32),
        "empty": torch.zeros(0, 4, dtype=f32),
    }
    save_safetensors(os.path.join(HERE, "format.safetensors"), tensors, metadata("format"))


def metadata(family):
    return {"torch_version": torch.__version__, "generator": "tests/golden/make_golden.py", "command": COMMAND,
            "family": family}


def main():
    torch.use_deterministic_algorithms(True)
    elementwise()
    reduce()
    check_first_extremum()
    linalg()
    shape()
    nn()
    for family, cases in FILES.items():
        tensors = {}
        for name, (inputs, outputs) in cases.items():
            for i, t in enumerate(inputs):
                tensors[f"{name}/in{i}"] = t
            for j, t in enumerate(outputs):
                tensors[f"{name}/out{j}"] = t
        path = os.path.join(HERE, f"{family}.safetensors")
        save_safetensors(path, tensors, metadata(family))
        print(f"{path}: {len(cases)} cases, {os.path.getsize(path)} bytes")
    format_file()


if __name__ == "__main__":
    main()
