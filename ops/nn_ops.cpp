// Neural-network ops: argument checks and layout (the reduced dim moved last, rows made contiguous), then the
// fused backend kernel; embedding and cross_entropy compose backend ops and stay device-agnostic. Each op is
// one tape entry whose backward uses the same layout (and, for softmax and layer norm, a fused backend
// kernel).
#include "loom/ops/nn_ops.h"

#include <utility>

#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/reduce.h"

namespace loom {
namespace {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  LOOM_CHECK(a.device() == b.device(), op, ": tensors on ", a.device(), " and ", b.device());
}

void check_floating(const char* op, const Tensor& x) {
  LOOM_CHECK(x.defined(), op, ": input tensor is undefined");
  LOOM_CHECK(is_floating(x.dtype()), op, ": expected a floating tensor (float32 or float64), got ",
             describe(x));
}

// Smallest and largest value of a non-empty int64 tensor: scanned in place on the CPU, reduced on other
// devices so that only two scalars reach the host.
std::pair<int64_t, int64_t> min_max(const Tensor& t) {
  if (!t.device().is_cpu()) return {amin(t).item<int64_t>(), amax(t).item<int64_t>()};
  Tensor c = t.contiguous();
  const int64_t* p = c.data<int64_t>();
  int64_t lo = p[0], hi = p[0];
  for (int64_t i = 1; i < c.numel(); ++i) {
    lo = p[i] < lo ? p[i] : lo;
    hi = p[i] > hi ? p[i] : hi;
  }
  return {lo, hi};
}

Tensor softmax_impl(const char* op, const Tensor& x, int64_t dim, const Tensor& mask, bool log) {
  check_floating(op, x);
  int64_t d = wrap_dim(dim, x.dim(), op);
  Tensor m;
  if (mask.defined()) {
    LOOM_CHECK(mask.dtype() == DType::Bool, op, ": expected a bool mask, got ", describe(mask));
    check_same_device(op, x, mask);
    LOOM_CHECK(broadcasts_to(mask.shape(), x.shape()), op, ": mask of shape ", mask.shape(),
               " cannot be broadcast to the input shape ", x.shape());
    m = mask.expand(x.shape());
  }
  autograd::OpScope scope(op, {x});
  // A 0-d input is a row of one.
  Tensor xv = x.dim() == 0 ? x.reshape({1}) : x;
  Tensor mv = m.defined() && x.dim() == 0 ? m.reshape({1}) : m;
  // The kernel works on the last dim of a contiguous tensor; any other dim is moved there and back.
  bool last = d == xv.dim() - 1;
  Tensor in = (last ? xv : xv.transpose(d, -1)).contiguous();
  Tensor in_mask = mv.defined() && !last ? mv.transpose(d, -1) : mv;
  Tensor out = Tensor::empty(in.shape(), x.options());
  if (x.numel() > 0) backend_for(x.device()).softmax(in, in_mask, log, out);
  Tensor result = (last ? out : out.transpose(d, -1).contiguous()).view(x.shape());
  if (scope.recording()) {
    // Saved in the kernel's layout, so backward moves only the incoming gradient.
    scope.record({result}, [y = scope.save(out), sm = scope.save(log ? in_mask : Tensor()), log, d, last,
                            shape = x.shape(), vshape = xv.shape()](const std::vector<Tensor>& g) {
      const Tensor& yv = y.get();
      Tensor gv = g[0].reshape(vshape);
      Tensor gk = (last ? gv : gv.transpose(d, -1)).contiguous();
      Tensor gi = Tensor::empty(gk.shape(), gk.options());
      if (gi.numel() > 0) {
        Backend& backend = backend_for(gk.device());
        if (log)
          backend.log_softmax_backward(gk, yv, sm.get(), gi);
        else
          backend.softmax_backward(gk, yv, gi);
      }
      return std::vector<Tensor>{(last ? gi : gi.transpose(d, -1).contiguous()).view(shape)};
    });
  }
  return result;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim, const Tensor& mask) {
  return softmax_impl("softmax", x, dim, mask, false);
}

Tensor log_softmax(const Tensor& x, int64_t dim, const Tensor& mask) {
  return softmax_impl("log_softmax", x, dim, mask, true);
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  check_floating("layer_norm", x);
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  LOOM_CHECK(k >= 1, "layer_norm: normalized_shape must name at least one dim");
  bool trailing = x.dim() >= k;
  for (int64_t i = 0; trailing && i < k; ++i) trailing = x.size(x.dim() - k + i) == normalized_shape[i];
  LOOM_CHECK(trailing, "layer_norm: normalized_shape ", normalized_shape,
             " does not match the trailing dims of ", describe(x));
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    const char* what = p == &weight ? "weight" : "bias";
    LOOM_CHECK(p->shape() == normalized_shape, "layer_norm: ", what, " shape ", p->shape(),
               " does not match normalized_shape ", normalized_shape);
    LOOM_CHECK(p->dtype() == x.dtype(), "layer_norm: ", what, " is ", describe(*p), " but the input is ",
               describe(x));
    check_same_device("layer_norm", x, *p);
  }
  const int64_t d = shape_numel(normalized_shape);
  int64_t rows = 1;
  for (int64_t i = 0; i < x.dim() - k; ++i) rows *= x.size(i);
  autograd::OpScope scope("layer_norm", {x, weight, bias});
  Tensor in = x.contiguous().reshape({rows, d});
  Tensor out = Tensor::empty({rows, d}, x.options());
  Tensor mean = Tensor::empty({rows}, x.options());
  Tensor rstd = Tensor::empty({rows}, x.options());
  Tensor w = weight.defined() ? weight.contiguous().reshape({d}) : weight;
  Tensor b = bias.defined() ? bias.contiguous().reshape({d}) : bias;
  backend_for(x.device()).layer_norm(in, w, b, eps, out, mean, rstd);
  Tensor result = out.view(x.shape());
  if (scope.recording()) {
    bool need_x = scope.needs_grad(0), need_w = scope.needs_grad(1), need_b = scope.needs_grad(2);
    // The bias's gradient needs none of the saved tensors, and the weight's needs no weight.
    bool need_stats = need_x || need_w;
    scope.record({result}, [sx = scope.save(need_stats ? in : Tensor()),
                            smean = scope.save(need_stats ? mean : Tensor()),
                            srstd = scope.save(need_stats ? rstd : Tensor()),
                            sw = scope.save(need_x ? w : Tensor()), need_x, need_w, need_b, need_stats, rows,
                            d, x_shape = x.shape(),
                            w_shape = normalized_shape](const std::vector<Tensor>& g) {
      TensorOptions opts = g[0].options();
      Tensor gk = g[0].contiguous().view({rows, d});
      Tensor gx = need_x ? Tensor::empty({rows, d}, opts) : Tensor();
      Tensor gw = need_w ? Tensor::empty({d}, opts) : Tensor();
      Tensor gb = need_b ? Tensor::empty({d}, opts) : Tensor();
      if (need_stats) {
        backend_for(gk.device())
            .layer_norm_backward(gk, sx.get(), smean.get(), srstd.get(), sw.get(), gx, gw, gb);
      } else {
        gb.copy_(sum(gk, {0}));
      }
      return std::vector<Tensor>{need_x ? gx.view(x_shape) : Tensor(), need_w ? gw.view(w_shape) : Tensor(),
                                 need_b ? gb.view(w_shape) : Tensor()};
    });
  }
  return result;
}

