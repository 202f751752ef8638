// chunked_apply: a per-chunk no-grad forward, and one tape entry whose backward reruns each chunk on a nested
// tape (the same recompute scheme as checkpoint(), one chunk at a time).
#include "loom/autograd/chunked.h"

#include <algorithm>
#include <string>
#include <vector>

#include "loom/autograd/engine.h"
#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/core/generator.h"

namespace loom {
namespace {

constexpr const char* kOp = "chunked_apply";

// fn's result for one chunk, checked against the input slice (its length along dim) and the first chunk's
// result (dtype, device, the other sizes).
void check_chunk_output(const Tensor& y, const Tensor& slice, const Tensor& first, int64_t dim, int64_t start) {
  LOOM_CHECK(y.defined(), kOp, ": fn returned an undefined tensor for the chunk at ", start);
  LOOM_CHECK(y.dim() == slice.dim() && y.size(dim) == slice.size(dim), kOp, ": fn must keep the length along dim ",
             dim, " (it is applied position by position); the chunk of shape ", slice.shape(),
             " at offset ", start, " gave shape ", y.shape());
  if (!first.defined()) return;
  bool same = y.dtype() == first.dtype() && y.device() == first.device();
  for (int64_t i = 0; i < y.dim(); ++i) same = same && (i == dim || y.size(i) == first.size(i));
  LOOM_CHECK(same, kOp, ": fn gave the chunk at offset ", start, " ", describe(y), " but the first chunk ",
             describe(first), "; every chunk must give the same dtype, device and sizes outside dim ", dim);
}

}  // namespace

Tensor chunked_apply(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, int64_t chunk_size,
                     int64_t dim) {
  LOOM_CHECK(static_cast<bool>(fn), kOp, ": empty function");
  return chunked_apply_indexed([fn](const Tensor& slice, int64_t) { return fn(slice); }, x, chunk_size, dim);
}

Tensor chunked_apply_indexed(const std::function<Tensor(const Tensor&, int64_t)>& fn, const Tensor& x,
                             int64_t chunk_size, int64_t dim) {
  LOOM_CHECK(static_cast<bool>(fn), kOp, ": empty function");
  LOOM_CHECK(x.defined(), kOp, ": x is undefined");
  LOOM_CHECK(x.dim() >= 1, kOp, ": x must have at least one dim to chunk, got shape ", x.shape());
  const int64_t d = wrap_dim(dim, x.dim(), kOp);
  const int64_t n = x.size(d);
  if (chunk_size <= 0 || chunk_size >= n) return fn(x, 0);

  // Forward: one chunk's activations at a time, nothing recorded. Each chunk's generator state is kept for its
  // rerun in backward.
  const bool recording = GradMode::is_enabled();
  std::vector<PhiloxState> states;
  Tensor out, first;
  {
    GradModeGuard no_grad(false);
    for (int64_t start = 0; start < n; start += chunk_size) {
      const int64_t len = std::min(chunk_size, n - start);
      Tensor slice = x.narrow(d, start, len);
      states.push_back(default_generator().state());
      Tensor y = fn(slice, start);
      check_chunk_output(y, slice, first, d, start);
      if (!out.defined()) {
        first = y;
        Shape shape = y.shape();
        shape[static_cast<size_t>(d)] = n;
        out = Tensor::empty(shape, y.options());
      }
      out.narrow(d, start, len).copy_(y);
    }
  }
  if (!recording) return out;

  // Recorded even when x needs no gradient: fn may use parameters that do (as checkpoint()).
  const bool need_x = x.requires_grad();
  auto backward = [fn, saved = autograd::SavedTensor(x, kOp), states, d, n, chunk_size,
                   need_x](const std::vector<Tensor>& grads) {
    const Tensor& xs = saved.get();
    const Tensor& g = grads[0];
    Tensor gx = need_x ? Tensor::empty(xs.shape(), xs.options()) : Tensor();
    size_t chunk = 0;
    for (int64_t start = 0; start < n; start += chunk_size, ++chunk) {
      const int64_t len = std::min(chunk_size, n - start);
      Tensor slice = xs.narrow(d, start, len).detach();
      if (need_x) slice.requires_grad_();
      Tensor y;
      {
        GeneratorStateGuard rewind(states[chunk]);
        GradModeGuard grad_on(true);
        autograd::TapeGuard nested;
        y = fn(slice, start);
      }
      LOOM_CHECK(y.defined() && y.dim() == g.dim() && y.size(d) == len, kOp, " backward: the rerun of the chunk at ",
                 start, " gave ", y.defined() ? describe(y) : std::string("an undefined tensor"),
                 " (fn must be deterministic given its input and the generator state)");
      // The chunk's graph (and with it its activations) is freed by this backward before the next chunk runs.
      if (y.requires_grad()) autograd::backward({y}, {g.narrow(d, start, len).contiguous()});
      if (need_x) {
        Tensor gs = slice.grad();
        Tensor dst = gx.narrow(d, start, len);
        if (gs.defined())
          dst.copy_(gs);
        else
          dst.zero_();
      }
    }
    return std::vector<Tensor>{gx};
  };
  autograd::record_entry(kOp, {x}, {out}, std::move(backward));
  return out;
}

}  // namespace loom
