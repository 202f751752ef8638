// nn::AdaptiveComputationTime and the TransformerBlock ACT step.
#include "loom/nn/act.h"

#include <cmath>
#include <vector>

#include "loom/autograd/grad_mode.h"
#include "loom/nn/init.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/shape_ops.h"

namespace loom::nn {

AdaptiveComputationTime::AdaptiveComputationTime(const AdaptiveComputationTimeOptions& options,
                                                 TensorOptions tensor_options)
    : Module("AdaptiveComputationTime"), options_(options) {
  const int64_t d = options.d_model;
  LOOM_CHECK(d > 0, "AdaptiveComputationTime: d_model must be positive, got ", d);
  LOOM_CHECK(options.act.max_steps >= 1, "AdaptiveComputationTime: act.max_steps must be at least 1, got ",
             options.act.max_steps);
  halting = register_module("halting", std::make_shared<Linear>(d, 1, true, tensor_options));
  {
    NoGradGuard no_grad;
    init::constant_(halting->bias, options.halting_bias_init);
  }
  if (options.step_signal == ActStepSignal::Learned) {
    int64_t steps = std::max(options.act.max_steps, options.act.fixed_steps);
    Tensor table = empty({steps, d}, tensor_options);
    init::normal_(table, 0.0, 1.0 / std::sqrt(static_cast<double>(d)));
    step_embedding = register_parameter("step_embedding", table);
  }
}

Tensor AdaptiveComputationTime::add_signals(const Tensor& state, int64_t step) const {
  const int64_t L = state.size(1), d = state.size(2);
  Tensor x = state;
  if (options_.position_signal) x = x + timing_signal_1d(L, d, state.options()).view({1, L, d});
  switch (options_.step_signal) {
    case ActStepSignal::None:
      break;
    case ActStepSignal::Sinusoid: {
      int64_t steps = std::max(options_.act.max_steps, options_.act.fixed_steps);
      x = x + timing_signal_1d(steps, d, state.options()).select(0, step).view({1, 1, d});
      break;
    }
    case ActStepSignal::Learned:
      LOOM_CHECK(step < step_embedding.size(0), "AdaptiveComputationTime: step ", step,
                 " has no row in the learned step signal [", step_embedding.size(0), ", ", d, "]");
      x = x + (step_embedding.select(0, step) * std::sqrt(static_cast<double>(d))).view({1, 1, d});
      break;
  }
  return x;
}

ActResult AdaptiveComputationTime::forward(const Tensor& x, const ActStepFn& step,
                                           const Tensor& padding_mask) {
  LOOM_CHECK(x.defined() && x.dim() == 3 && x.size(2) == options_.d_model,
             "AdaptiveComputationTime(d_model=", options_.d_model, "): input must be [B, L, ",
             options_.d_model, "], got ", x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  ActHaltingFn halt;
  if (options_.random_halting) {
    halt = [](const Tensor& h, const Tensor&, int64_t) { return rand({h.size(0)}, h.options()); };
  } else {
    halt = [unit = halting](const Tensor& h, const Tensor&, int64_t) {
      return sigmoid(unit->forward(h).view({h.size(0)}));
    };
  }
  ActPreprocessFn pre;
  if (options_.position_signal || options_.step_signal != ActStepSignal::None)
    pre = [this](const Tensor& s, int64_t t) { return add_signals(s, t); };
  return adaptive_computation_time(x, step, halt, options_.act, padding_mask, pre);
}

ActStepFn transformer_act_step(std::shared_ptr<TransformerBlock> block, Tensor key_padding_mask,
                               bool is_causal) {
  LOOM_CHECK(block != nullptr, "transformer_act_step: null block");
  return [block, key_padding_mask, is_causal](const Tensor& x, const Tensor& rows, int64_t) {
    const int64_t B = x.size(0), L = x.size(1), d = x.size(2), n = rows.numel();
    if (n == B * L) return block->forward(x, Tensor(), key_padding_mask, is_causal).reshape({n, d});

    // Group the (ascending) rows by batch element: each group's queries attend to that element's L keys.
    std::vector<int64_t> idx = rows.cpu().contiguous().to_vector<int64_t>();
    Tensor h = block->ln1->forward(x);
    Tensor h_flat = h.reshape({B * L, d});
    std::vector<Tensor> attended;
    for (size_t begin = 0; begin < idx.size();) {
      const int64_t b = idx[begin] / L;
      size_t end = begin;
      while (end < idx.size() && idx[end] / L == b) ++end;
      std::vector<int64_t> group(idx.begin() + static_cast<std::ptrdiff_t>(begin),
                                 idx.begin() + static_cast<std::ptrdiff_t>(end));
      const int64_t nb = static_cast<int64_t>(group.size());
      Tensor q = index_select(h_flat, 0, tensor(group, {nb}).to(x.device())).view({1, nb, d});
      Tensor kv = h.narrow(0, b, 1);
      Tensor mask;
      if (is_causal) {
        // Row r (position l) may not see keys after l.
        std::vector<double> m(static_cast<size_t>(nb * L), 0.0);
        for (int64_t r = 0; r < nb; ++r)
          for (int64_t j = group[static_cast<size_t>(r)] % L + 1; j < L; ++j)
            m[static_cast<size_t>(r * L + j)] = 1;
        mask = tensor(m, {nb, L}).to(DType::Bool).to(x.device());
      }
      Tensor kpm = key_padding_mask.defined() ? key_padding_mask.narrow(0, b, 1) : Tensor();
      attended.push_back(block->attn->forward(q, kv, kv, mask, kpm).view({nb, d}));
      begin = end;
    }
    Tensor a = attended.size() == 1 ? attended[0] : cat(attended, 0);
    Tensor y = index_select(x.reshape({B * L, d}), 0, rows) + block->dropout1->forward(a);
    Tensor m =
        block->fc2->forward(block->dropout->forward(gelu(block->fc1->forward(block->ln2->forward(y)))));
    return y + block->dropout2->forward(m);
  };
}

}  // namespace loom::nn