Tensor dropout(const Tensor& x, double p, bool training) {
  check_floating("dropout", x);
  LOOM_CHECK(p >= 0 && p <= 1, "dropout: probability has to be between 0 and 1, got ", p);
  if (!training || p == 0) return x;
  return dropout(x, p, draw_dropout_state(x.numel()));
}

PhiloxState draw_dropout_state(int64_t numel) {
  return default_generator().next(static_cast<uint64_t>((numel + 3) / 4) + 1);
}

Tensor dropout(const Tensor& x, double p, PhiloxState state) {
  check_floating("dropout", x);
  LOOM_CHECK(p >= 0 && p <= 1, "dropout: probability has to be between 0 and 1, got ", p);
  autograd::OpScope scope("dropout", {x});
  Tensor out = Tensor::empty(x.shape(), x.options());
  backend_for(x.device()).dropout(x, p, state, out);
  if (scope.recording()) {
    // Replaying the Philox state on the gradient redraws the forward's mask: nothing to store.
    scope.record({out}, [p, state](const std::vector<Tensor>& g) {
      Tensor gi = Tensor::empty(g[0].shape(), g[0].options());
      backend_for(gi.device()).dropout(g[0], p, state, gi);
      return std::vector<Tensor>{gi};
    });
  }
  return out;
}

