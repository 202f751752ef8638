// lsh_attention: argument checks, hashing and sorting (composed of ops), the backend's per-chunk kernels, the
// combination of the rounds, and one tape entry whose backward runs the same steps in reverse.
#include "loom/ops/lsh_attention.h"

#include <algorithm>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/lsh.h"
#include "loom/ops/nn_ops.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom {
namespace {

constexpr const char* kOp = "lsh_attention";

// index [B, H, N] -> [B, H, N, e] without copying (gather reads it through stride 0).
Tensor rows_index(const Tensor& index, int64_t e) {
  return index.unsqueeze(-1).expand({index.size(0), index.size(1), index.size(2), e});
}

// index [B, H, N] into rows of each (b, h) matrix of `rows` rows -> one flat index into [B H rows, e].
Tensor flat_index(const Tensor& index, int64_t rows) {
  const int64_t g = index.size(0) * index.size(1);
  Tensor base =
      mul(arange(static_cast<double>(g), {DType::Int64, index.device()}), static_cast<double>(rows));
  return add(index.reshape({g, index.size(2)}), base.view({g, 1})).reshape({g * index.size(2)});
}

// The sorted layout of one call: which original position each sorted row holds, and where each (round,
// position) went. Everything that follows is a constant of the op (no gradient through hashing or sorting).
// The permutations move whole rows with index_select / index_add over the flattened [B H rows, e] matrix.
struct Sorting {
  int64_t b = 0, h = 0, n_hashes = 1, l = 0;
  Tensor spos;  // [B, H, N] int64: original position of sorted row n
  Tensor slot;  // [B, H, N] int64: row (r L + t) of the round-major unsorted layout that sorted row n came from
  Tensor undo;  // [B, H, N] int64: sorted row of (round r, position t), indexed by r L + t
  Tensor fpos, fslot, fundo;  // the same as flat row indices (a block's layout only)

