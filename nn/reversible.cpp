// nn::ReversibleSequence.
#include "loom/nn/reversible.h"

#include <string>

#include "loom/ops/shape_ops.h"

namespace loom::nn {

ReversiblePair::ReversiblePair(std::shared_ptr<Module> f_module, std::shared_ptr<Module> g_module)
    : Module("ReversiblePair") {
  LOOM_CHECK(f_module && g_module, "ReversiblePair: F and G must both be modules, got a null one");
  f = register_module("f", std::move(f_module));
  g = register_module("g", std::move(g_module));
}

ReversibleSequence::ReversibleSequence(const Pairs& blocks) : Module("ReversibleSequence") {
  for (const auto& [f, g] : blocks) push_back(f, g);
}

void ReversibleSequence::push_back(std::shared_ptr<Module> f, std::shared_ptr<Module> g) {
  auto pair = std::make_shared<ReversiblePair>(std::move(f), std::move(g));
  register_module(std::to_string(pairs_.size()), pair);
  pairs_.push_back(std::move(pair));
}

const std::shared_ptr<ReversiblePair>& ReversibleSequence::operator[](size_t i) const {
  LOOM_CHECK(i < pairs_.size(), "ReversibleSequence: index ", i, " out of range for ", pairs_.size(),
             " blocks");
  return pairs_[i];
}

ReversibleOutput ReversibleSequence::forward(const Tensor& x1, const Tensor& x2) {
  LOOM_CHECK(!pairs_.empty(), "ReversibleSequence: forward on an empty stack");
  std::vector<ReversibleBlock> blocks;
  blocks.reserve(pairs_.size());
  for (const auto& p : pairs_) {
    // The closures hold the modules, not this sequence: the tape entry stays valid on its own.
    blocks.push_back({[m = p->f](const Tensor& x) { return m->forward(x); },
                      [m = p->g](const Tensor& x) { return m->forward(x); }});
  }
  return reversible_sequence(blocks, x1, x2, parameters());
}

Tensor ReversibleSequence::forward(const Tensor& x) {
  ReversibleOutput y = forward(x, x);
  return cat({y.y1, y.y2}, -1);
}

}  // namespace loom::nn
