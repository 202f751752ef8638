// Adaptive Computation Time: the halting loop (see ops/act.h).
//
// The halting decisions are made on the host from the values of cum + p: a data-dependent loop needs them
// there anyway (which rows run next, whether to stop), and explicit per-position flags replace T2T's `hp
// < 1.0` test (ut_act.md pitfall 4). Everything that carries a gradient (p, the cumulative sums, R, the
// weights, S, H) is built from ordinary differentiable ops, so the tape records the loop as it ran; the masks
// are constants.
#include "loom/ops/act.h"

#include <cmath>
#include <vector>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom {
namespace {

constexpr const char* kOp = "adaptive_computation_time";

Tensor index_tensor(const std::vector<int64_t>& idx) {
  return tensor(idx, {static_cast<int64_t>(idx.size())});
}

Tensor constant(const std::vector<double>& values, TensorOptions options) {
  return tensor(values, {static_cast<int64_t>(values.size())}).to(options.dtype).to(options.device);
}

// rows of t [N, d] as [n, d] (t itself when every row is asked for, in order).
Tensor take_rows(const Tensor& t, const Tensor& rows, bool all) { return all ? t : index_select(t, 0, rows); }

// t [N, d] with `rows` replaced by src [n, d].
Tensor put_rows(const Tensor& t, const Tensor& rows, const Tensor& src, bool all) {
  if (all) return src;
  Tensor index = rows.view({rows.size(0), 1}).expand({rows.size(0), t.size(1)}).contiguous();
  return scatter(t, 0, index, src);
}

}  // namespace

ActOptions ActOptions::t2t(int64_t max_steps, double epsilon) {
  ActOptions o;
  o.max_steps = max_steps;
  o.epsilon = epsilon;
  o.mix = ActMix::Interpolate;
  o.halting_input = ActHaltingInput::Pre;
  o.force_halt_at_cap = false;
  o.t2t_boundary = true;
  o.compact = false;
  o.freeze_halted_state = false;
  return o;
}

