// reversible_sequence: one tape entry for a whole reversible stack; backward rebuilds each block's inputs.
#include "loom/autograd/reversible.h"

#include <functional>

#include "loom/autograd/engine.h"
#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/core/generator.h"
#include "loom/ops/elementwise.h"

namespace loom {
namespace {

Tensor run_branch(const ReversibleFn& fn, const Tensor& in, const Tensor& like, const char* which,
                  size_t block) {
  Tensor out = fn(in);
  LOOM_CHECK(out.defined() && out.shape() == like.shape() && out.dtype() == like.dtype() &&
                 out.device() == like.device(),
             "reversible_sequence: block ", block, "'s ", which, " must return a tensor like its input ",
             describe(like), ", got ", out.defined() ? describe(out) : std::string("an undefined tensor"));
  return out;
}

void check_blocks(const std::vector<ReversibleBlock>& blocks, const char* op) {
  LOOM_CHECK(!blocks.empty(), op, ": no blocks");
  for (size_t i = 0; i < blocks.size(); ++i)
    LOOM_CHECK(blocks[i].f && blocks[i].g, op, ": block ", i, " has an empty F or G");
}

void check_streams(const Tensor& a, const Tensor& b, const char* op) {
  LOOM_CHECK(a.defined() && b.defined(), op, ": undefined input stream");
  LOOM_CHECK(a.shape() == b.shape() && a.dtype() == b.dtype() && a.device() == b.device(), op,
             ": the two streams must match, got ", describe(a), " and ", describe(b));
  LOOM_CHECK(is_floating(a.dtype()), op, ": streams must be floating point, got ", describe(a));
}

// Reruns `fn` on a fresh leaf view of `in` on a nested tape, with the generator at `rng`; hands fn's output to
// `use_output` (which rebuilds a stream from it), frees it, and backpropagates `grad_out` through the rerun.
// Parameters fn reads accumulate their grads; returns the gradient reaching `in` (undefined when fn does not
// depend on it). The output is released before the backward so that it never coexists with the rerun's
// gradients: one stream-sized tensor less at the peak of the step.
Tensor rerun_and_backward(const ReversibleFn& fn, const Tensor& in, PhiloxState rng, const Tensor& grad_out,
                          const char* which, size_t block, const std::function<void(const Tensor&)>& use_output) {
  Tensor leaf = in.detach().requires_grad_();
  Tensor out;
  {
    default_generator().set_state(rng);
    GradModeGuard grad_on(true);
    autograd::TapeGuard nested;
    out = run_branch(fn, leaf, in, which, block);
  }
  use_output(out.detach());
  if (!out.requires_grad()) return leaf.grad();
  autograd::GradRoot root = autograd::grad_root(out);
  out = Tensor();
  autograd::backward(root, grad_out);  // frees the nested entries as it goes
  return leaf.grad();
}

}  // namespace

ReversibleOutput reversible_sequence(const std::vector<ReversibleBlock>& blocks, const Tensor& x1,
                                     const Tensor& x2, const std::vector<Tensor>& parameters,
                                     ReversibleTrace* trace) {
  const char* op = "reversible_sequence";
  check_blocks(blocks, op);
  check_streams(x1, x2, op);
  bool recording = GradMode::is_enabled() && (parameters.empty() || autograd::any_requires_grad({&x1, &x2}) ||
                                              autograd::any_requires_grad(parameters));
  if (recording)
    for (size_t i = 0; i < parameters.size(); ++i)
      LOOM_CHECK(!parameters[i].defined() || parameters[i].is_leaf(), op, ": parameter ", i, " (",
                 describe(parameters[i]),
                 ") is not a leaf; the blocks' reruns would backpropagate into the graph "
                 "that made it");

  ReversibleTrace local;
  ReversibleTrace& tr = trace ? *trace : local;
  tr.f_rng.clear();
  tr.g_rng.clear();
  Tensor y1 = x1, y2 = x2;
  {
    // Nothing is recorded inside the blocks: each block's activations die as soon as the next block runs.
    GradModeGuard no_grad(false);
    for (size_t l = 0; l < blocks.size(); ++l) {
      tr.f_rng.push_back(default_generator().state());
      Tensor n1 = add(y1, run_branch(blocks[l].f, y2, y2, "F", l));
      tr.g_rng.push_back(default_generator().state());
      Tensor n2 = add(y2, run_branch(blocks[l].g, n1, n1, "G", l));
      y1 = std::move(n1);
      y2 = std::move(n2);
    }
  }
  if (!recording) return {y1, y2};

  bool need1 = x1.requires_grad(), need2 = x2.requires_grad();
  // Backward keeps four stream-sized tensors: (y1, y2) turn into (x1, x2) and (dy1, dy2) into (dx1, dx2) in
  // place, block after block, whenever the pass frees the graph and nothing else holds them (the saved
  // outputs are taken out of their slots, the engine hands over the incoming gradients). Otherwise
  // (retain_graph, an output still held by the caller) each update allocates a fresh tensor, as the graph
  // must stay replayable.
  auto backward = [blocks, s1 = autograd::SavedTensor(y1, op), s2 = autograd::SavedTensor(y2, op),
                   f_rng = tr.f_rng, g_rng = tr.g_rng, need1, need2](std::vector<Tensor>& grads) mutable {
    GeneratorStateGuard restore;
    const bool consume = autograd::backward_frees_graph();
    Tensor y1 = consume ? s1.take() : s1.get(), y2 = consume ? s2.take() : s2.get();
    Tensor dy1 = std::move(grads[0]), dy2 = std::move(grads[1]);
    // t += d or t -= d, in place when t is ours alone.
    auto update = [consume](Tensor& t, const Tensor& d, bool subtract) {
      if (consume && autograd::exclusively_owned(t))
        subtract ? sub_(t, d) : add_(t, d);
      else
        t = subtract ? sub(t, d) : add(t, d);
    };
    for (size_t l = blocks.size(); l-- > 0;) {
      // y2 = x2 + G(y1): x2 = y2 - G(y1); dy2 reaches y1 through G, so dx1 = dy1 + dG.
      Tensor dg = rerun_and_backward(blocks[l].g, y1, g_rng[l], dy2, "G", l,
                                     [&](const Tensor& g_out) { update(y2, g_out, true); });
      if (dg.defined()) update(dy1, dg, false);
      dg = Tensor();
      // y1 = x1 + F(x2): x1 = y1 - F(x2); dx1 reaches x2 through F, so dx2 = dy2 + dF.
      Tensor df = rerun_and_backward(blocks[l].f, y2, f_rng[l], dy1, "F", l,
                                     [&](const Tensor& f_out) { update(y1, f_out, true); });
      if (df.defined()) update(dy2, df, false);
    }
    return std::vector<Tensor>{need1 ? dy1 : Tensor(), need2 ? dy2 : Tensor()};
  };
  autograd::record_entry(op, {x1, x2}, {y1, y2}, std::move(backward));
  return {y1, y2};
}

ReversibleOutput reversible_inverse(const std::vector<ReversibleBlock>& blocks, const Tensor& y1,
                                    const Tensor& y2, const ReversibleTrace& trace) {
  const char* op = "reversible_inverse";
  check_blocks(blocks, op);
  check_streams(y1, y2, op);
  LOOM_CHECK(trace.f_rng.size() == blocks.size() && trace.g_rng.size() == blocks.size(), op,
             ": the trace has ", trace.f_rng.size(), " F and ", trace.g_rng.size(), " G states for ",
             blocks.size(), " blocks");
  GeneratorStateGuard restore;
  GradModeGuard no_grad(false);
  Tensor a = y1, b = y2;
  for (size_t l = blocks.size(); l-- > 0;) {
    default_generator().set_state(trace.g_rng[l]);
    Tensor x2 = sub(b, run_branch(blocks[l].g, a, a, "G", l));
    default_generator().set_state(trace.f_rng[l]);
    Tensor x1 = sub(a, run_branch(blocks[l].f, x2, x2, "F", l));
    a = std::move(x1), b = std::move(x2);
  }
  return {a, b};
}

}  // namespace loom