Tensor embedding(const Tensor& indices, const Tensor& weight) {
  LOOM_CHECK(indices.defined() && weight.defined(), "embedding: undefined tensor argument");
  LOOM_CHECK(weight.dim() == 2, "embedding: weight must be 2-d [num_embeddings, dim], got shape ",
             weight.shape());
  LOOM_CHECK(indices.dtype() == DType::Int64 || indices.dtype() == DType::Int32,
             "embedding: expected int64 or int32 indices, got ", describe(indices));
  check_same_device("embedding", indices, weight);
  const int64_t num = weight.size(0);
  autograd::OpScope scope("embedding", {weight});
  Tensor idx = indices.to(DType::Int64).contiguous().reshape({indices.numel()});
  if (idx.numel() > 0) {
    auto [lo, hi] = min_max(idx);
    LOOM_CHECK(lo >= 0 && hi < num, "embedding: index ", lo < 0 ? lo : hi, " is out of range for ", num,
               " embeddings (weight shape ", weight.shape(), ")");
  }
  Tensor out = Tensor::empty({idx.numel(), weight.size(1)}, weight.options());
  backend_for(weight.device()).index_select(weight, 0, idx, out);
  Shape shape = indices.shape();
  shape.push_back(weight.size(1));
  Tensor result = out.view(shape);
  if (scope.recording()) {
    // Rows picked several times accumulate (index_add), as a sum of one-hot matmuls would.
    scope.record({result}, [si = scope.save(idx), w_shape = weight.shape()](const std::vector<Tensor>& g) {
      const Tensor& iv = si.get();
      Tensor gw = zeros(w_shape, g[0].options());
      if (iv.numel() > 0)
        backend_for(gw.device()).index_add(gw, 0, iv, g[0].contiguous().view({iv.numel(), w_shape[1]}));
      return std::vector<Tensor>{gw};
    });
  }
  return result;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, Reduction reduction) {
  check_floating("cross_entropy", logits);
  LOOM_CHECK(target.defined(), "cross_entropy: target tensor is undefined");
  LOOM_CHECK(target.dtype() == DType::Int64, "cross_entropy: expected int64 class targets, got ",
             describe(target));
  check_same_device("cross_entropy", logits, target);
  if (logits.dim() == 1) {  // one unbatched prediction
    LOOM_CHECK(target.dim() == 0, "cross_entropy: logits of shape ", logits.shape(),
               " need a 0-d target, got shape ", target.shape());
    Tensor loss = cross_entropy(logits.unsqueeze(0), target.reshape({1}), ignore_index, reduction);
    return reduction == Reduction::None ? loss.reshape({}) : loss;
  }
  LOOM_CHECK(logits.dim() >= 2, "cross_entropy: expected logits [N, C] or [N, C, d1, ...], got shape ",
             logits.shape());
  const int64_t classes = logits.size(1);
  Shape expected = logits.shape();
  expected.erase(1);
  LOOM_CHECK(target.shape() == expected, "cross_entropy: target shape ", target.shape(),
             " does not match logits ", logits.shape(), " (expected ", expected, ")");
  LOOM_CHECK(classes > 0 || logits.numel() == 0, "cross_entropy: logits have no classes (shape ",
             logits.shape(), ")");

  autograd::OpScope scope("cross_entropy", {logits});
  // One row of classes per prediction: [N, C, d1..] -> [N, d1.., C] -> [M, C].
  std::vector<int64_t> perm{0};
  for (int64_t i = 2; i < logits.dim(); ++i) perm.push_back(i);
  perm.push_back(1);
  const int64_t m = shape_numel(expected);
  Tensor rows = logits.permute(perm).reshape({m, classes});
  Tensor t = target.contiguous().reshape({m});

  Tensor valid = ne(t, static_cast<double>(ignore_index));
  Tensor safe = where(valid, t, 0.0);  // ignored targets pick class 0; their loss is zeroed below
  if (m > 0) {
    auto [lo, hi] = min_max(safe);
    LOOM_CHECK(lo >= 0 && hi < classes, "cross_entropy: target ", lo < 0 ? lo : hi, " is out of bounds for ",
               classes, " classes");
  }
  Tensor lsm = log_softmax(rows, 1);
  Tensor picked = Tensor::empty({m, 1}, logits.options());
  backend_for(logits.device()).gather(lsm, 1, safe.view({m, 1}), picked);
  Tensor loss = where(valid, neg(picked.view({m})), 0.0);
  Tensor result, count;
  switch (reduction) {
    case Reduction::None:
      result = loss.view(target.shape());
      break;
    case Reduction::Sum:
      result = sum(loss);
      break;
    case Reduction::Mean:
      count = sum(valid);
      result = div(sum(loss), count);  // 0 / 0 = NaN when every target is ignored
      break;
  }
  LOOM_CHECK(result.defined(), "cross_entropy: unknown reduction");
  if (scope.recording()) {
    // d loss_i / d logits_i = softmax_i - onehot(target_i), scaled by the loss's incoming gradient w_i;
    // ignored rows get w_i = 0 (also when every target is ignored, so a NaN mean still gives zero gradients).
    Shape permuted = logits.permute(perm).shape();
    std::vector<int64_t> inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
    scope.record({result}, [slsm = scope.save(lsm), ssafe = scope.save(safe), svalid = scope.save(valid),
                            scount = scope.save(count), reduction, m, permuted,
                            inverse](const std::vector<Tensor>& g) {
      Tensor w = reduction == Reduction::None  ? g[0].reshape({m})
                 : reduction == Reduction::Sum ? g[0].expand({m})
                                               : div(g[0], scount.get()).expand({m});
      w = where(svalid.get(), w, 0.0).view({m, 1});
      Tensor gi = mul(exp(slsm.get()), w);
      if (m > 0)
        backend_for(gi.device()).scatter(gi, 1, ssafe.get().view({m, 1}), neg(w), /*accumulate=*/true);
      if (permuted.size() == 2) return std::vector<Tensor>{gi};
      return std::vector<Tensor>{gi.view(permuted).permute(inverse).contiguous()};
    });
  }
  return result;
}

}  // namespace loom