ActResult adaptive_computation_time(const Tensor& x, const ActStepFn& step, const ActHaltingFn& halting,
                                    const ActOptions& options, const Tensor& padding_mask,
                                    const ActPreprocessFn& preprocess) {
  LOOM_CHECK(x.defined() && x.dim() == 3 && is_floating(x.dtype()), kOp,
             ": x must be a floating [B, L, d] tensor, got ",
             x.defined() ? describe(x) : std::string("undefined"));
  LOOM_CHECK(static_cast<bool>(step), kOp, ": empty step function");
  const bool fixed = options.fixed_steps > 0;
  LOOM_CHECK(fixed || static_cast<bool>(halting), kOp,
             ": empty halting function (needed unless fixed_steps > 0)");
  const int64_t max_steps = fixed ? options.fixed_steps : options.max_steps;
  LOOM_CHECK(max_steps >= 1, kOp, ": max_steps must be at least 1, got ", max_steps);
  LOOM_CHECK(options.epsilon >= 0 && options.epsilon < 1, kOp, ": epsilon must be in [0, 1), got ",
             options.epsilon);
  const int64_t B = x.size(0), L = x.size(1), d = x.size(2), N = B * L;
  const TensorOptions fopts = x.options();
  const bool force_cap = fixed || options.force_halt_at_cap;
  const bool t2t = options.t2t_boundary && !fixed;
  // The threshold as the tensors' dtype holds it, so the host comparison is the one a kernel would make.
  const double threshold = x.dtype() == DType::Float32
                               ? static_cast<double>(static_cast<float>(1.0 - options.epsilon))
                               : 1.0 - options.epsilon;

  // Host bookkeeping, one entry per flattened position b * L + l.
  std::vector<char> halted(static_cast<size_t>(N), 0);
  std::vector<int64_t> count(static_cast<size_t>(N), 0);
  std::vector<double> cum_host(static_cast<size_t>(N), 0.0);
  std::vector<double> real(static_cast<size_t>(N), 1.0);
  std::vector<int64_t> real_per_seq(static_cast<size_t>(B), L);
  if (padding_mask.defined()) {
    LOOM_CHECK(padding_mask.dtype() == DType::Bool && padding_mask.dim() == 2 && padding_mask.size(0) == B &&
                   padding_mask.size(1) == L,
               kOp, ": padding_mask must be bool [", B, ", ", L, "] (true = padding), got ",
               describe(padding_mask));
    std::vector<double> pad = padding_mask.to(DType::Float64).cpu().contiguous().to_vector<double>();
    for (int64_t i = 0; i < N; ++i)
      if (pad[static_cast<size_t>(i)] != 0) {
        halted[static_cast<size_t>(i)] = 1;
        real[static_cast<size_t>(i)] = 0.0;
        --real_per_seq[static_cast<size_t>(i / L)];
      }
  }
  std::vector<int64_t> all_idx(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) all_idx[static_cast<size_t>(i)] = i;
  const Tensor all_rows = index_tensor(all_idx).to(x.device());
  const Tensor real_f = constant(real, fopts);

  Tensor H = x.reshape({N, d});
  Tensor S = zeros({N, d}, fopts);
  Tensor cum = zeros({N}, fopts);
  Tensor R = zeros({N}, fopts);
  int64_t iterations = 0;

  for (int64_t t = 0; t < max_steps; ++t) {
    // Anyone still running? (T2T: a position sitting exactly at the threshold does not keep the loop alive.)
    bool alive = false;
    for (int64_t i = 0; i < N && !alive; ++i)
      alive = !halted[static_cast<size_t>(i)] && !(t2t && cum_host[static_cast<size_t>(i)] >= threshold);
    if (!alive) break;

    std::vector<int64_t> rows_idx;
    if (options.compact) {
      for (int64_t i = 0; i < N; ++i)
        if (!halted[static_cast<size_t>(i)]) rows_idx.push_back(i);
    } else {
      rows_idx = all_idx;
    }
    const int64_t n = static_cast<int64_t>(rows_idx.size());
    const bool all = n == N;
    const Tensor rows = all ? all_rows : index_tensor(rows_idx).to(x.device());

    Tensor X = H.view({B, L, d});
    if (preprocess) {
      X = preprocess(X, t);
      LOOM_CHECK(X.defined() && X.shape() == Shape({B, L, d}) && X.dtype() == x.dtype(), kOp,
                 ": preprocess must return a tensor like the state ", describe(x), ", got ",
                 X.defined() ? describe(X) : std::string("an undefined tensor"));
    }
    auto halting_p = [&](const Tensor& h) {
      if (fixed) return zeros({n}, fopts);
      Tensor p = halting(h, rows, t);
      LOOM_CHECK(p.defined() && p.numel() == n && p.dtype() == x.dtype(), kOp, ": step ", t,
                 ": the halting function must return ", n, " probabilities of dtype ", dtype_name(x.dtype()),
                 " (one per row), got ", p.defined() ? describe(p) : std::string("an undefined tensor"));
      return p.reshape({n});
    };
    Tensor p;
    if (options.halting_input == ActHaltingInput::Pre) p = halting_p(take_rows(X.reshape({N, d}), rows, all));
    Tensor Y = step(X, rows, t);
    LOOM_CHECK(Y.defined() && Y.numel() == n * d && Y.dtype() == x.dtype(), kOp, ": step ", t,
               ": the step function must return [", n, ", ", d, "] (the rows asked for), got ",
               Y.defined() ? describe(Y) : std::string("an undefined tensor"));
    Y = Y.reshape({n, d});
    if (options.halting_input == ActHaltingInput::Post) p = halting_p(Y);
    if (options.global_halting && !fixed) {
      // One probability per sequence: the mean over its real positions, broadcast back to the rows.
      Tensor full = all ? p : index_add(zeros({N}, fopts), 0, rows, p);
      Tensor per_seq = sum((full * real_f).view({B, L}), {1});
      std::vector<double> denom(real_per_seq.begin(), real_per_seq.end());
      for (double& v : denom) v = std::max(v, 1.0);
      per_seq = per_seq / constant(denom, fopts);
      p = take_rows(per_seq.view({B, 1}).expand({B, L}).reshape({N}), rows, all);
    }

    // Decisions for this step, from the values of cum + p.
    Tensor cum_r = take_rows(cum, rows, all);
    std::vector<double> reached;
    {
      NoGradGuard no_grad;
      reached = (cum_r + p).detach().to(DType::Float64).cpu().contiguous().to_vector<double>();
    }
    std::vector<double> run_v(static_cast<size_t>(n)), halt_v(static_cast<size_t>(n)),
        cont_v(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      const size_t i = static_cast<size_t>(rows_idx[static_cast<size_t>(j)]), J = static_cast<size_t>(j);
      const bool run = !halted[i];
      const bool crossed = t2t ? reached[J] > threshold : reached[J] >= threshold;
      const bool halt = run && (crossed || (force_cap && t == max_steps - 1));
      run_v[J] = run;
      halt_v[J] = halt;
      cont_v[J] = run && !halt;
      if (run) ++count[i];
      if (halt) halted[i] = 1;
      if (run && !halt) cum_host[i] = reached[J];
    }
    const Tensor halt_f = constant(halt_v, fopts), cont_f = constant(cont_v, fopts);

    // Weights: p while continuing, the remainder 1 - cum at the halting step, 0 once halted.
    Tensor remainder = halt_f * (1.0 - cum_r);
    Tensor w = cont_f * p + remainder;
    R = all ? R + remainder : index_add(R, 0, rows, remainder);
    cum = all ? cum + cont_f * p : index_add(cum, 0, rows, cont_f * p);
    Tensor w2 = w.view({n, 1});
    if (options.mix == ActMix::Accumulate) {
      S = all ? S + Y * w2 : index_add(S, 0, rows, Y * w2);
    } else {
      Tensor S_r = take_rows(S, rows, all);
      S = put_rows(S, rows, Y * w2 + S_r * (1.0 - w2), all);  // T2T's order of operations (#1004's fix)
    }
    if (options.compact) {
      H = put_rows(H, rows, Y, all);
    } else if (options.freeze_halted_state) {
      H = where(constant(run_v, DType::Bool).to(x.device()).view({N, 1}), Y, H);
    } else {
      H = Y;  // T2T: the loop state is the transformed state everywhere, halted or not
    }
    ++iterations;
  }

  ActResult r;
  r.output = S.view({B, L, d});
  r.remainders = R.view({B, L});
  r.steps = tensor(count, {B, L}).to(x.device());
  std::vector<double> count_f(count.begin(), count.end());
  r.ponder_times = (constant(count_f, fopts) + R).view({B, L});
  int64_t num_real = 0;
  for (int64_t v : real_per_seq) num_real += v;
  r.ponder_cost = sum(r.ponder_times) / static_cast<double>(std::max<int64_t>(num_real, 1));
  r.iterations = iterations;
  return r;
}

