#!/usr/bin/env python3
"""PyTorch on the GPU, the configurations of bench/bench_cuda.cpp (issue 9), one JSON line each:

  Matmul/<n>         torch.matmul of two [n, n] float32 matrices
  Attention/<L>      F.scaled_dot_product_attention forward + backward, [4, 8, L, 64] float32, causal, pinned
                     to the memory-efficient kernel (sdpa_backend says whether that held)
  MultiDimAttention/<r>  Bi-BloSA's feature-wise attention forward + backward, [512, r, 300] float32, forward
                     mask, as the reference code computes it (tests/golden/blosa/make_blosa_golden.py: the
                     whole [N, r, r, d] score tensor)
  LshAttention/<L>   shared-QK LSH attention forward + backward, qk and v [8, L, 64] float32 (bench_cuda's [1, 8,
                     L, 64]), chunks of 64 seeing the previous one, 2 rounds, causal: bench/pytorch/reformer_lm.py's
                     LSHAttention (reformer-pytorch's computation: sort, gather, [chunk, 2 chunk] logits per
                     chunk, unsort, rounds combined by their logsumexps), L / 64 buckets
  ReformerStep/<L>   one training step of bench/pytorch/reformer_lm.py's model (Loom's bench_reformer model)
  ReformerLongest    that step at L = 2^14, 2^15, ... until the GPU runs out of memory (or 45 s have
                     passed): the longest trainable L, as bench_cuda's ReformerLongest. The reference hashes
                     with unfactorised rotations, [L, L / 128] per head and round, as reformer-pytorch does

Times are means over timed iterations after warm-up, each ended by torch.cuda.synchronize(); peak_bytes is
torch.cuda.max_memory_allocated above what was allocated before the timed steps (Loom's counter is its own
device allocator's high-water mark above the same base). Run on the GPU machine by bench/gpu_session.sh.
"""
import argparse
import contextlib
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def timed(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sum(times) / len(times), torch.cuda.max_memory_allocated() - base


@contextlib.contextmanager
def cuda_by_default():
    """Factories given no device create on the GPU, as the references build their masks and rotations."""
    torch.set_default_device("cuda")
    try:
        yield
    finally:
        torch.set_default_device("cpu")


def report(name, seconds, peak, flops=None, tokens=None, **extra):
    out = dict(name=name, torch=torch.__version__, device=torch.cuda.get_device_name(), ms=seconds * 1e3,
               peak_bytes=peak, **extra)
    if flops is not None:
        out["tflop_s"] = flops / seconds / 1e12
    if tokens is not None:
        out["tokens_s"] = tokens / seconds
    print(json.dumps(out), flush=True)


def elementwise(log2n, repeats):
    """bench_cuda's Add/<log2 n> and Gelu/<log2 n>: bandwidth-bound maps on float32."""
    n = 1 << log2n
    a, b = torch.randn(n, device="cuda"), torch.randn(n, device="cuda")
    for name, fn, nbytes in (("Add", lambda: a + b, 12), ("Gelu", lambda: F.gelu(a), 8)):
        s, peak = timed(fn, repeats)
        out = dict(name=f"{name}/{log2n}", torch=torch.__version__, device=torch.cuda.get_device_name(),
                   us=s * 1e6, peak_bytes=peak, gb_s=nbytes * n / s / 1e9)
        print(json.dumps(out), flush=True)


def matmul(n, repeats):
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
    s, peak = timed(lambda: torch.matmul(a, b), repeats)
    report(f"Matmul/{n}", s, peak, flops=2.0 * n ** 3)


def attention(length, repeats):
    q, k, v = (torch.randn(4, 8, length, 64, device="cuda", requires_grad=True) for _ in range(3))
    probe = torch.randn(4, 8, length, 64, device="cuda")

    def step():
        for t in (q, k, v):
            t.grad = None
        F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(probe)

    # Pinned to the memory-efficient kernel, the one PyTorch picks for float32 (flash attention takes only
    # half types) and the one Loom's fused kernels compare with: the math fallback would hold the L x L
    # scores. If it cannot be pinned, the default choice is timed and the line says so.
    try:
        with efficient_sdpa_only():
            s, peak = timed(step, repeats)
        backend = "efficient"
    except Exception as e:  # noqa: BLE001 - an older or newer torch without this switch, or the kernel refused
        s, peak = timed(step, repeats)
        backend = f"default ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    report(f"Attention/{length}", s, peak, flops=3.0 * 4.0 * 4 * 8 * length * length * 64 / 2,
           sdpa_backend=backend)


