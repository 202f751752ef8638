#include "loom/autograd/checkpoint.h"

#include "loom/autograd/engine.h"
#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/core/generator.h"

namespace loom {

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  LOOM_CHECK(static_cast<bool>(fn), "checkpoint: empty function");
  // Record whenever grad mode is on, even if no input requires grad: fn may use parameters that do.
  bool recording = GradMode::is_enabled();
  PhiloxState rng = default_generator().state();
  std::vector<Tensor> outputs;
  {
    GradModeGuard no_grad(false);
    outputs = fn(inputs);
  }
  if (!recording) return outputs;

  for (Tensor& out : outputs)
    for (const Tensor& in : inputs)
      if (out.defined() && out.is_same(in)) out = out.detach();
  std::vector<autograd::SavedTensor> saved;
  std::vector<bool> needs_grad;
  for (const Tensor& in : inputs) {
    saved.emplace_back(in, "checkpoint");
    needs_grad.push_back(in.defined() && in.requires_grad());
  }

  auto backward = [fn, saved = std::move(saved), needs_grad, rng](const std::vector<Tensor>& grads) {
    std::vector<Tensor> replay_inputs;
    for (size_t i = 0; i < saved.size(); ++i) {
      Tensor d = saved[i].defined() ? saved[i].get().detach() : Tensor();
      if (needs_grad[i]) d.requires_grad_();
      replay_inputs.push_back(d);
    }
    std::vector<Tensor> replay_outputs;
    {
      GeneratorStateGuard rewind(rng);
      GradModeGuard grad_on(true);
      autograd::TapeGuard nested;
      replay_outputs = fn(replay_inputs);
    }
    LOOM_CHECK(replay_outputs.size() == grads.size(), "checkpoint backward: the rerun returned ",
               replay_outputs.size(), " outputs but the forward returned ", grads.size(),
               " (fn must be deterministic given its inputs and the generator state)");
    std::vector<Tensor> roots, root_grads;
    for (size_t i = 0; i < replay_outputs.size(); ++i) {
      if (replay_outputs[i].defined() && replay_outputs[i].requires_grad()) {
        roots.push_back(replay_outputs[i]);
        root_grads.push_back(grads[i]);
      }
    }
    if (!roots.empty()) autograd::backward(roots, root_grads);
    std::vector<Tensor> input_grads;
    for (size_t i = 0; i < replay_inputs.size(); ++i)
      input_grads.push_back(needs_grad[i] ? replay_inputs[i].grad() : Tensor());
    return input_grads;
  };
  autograd::record_entry("checkpoint", inputs, outputs, std::move(backward));
  return outputs;
}

Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& input) {
  LOOM_CHECK(static_cast<bool>(fn), "checkpoint: empty function");
  return checkpoint([fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in[0])}; }, {input})[0];
}

}  // namespace loom