ActStepFn act_positionwise(std::function<Tensor(const Tensor& x_rows, int64_t step)> fn) {
  LOOM_CHECK(static_cast<bool>(fn), "act_positionwise: empty function");
  return [fn = std::move(fn)](const Tensor& x, const Tensor& rows, int64_t t) {
    const int64_t n = x.size(0) * x.size(1);
    Tensor flat = x.reshape({n, x.size(2)});
    return fn(rows.numel() == n ? flat : index_select(flat, 0, rows), t);
  };
}

Tensor act_frozen_projection(const Tensor& running, const Tensor& running_rows, const ActFrozenRows& frozen,
                             const ActStepSignalTerms& signal, double eps) {
  constexpr const char* op = "act_frozen_projection";
  auto str = [](const Tensor& t) { return t.defined() ? describe(t) : std::string("undefined"); };
  LOOM_CHECK(running.defined() && running.dim() == 2 && is_floating(running.dtype()), op,
             ": running must be a floating [n, C] tensor, got ", str(running));
  const int64_t n = running.size(0), C = running.size(1);
  LOOM_CHECK(frozen.centred.defined() && frozen.centred.dim() == 2, op,
             ": frozen.centred must be [h, d], got ", str(frozen.centred));
  const int64_t h = frozen.centred.size(0), d = frozen.centred.size(1);
  auto check = [&](const char* name, const Tensor& t, const Shape& shape, DType dtype) {
    LOOM_CHECK(t.defined() && t.shape() == shape && t.dtype() == dtype && t.device() == running.device(), op,
               ": ", name, " must be ", dtype_name(dtype), " ", shape, " on ", running.device().str(),
               " (running ", describe(running), ", frozen.centred ", describe(frozen.centred), "), got ",
               str(t));
  };
  const DType f = running.dtype();
  check("running_rows", running_rows, Shape{n}, DType::Int64);
  check("frozen.rows", frozen.rows, Shape{h}, DType::Int64);
  check("frozen.projected", frozen.projected, Shape{h, C}, f);
  check("frozen.centred", frozen.centred, Shape{h, d}, f);
  check("frozen.squared_norm", frozen.squared_norm, Shape{h}, f);
  check("signal.centred", signal.centred, Shape{d}, f);
  check("signal.projected", signal.projected, Shape{C}, f);
  check("signal.shift", signal.shift, Shape{C}, f);
  LOOM_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  const int64_t N = n + h;
  {  // The two index sets must partition [0, N): a row left out would be uninitialised memory.
    std::vector<char> seen(static_cast<size_t>(N), 0);
    for (const Tensor* rows : {&running_rows, &frozen.rows})
      for (int64_t r : rows->cpu().contiguous().to_vector<int64_t>()) {
        LOOM_CHECK(r >= 0 && r < N && !seen[static_cast<size_t>(r)], op,
                   ": running_rows and frozen.rows must split ", "[0, ", N, ") between them; row ", r,
                   r >= 0 && r < N ? " appears twice" : " is out of range");
        seen[static_cast<size_t>(r)] = 1;
      }
  }
  autograd::OpScope scope(op, {running, frozen.projected, frozen.centred, frozen.squared_norm, signal.centred,
                               signal.projected, signal.shift});
  Backend::ActFrozenProjection a{
      running_rows.contiguous(),     frozen.rows.contiguous(),         frozen.projected.contiguous(),
      frozen.centred.contiguous(),   frozen.squared_norm.contiguous(), signal.centred.contiguous(),
      signal.projected.contiguous(), signal.shift.contiguous(),        eps};
  Tensor out = Tensor::empty({N, C}, running.options());
  Tensor inv_sigma = Tensor::empty({h}, running.options());
  backend_for(running.device()).act_frozen_projection(running.contiguous(), a, out, inv_sigma);
  if (scope.recording()) {
    std::vector<bool> need;
    for (size_t i = 0; i < 7; ++i) need.push_back(scope.needs_grad(i));
    Backend::ActFrozenProjection indices{a.running_rows, a.frozen_rows, {}, {}, {}, {}, {}, {}, eps};
    scope.record({out}, [indices, need, n, C, h, d, sp = scope.save(a.projected), sc = scope.save(a.centred),
                         ss = scope.save(a.signal_centred), ssp = scope.save(a.signal_projected),
                         sinv = scope.save(inv_sigma)](const std::vector<Tensor>& g) {
      Backend::ActFrozenProjection saved = indices;
      saved.projected = sp.get();
      saved.centred = sc.get();
      saved.signal_centred = ss.get();
      saved.signal_projected = ssp.get();
      const TensorOptions o = g[0].options();
      auto grad_if = [&](size_t i, const Shape& shape) {
        return need[i] ? Tensor::empty(shape, o) : Tensor();
      };
      Backend::ActFrozenProjectionGrads grads{grad_if(0, {n, C}), grad_if(1, {h, C}), grad_if(2, {h, d}),
                                              grad_if(3, {h}),    grad_if(4, {d}),    grad_if(5, {C}),
                                              grad_if(6, {C})};
      backend_for(g[0].device()).act_frozen_projection_backward(g[0].contiguous(), saved, sinv.get(), grads);
      return std::vector<Tensor>{grads.running,      grads.projected,      grads.centred,
                                 grads.squared_norm, grads.signal_centred, grads.signal_projected,
                                 grads.shift};
    });
  }
  return out;
}

Tensor timing_signal_1d(int64_t length, int64_t channels, TensorOptions options, double start) {
  LOOM_CHECK(length >= 0 && channels >= 1, "timing_signal_1d: need length >= 0 and channels >= 1, got ",
             length, " and ", channels);
  const int64_t half = channels / 2;
  std::vector<double> v(static_cast<size_t>(length * channels), 0.0);
  const double log_inc = std::log(1.0e4) / static_cast<double>(std::max<int64_t>(half - 1, 1));
  for (int64_t pos = 0; pos < length; ++pos)
    for (int64_t k = 0; k < half; ++k) {
      double a = (start + static_cast<double>(pos)) * std::exp(-static_cast<double>(k) * log_inc);
      v[static_cast<size_t>(pos * channels + k)] = std::sin(a);
      v[static_cast<size_t>(pos * channels + half + k)] = std::cos(a);
    }
  return tensor(v, {length, channels}).to(options.dtype).to(options.device);
}

}  // namespace loom