def efficient_sdpa_only():
    """A context in which F.scaled_dot_product_attention may use only its memory-efficient kernel."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch 2.3 and later
        return sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION)
    except ImportError:
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_math=False, enable_mem_efficient=True)


def multi_dim_attention(length, repeats):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden",
                                    "blosa"))
    import make_blosa_golden  # the TF-shaped reference of Loom's golden tests

    blocks, d = 512, 300
    q, k, v = (torch.randn(blocks, length, d, device="cuda", requires_grad=True) for _ in range(3))
    bias = torch.randn(d, device="cuda", requires_grad=True)
    probe = torch.randn(blocks, length, d, device="cuda")

    def step():
        for t in (q, k, v, bias):
            t.grad = None
        make_blosa_golden.multi_dim_attention(q, k, v, bias, "forward", None, True).backward(probe)

    with cuda_by_default():  # the reference builds its direction mask on the default device
        s, peak = timed(step, repeats)
    out = dict(name=f"MultiDimAttention/{length}", torch=torch.__version__, device=torch.cuda.get_device_name(),
               ms=s * 1e3, peak_bytes=peak, scores_s=blocks * length * length * d / s)
    print(json.dumps(out), flush=True)


def lsh_attention(length, repeats):
    import reformer_lm  # the PyTorch reference of bench_reformer's LSH attention

    with cuda_by_default():
        attn = reformer_lm.LSHAttention(causal=True)
        qk, v = (torch.randn(8, length, reformer_lm.DIM_HEAD, requires_grad=True) for _ in range(2))
        probe = torch.randn(8, length, reformer_lm.DIM_HEAD)

        def step():
            qk.grad = v.grad = None
            attn(qk, v).backward(probe)

        s, peak = timed(step, repeats)
        report(f"LshAttention/{length}", s, peak, tokens=length)


def reformer_step(length, repeats):
    import reformer_lm  # the PyTorch reference model of bench_reformer

    with cuda_by_default():
        model, opt = reformer_lm.make(dict(len=length, layers=6))
        g = torch.Generator().manual_seed(1)
        x, y = (torch.randint(0, reformer_lm.VOCAB, (1, length), generator=g, device="cpu").cuda() for _ in range(2))
        s, peak = timed(lambda: reformer_lm.step(model, opt, x, y), repeats, warmup=1)
        report(f"ReformerStep/{length}", s, peak, tokens=length)


def reformer_longest(first=1 << 14, last=1 << 24, budget_s=45.0):
    import reformer_lm

    longest, seconds, peak, stop = 0, 0.0, 0, "reached the last length"
    started = time.perf_counter()
    length = first
    while length <= last:
        if time.perf_counter() - started > budget_s:
            stop = f"stopped before L = {length}: the {budget_s:.0f} s budget is spent"
            break
        model = opt = x = y = None
        try:
            with cuda_by_default():
                model, opt = reformer_lm.make(dict(len=length, layers=6))
                x, y = (torch.randint(0, reformer_lm.VOCAB, (1, length)) for _ in range(2))
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                reformer_lm.step(model, opt, x, y)
                torch.cuda.synchronize()
                seconds, peak, longest = time.perf_counter() - start, torch.cuda.max_memory_allocated(), length
        except torch.cuda.OutOfMemoryError as e:
            stop = f"stopped at L = {length}: {str(e).splitlines()[0]}"
            break
        finally:
            model = opt = x = y = None
            torch.cuda.empty_cache()
        length *= 2
    print(json.dumps(dict(name="ReformerLongest", torch=torch.__version__, device=torch.cuda.get_device_name(),
                          longest_len=longest, longest_step_s=seconds, longest_peak_bytes=peak, label=stop)),
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    assert torch.cuda.is_available(), "no CUDA device visible to PyTorch"
    for log2n in (20, 24, 27):
        elementwise(log2n, args.repeats)
    for n in (1024, 2048, 4096, 8192):
        matmul(n, args.repeats)
    for length in (1024, 2048, 4096):
        attention(length, args.repeats)
    for length in (16, 32, 64):
        multi_dim_attention(length, args.repeats)
    for length in (4096, 16384, 65536):
        try:
            lsh_attention(length, args.repeats)
        except Exception as e:  # noqa: BLE001 - report and go on (out of memory, say)
            print(json.dumps(dict(name=f"LshAttention/{length}", error=str(e).splitlines()[0])), flush=True)
    for length in (4096, 16384, 65536):
        try:
            reformer_step(length, max(2, args.repeats // 3))
        except Exception as e:  # noqa: BLE001 - report and go on (out of memory, say)
            print(json.dumps(dict(name=f"ReformerStep/{length}", error=str(e).splitlines()[0])), flush=True)
    reformer_longest()


if __name__ == "__main__":
    main()