  // The sort key (bucket, position) of each round, made unique by the position, sorted round by round.
  Sorting(const Tensor& buckets, int64_t l_)
      : b(buckets.size(0)), h(buckets.size(1)), n_hashes(buckets.size(2)), l(l_) {
    const int64_t n = n_hashes * l;
    Device dev = buckets.device();
    Tensor key =
        add(mul(buckets, static_cast<double>(l)), arange(static_cast<double>(l), {DType::Int64, dev}));
    spos = argsort(key, -1).reshape({b, h, n});  // argsort within each round: positions in [0, L)
    Tensor round_base =
        mul(arange(static_cast<double>(n_hashes), {DType::Int64, dev}), static_cast<double>(l));
    slot = add(spos.view({b, h, n_hashes, l}), round_base.view({n_hashes, 1})).reshape({b, h, n});
    Tensor rows = arange(static_cast<double>(n), {DType::Int64, dev}).view({1, 1, n}).expand({b, h, n});
    undo = scatter(zeros({b, h, n}, {DType::Int64, dev}), 2, slot, rows.contiguous());
  }
  // The layout of a block of (batch, head) pairs (see Block below), with its flat row indices.
  Sorting(Tensor spos_, Tensor slot_, Tensor undo_, int64_t n_hashes_, int64_t l_)
      : b(spos_.size(0)),
        h(spos_.size(1)),
        n_hashes(n_hashes_),
        l(l_),
        spos(std::move(spos_)),
        slot(std::move(slot_)),
        undo(std::move(undo_)) {
    flatten();
  }
  // The identity layout of the dense path (one round, one chunk).
  Sorting(int64_t b_, int64_t h_, int64_t l_, Device dev) : b(b_), h(h_), n_hashes(1), l(l_) {
    spos = arange(static_cast<double>(l), {DType::Int64, dev}).view({1, 1, l}).expand({b, h, l}).contiguous();
    slot = spos;
    undo = spos;
  }
  void flatten() {
    fpos = flat_index(spos, l);
    fslot = flat_index(slot, n_hashes * l);
    fundo = flat_index(undo, n_hashes * l);
  }
  Tensor rows(const Tensor& x, const Tensor& index) const {
    const int64_t e = x.size(3);
    return index_select(x.reshape({x.size(0) * x.size(1) * x.size(2), e}), 0, index)
        .view({b, h, n_hashes * l, e});
  }
  // rows [B, H, L, e] -> sorted [B, H, N, e] (round r's copy of position t at its sorted row).
  Tensor sort_from_positions(const Tensor& x) const { return rows(x, fpos); }
  // round-major rows [B, H, N, e] -> sorted [B, H, N, e], and back.
  Tensor sort_rows(const Tensor& x) const { return rows(x, fslot); }
  Tensor unsort_rows(const Tensor& x) const { return rows(x, fundo); }
};

// log N_ij for every (sorted row, window entry) [B, H, N, W]: N_ij counts, over the rounds r' of query i and
// r'' of key j and the window offsets o, the times chunk(j, r'') = chunk(i, r') + o (mod n_ch), i.e. how many
// times the pair meets in all of i's windows (>= 1: this meeting). Subtracting its log makes the
// round-combined softmax, which is one softmax over every meeting, count each distinct key once (paper eq.
// 16).
Tensor duplicate_bias(const Sorting& s, const LshAttentionOptions& o, DType dtype) {
  const int64_t b = s.spos.size(0), h = s.spos.size(1), n = s.spos.size(2), c = o.chunk_len, n_ch = n / c,
                nr = s.n_hashes, l = s.l, w = (o.n_chunks_before + 1 + o.n_chunks_after) * c;
  Device dev = s.spos.device();
  std::vector<int64_t> chunk_of_row(static_cast<size_t>(n)), key_row;
  for (int64_t m = 0; m < n; ++m) chunk_of_row[static_cast<size_t>(m)] = m / c;
  for (int64_t q = 0; q < n_ch; ++q)
    for (int64_t i = -o.n_chunks_before; i <= o.n_chunks_after; ++i)
      for (int64_t e = 0; e < c; ++e) key_row.push_back(((q + i) % n_ch + n_ch) % n_ch * c + e);
  // chunk of (position t, round r): [B, H, L, nr]
  Tensor loc = index_select(tensor(chunk_of_row).to(dev), 0, s.undo.reshape({b * h * n}))
                   .view({b, h, nr, l})
                   .transpose(2, 3)
                   .contiguous();
  Tensor li = gather(loc, 2, rows_index(s.spos, nr)).view({b, h, n_ch, c, 1, 1, nr});
  Tensor kpos = index_select(s.spos, 2, tensor(key_row).to(dev));  // [B, H, n_ch W]
  Tensor lj = gather(loc, 2, rows_index(kpos, nr)).view({b, h, n_ch, 1, w, nr, 1});
  Tensor count;
  for (int64_t i = -o.n_chunks_before; i <= o.n_chunks_after; ++i) {
    Tensor shifted = add(li, static_cast<double>((i % n_ch + n_ch) % n_ch));
    shifted = where(ge(shifted, static_cast<double>(n_ch)), sub(shifted, static_cast<double>(n_ch)), shifted);
    Tensor hits = sum(eq(lj, shifted).to(dtype), {-2, -1});  // [B, H, n_ch, C, W]
    count = count.defined() ? add(count, hits) : hits;
  }
  return log(count).reshape({b, h, n, w});
}

void check_input(const char* name, const Tensor& t, const Tensor& qk) {
  LOOM_CHECK(t.defined(), kOp, ": ", name, " is undefined");
  LOOM_CHECK(is_floating(t.dtype()) && t.dtype() == qk.dtype(), kOp, ": ", name,
             " must be float32 or float64 like qk, got ", describe(t), " and qk ", describe(qk));
  LOOM_CHECK(t.device() == qk.device(), kOp, ": ", name, " is on ", t.device(), " but qk is on ",
             qk.device());
}

// The buckets a call uses: replayed (checked) or hashed from rotations drawn per head; padding to the extra
// bucket.
Tensor resolve_buckets(const Tensor& qk, const Tensor& replay, const Tensor& padding,
                       const LshAttentionOptions& o, const std::vector<int64_t>& nb) {
  const int64_t b = qk.size(0), h = qk.size(1), l = qk.size(2), d = qk.size(3);
  const int64_t total = lsh_total_buckets(nb, kOp);
  if (replay.defined()) {
    LOOM_CHECK(replay.dtype() == DType::Int64 && replay.device() == qk.device(), kOp,
               ": buckets to replay must be int64 on ", qk.device(), ", got ", describe(replay));
    LOOM_CHECK(replay.shape() == Shape({b, h, o.n_hashes, l}), kOp,
               ": buckets to replay must have shape [B, H, n_hashes, L] = ", Shape({b, h, o.n_hashes, l}),
               ", got ", replay.shape());
    const int64_t lo = loom::amin(replay).item<int64_t>(), hi = loom::amax(replay).item<int64_t>();
    LOOM_CHECK(lo >= 0 && hi <= (padding.defined() ? total : total - 1), kOp,
               ": buckets to replay must lie in [0, ", total,
               padding.defined() ? "] (the last one for padding)" : ")", " for n_buckets ", list_str(nb),
               ", got values in [", lo, ", ", hi, "]");
    return replay.contiguous();
  }
  int64_t columns = 0;
  for (int64_t f : nb) columns += f / 2;
  Tensor rotations = o.has_seed ? lsh_rotations(d, o.n_hashes, nb, o.seed, 0, qk.dtype(), h)
                                : randn({h, d, o.n_hashes, columns}, qk.dtype());
  Tensor buckets = lsh_hash(qk, rotations.to(qk.device()), nb);  // [B, H, nr, L]
  if (padding.defined())
    buckets = masked_fill(buckets, padding.view({b, 1, 1, l}), static_cast<double>(total));
  return buckets.contiguous();
}

// A block of (batch, head) pairs that the op processes at once: whole batches [b0, b0 + nb) when nh = H, or
// heads [h0, h0 + nh) of one batch (nb = 1), so that every [B, H, ...] tensor's part is contiguous. The
// sorted copies of queries and values, the sorted outputs' gradients and the kernels' results exist for one
// block at a time: with a long sequence a block is a single head, and the op's transient memory is that of
// one (batch, head) pair, not of all B H of them (the peak of a long sequence's training step is this op's
// backward).
struct Block {
  int64_t b0, nb, h0, nh;
  Tensor part(const Tensor& t) const { return t.narrow(0, b0, nb).narrow(1, h0, nh); }
  Tensor padding(const Tensor& pad) const { return pad.defined() ? pad.narrow(0, b0, nb) : Tensor(); }
  Tensor optional_part(const Tensor& t) const { return t.defined() ? part(t) : Tensor(); }
  Sorting sorting(const Sorting& s) const {
    return Sorting(part(s.spos), part(s.slot), part(s.undo), s.n_hashes, s.l);
  }
};

// The blocks of a call with at most block_rows sorted rows each (LshAttentionOptions). The default, 2^16 rows
// of 64 floats, is 16 MB per sorted copy: up to 4K tokens with 2 rounds and 4 heads run as one block.
std::vector<Block> blocks(int64_t b, int64_t h, int64_t n, int64_t block_rows) {
  std::vector<Block> out;
  const int64_t pairs = std::max<int64_t>(1, block_rows / std::max<int64_t>(n, 1));
  if (pairs >= h) {
    const int64_t per = std::min(b, pairs / h);
    for (int64_t b0 = 0; b0 < b; b0 += per) out.push_back({b0, std::min(per, b - b0), 0, h});
  } else {
    for (int64_t b0 = 0; b0 < b; ++b0)
      for (int64_t h0 = 0; h0 < h; h0 += pairs) out.push_back({b0, 1, h0, std::min(pairs, h - h0)});
  }
  return out;
}

// What the backward pass keeps: the inputs, the sorted layout and, when the call ran as one block, the kernel's
// sorted outputs. With several blocks the outputs ([B, H, n_hashes L, dv], as large as all rounds' attention
// results) are not kept: backward reruns each block's forward kernel (deterministic, so bit for bit the same)
// and holds one block's outputs at a time. With one block that would save nothing, so they are kept.
struct Saved {
  autograd::SavedTensor qk, v, padding, bias, spos, slot, undo, sout, slse;
  Backend::LshChunks chunks;
  int64_t n_hashes, l;
  std::vector<Block> parts;
};

// One block's sorted kernel outputs: [nb, nh, n_hashes L, dv] and their log-sum-exps [nb, nh, n_hashes L].
struct SortedOutputs {
  Tensor out, lse;
};

SortedOutputs run_block(Backend& be, const Sorting& s, const Block& blk, const Tensor& q, const Tensor& v,
                        const Tensor& padding, const Tensor& bias, const Backend::LshChunks& chunks) {
  const int64_t nn = s.spos.size(2);
  SortedOutputs so{Tensor::empty({blk.nb, blk.nh, nn, v.size(3)}, q.options()),
                   Tensor::empty({blk.nb, blk.nh, nn}, q.options())};
  be.lsh_attention_forward(s.sort_from_positions(blk.part(q)), s.sort_from_positions(blk.part(v)), s.spos,
                           blk.padding(padding), blk.optional_part(bias), chunks, so.out, so.lse);
  return so;
}

// Rounds combined: out [B, H, L, dv] = Σ_r w_r o_r with w = softmax over r of lse; o [B, H, nr, L, dv],
// lse [B, H, nr, L] are the un-sorted round outputs.
struct Rounds {
  Tensor o, w, out;
  // combine = false (the backward): o and w only; out is not needed there.
  Rounds(const Sorting& s, const Tensor& sout, const Tensor& slse, bool combine = true) {
    const int64_t b = sout.size(0), h = sout.size(1), dv = sout.size(3), nr = s.n_hashes, l = s.l;
    o = s.unsort_rows(sout).view({b, h, nr, l, dv});
    if (nr == 1) {
      out = o.view({b, h, l, dv});
      return;
    }
    Tensor lse = s.unsort_rows(slse.unsqueeze(-1)).view({b, h, nr, l});
    w = softmax(lse, 2);
    if (combine) out = sum(mul(o, w.unsqueeze(-1)), {2});
  }
};

}  // namespace

