#pragma once
// nn::ReversibleSequence: a reversible residual stack of (F, G) module pairs (Reformer's reversible layers)
// over loom::reversible_sequence (autograd/reversible.h): one tape entry for the whole stack, no per-block
// activations kept, each block's inputs rebuilt and its dropout masks replayed in backward.
// Submodules are registered as "<i>.f" and "<i>.g" (an nn::ReversiblePair per block), so parameter names read
// "0.f.fc1.weight".
#include <memory>
#include <utility>
#include <vector>

#include "loom/autograd/reversible.h"
#include "loom/nn/module.h"

namespace loom::nn {

// One block's two residual branches; holds them so their parameters get stable names.
class ReversiblePair : public Module {
 public:
  ReversiblePair(std::shared_ptr<Module> f, std::shared_ptr<Module> g);
  std::shared_ptr<Module> f, g;
};

class ReversibleSequence : public Module {
 public:
  using Pairs = std::vector<std::pair<std::shared_ptr<Module>, std::shared_ptr<Module>>>;
  ReversibleSequence() : Module("ReversibleSequence") {}
  explicit ReversibleSequence(const Pairs& blocks);

  // Appends a block y1 = x1 + f(x2), y2 = x2 + g(y1) under the next index.
  void push_back(std::shared_ptr<Module> f, std::shared_ptr<Module> g);
  size_t size() const { return pairs_.size(); }
  const std::shared_ptr<ReversiblePair>& operator[](size_t i) const;

  // The two-stream form: (y1, y2) of the last block.
  ReversibleOutput forward(const Tensor& x1, const Tensor& x2);
  // Reformer's use: both streams start as x [..., d]; returns cat([y1, y2], -1) [..., 2d] (HF / trax; follow
  // it with LayerNorm(2d), or average the halves).
  Tensor forward(const Tensor& x) override;

 private:
  std::vector<std::shared_ptr<ReversiblePair>> pairs_;
};

}  // namespace loom::nn