LshAttentionResult lsh_attention(const Tensor& qk, const Tensor& v, const LshAttentionOptions& opts,
                                 const Tensor& padding_mask, const Tensor& buckets) {
  check_input("qk", qk, qk);
  check_input("v", v, qk);
  LOOM_CHECK(qk.dim() == 4 && v.dim() == 4 && v.size(0) == qk.size(0) && v.size(1) == qk.size(1) &&
                 v.size(2) == qk.size(2),
             kOp, ": expected qk [B, H, L, d] and v [B, H, L, dv], got shapes ", qk.shape(), " and ",
             v.shape());
  const int64_t b = qk.size(0), h = qk.size(1), l = qk.size(2), dv = v.size(3);
  LOOM_CHECK(qk.size(3) > 0 && l > 0, kOp, ": qk of shape ", qk.shape(), " has no positions or features");
  LOOM_CHECK(opts.chunk_len > 0 && opts.n_chunks_before >= 0 && opts.n_chunks_after >= 0 && opts.n_hashes > 0,
             kOp,
             ": expected chunk_len > 0, n_chunks_before >= 0, n_chunks_after >= 0 and n_hashes > 0, got ",
             opts.chunk_len, ", ", opts.n_chunks_before, ", ", opts.n_chunks_after, " and ", opts.n_hashes);
  LOOM_CHECK(opts.block_rows > 0, kOp, ": block_rows must be positive, got ", opts.block_rows);
  if (padding_mask.defined())
    LOOM_CHECK(padding_mask.dtype() == DType::Bool && padding_mask.shape() == Shape({b, l}) &&
                   padding_mask.device() == qk.device(),
               kOp, ": padding_mask must be bool [B, L] = ", Shape({b, l}), " on ", qk.device(), ", got ",
               describe(padding_mask));
  const bool dense = opts.dense_when_short && l <= opts.chunk_len;
  LOOM_CHECK(dense || l % opts.chunk_len == 0, kOp, ": the sequence length L = ", l, " of qk ", qk.shape(),
             " must be a multiple of chunk_len = ", opts.chunk_len,
             " (pad the sequence and mark the padding)");

  autograd::OpScope scope(kOp, {qk, v});
  Tensor q = qk.contiguous(), vv = v.contiguous();
  Tensor padding = padding_mask.defined() ? padding_mask.contiguous() : Tensor();
  LshAttentionResult result;
  LshAttentionOptions o = opts;
  Sorting sorting = [&] {
    if (dense) {
      o.chunk_len = l;
      o.n_chunks_before = o.n_chunks_after = 0;
      o.n_hashes = 1;
      return Sorting(b, h, l, q.device());
    }
    std::vector<int64_t> nb =
        opts.n_buckets.empty() ? lsh_default_buckets(l, opts.chunk_len) : opts.n_buckets;
    result.buckets = resolve_buckets(q, buckets, padding, opts, nb);
    return Sorting(result.buckets, l);
  }();
  const int64_t n = o.n_hashes * l;
  Backend::LshChunks chunks{o.chunk_len, o.n_chunks_before, o.n_chunks_after, o.causal};
  Tensor bias = o.allow_duplicate_attention ? Tensor() : duplicate_bias(sorting, o, q.dtype());

  Backend& be = backend_for(q.device());
  const std::vector<Block> parts = blocks(b, h, n, o.block_rows);
  const bool keep_outputs = parts.size() == 1;
  Tensor sout, slse;
  result.out = Tensor::empty({b, h, l, dv}, q.options());
  for (const Block& blk : parts) {
    Sorting s = blk.sorting(sorting);
    SortedOutputs so = run_block(be, s, blk, q, vv, padding, bias, chunks);
    blk.part(result.out).copy_(Rounds(s, so.out, so.lse).out);
    if (keep_outputs) sout = std::move(so.out), slse = std::move(so.lse);
  }

  if (scope.recording()) {
    Saved saved{scope.save(q),
                scope.save(vv),
                scope.save(padding),
                scope.save(bias),
                scope.save(sorting.spos),
                scope.save(sorting.slot),
                scope.save(sorting.undo),
                scope.save(sout),
                scope.save(slse),
                chunks,
                o.n_hashes,
                l,
                parts};
    scope.record({result.out}, [saved = std::move(saved), need_qk = scope.needs_grad(0),
                                need_v = scope.needs_grad(1)](std::vector<Tensor>& g) {
      NoGradGuard no_grad;
      const Tensor &q_ = saved.qk.get(), &v_ = saved.v.get();
      // Taken from the engine, so that a strided incoming gradient is not kept beside its contiguous copy.
      const Tensor grad = [&g] {
        Tensor incoming = std::move(g[0]);
        return incoming.contiguous();
      }();
      const int64_t ll = grad.size(2), dvv = grad.size(3);
      // The results are allocated after the first block's kernel, when its sorted copies are gone: with one
      // block (short sequences) they never coexist.
      Tensor d_qk, d_v;
      Backend& backend = backend_for(grad.device());
      for (const Block& blk : saved.parts) {
        Sorting s(blk.part(saved.spos.get()), blk.part(saved.slot.get()), blk.part(saved.undo.get()),
                  saved.n_hashes, saved.l);
        SortedOutputs so = saved.sout.defined()
                               ? SortedOutputs{saved.sout.get(), saved.slse.get()}
                               : run_block(backend, s, blk, q_, v_, saved.padding.get(), saved.bias.get(),
                                           saved.chunks);
        const Tensor &sout_ = so.out, &slse_ = so.lse;
        const Tensor grad_ = blk.part(grad);
        const int64_t rows = blk.nb * blk.nh, nn = s.spos.size(2);
        // The sorted output gradients; the un-sorted round outputs they come from are dropped before the
        // kernel runs.
        Tensor dso, dslse;
        if (s.n_hashes == 1) {
          dso = s.sort_rows(grad_.view({blk.nb, blk.nh, nn, dvv})).contiguous();
        } else {
          // Round combination's backward: do_r = w_r dOut, dlse_r = w_r (a_r - <dOut, out>) with
          // a_r = <dOut, o_r>; <dOut, out> = sum_r w_r a_r, so the combined output is not rebuilt.
          Rounds r(s, sout_, slse_, /*combine=*/false);
          Tensor gr = grad_.unsqueeze(2);
          dso = s.sort_rows(mul(gr, r.w.unsqueeze(-1)).reshape({blk.nb, blk.nh, nn, dvv})).contiguous();
          Tensor a = sum(mul(gr, r.o), {-1});                         // [b, h, nr, L]
          Tensor inner = sub(a, sum(mul(r.w, a), {2}).unsqueeze(2));  // [b, h, nr, L]
          dslse = s.sort_rows(mul(r.w, inner).reshape({blk.nb, blk.nh, nn, 1}))
                      .view({blk.nb, blk.nh, nn})
                      .contiguous();
        }
        // Sorted here again although a rerun of the forward kernel (several blocks) sorted them too: held through
        // the round combination's backward above, they would raise the op's peak, which sets the longest
        // trainable sequence.
        Tensor sqk_ = s.sort_from_positions(blk.part(q_)), sv_ = s.sort_from_positions(blk.part(v_));
        Tensor dsqk = Tensor::empty(sqk_.shape(), sqk_.options());
        Tensor dsv = Tensor::empty(sv_.shape(), sv_.options());
        backend.lsh_attention_backward(dso, dslse, sqk_, sv_, s.spos, blk.padding(saved.padding.get()),
                                       blk.optional_part(saved.bias.get()), saved.chunks, sout_, dsqk, dsv);
        dso = dslse = sqk_ = sv_ = Tensor();
        // Each position's rows of all rounds summed back (a gather's backward), in place in the block's part.
        if (need_qk) {
          if (!d_qk.defined()) d_qk = zeros(q_.shape(), q_.options());
          backend.index_add(blk.part(d_qk).view({rows * ll, q_.size(3)}), 0, s.fpos,
                            dsqk.view({rows * nn, q_.size(3)}));
        }
        dsqk = Tensor();
        if (need_v) {
          if (!d_v.defined()) d_v = zeros(v_.shape(), v_.options());
          backend.index_add(blk.part(d_v).view({rows * ll, dvv}), 0, s.fpos, dsv.view({rows * nn, dvv}));
        }
      }
      return std::vector<Tensor>{std::move(d_qk), std::move(d_v)};
    });
  }
  return result;
}

}  // namespace loom
