#pragma once
// nn::Module: the base of every layer (torch.nn.Module / libtorch's torch::nn::Module). A module owns named
// parameters (leaves that require grad), buffers (state that is saved but not trained) and submodules, and
// gives them stable dotted names ("blocks.0.attn.in_proj_weight") in registration order: the names optimizers
// and checkpoints key on.
//
// Layers keep their parameters as Tensor members too (`weight = register_parameter("weight", ...)`). A Tensor is
// a handle, so the member and the registry share one TensorImpl; to(Device) and to(DType) therefore change
// that TensorImpl in place (as PyTorch's `param.data = ...`), and every handle (the layer's member, an
// optimizer's list) follows. Replacing a member with a different tensor does not change the registry.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  // `type_name` is what errors and printouts call this module ("Linear", "MultiheadAttention").
  explicit Module(std::string type_name = "Module");
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& name() const { return type_name_; }

  // The single-input forward, which Sequential calls. Layers with other signatures add their own overloads;
  // the default throws, naming the module.
  virtual Tensor forward(const Tensor& x);

  // Registers `tensor` (floating, defined) as a parameter: it becomes a leaf that requires grad (a non-leaf is
  // detached first, as nn.Parameter does). Returns the registered handle. Names are non-empty, contain no '.',
  // and are unique among this module's parameters, buffers and submodules.
  Tensor register_parameter(const std::string& name, const Tensor& tensor, bool requires_grad = true);
  // Registers state that is saved and moved with the module but not trained (running statistics, masks).
  Tensor register_buffer(const std::string& name, const Tensor& tensor);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // Own entries first, then each submodule's under "<child>.", depth first in registration order (PyTorch's
  // order). A tensor registered under two names (tied weights) is listed once, under its first name.
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  // This module's descendants with dotted names, pre-order (this module itself is not included).
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
  // Calls fn on this module and every descendant, pre-order.
  void apply(const std::function<void(Module&)>& fn);

  // Training mode (dropout active) is the default; both set it on every descendant.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Drops every parameter's gradient (sets it undefined, as zero_grad(set_to_none=True)).
  void zero_grad();
  // Moves (converts) every parameter, its gradient and every buffer in place; see the note at the top.
  void to(Device device);
  void to(DType dtype);

  // Parameters then buffers under their dotted names: what a checkpoint stores.
  NamedTensors state_dict() const;
  // Problems that would stop load_state_dict: names missing from `tensors`, names it has that the module lacks,
  // shape or dtype mismatches. Each is one line naming the tensor. Empty when the load would succeed.
  std::vector<std::string> check_state_dict(const std::map<std::string, Tensor>& tensors) const;
  // Copies `tensors` into the parameters and buffers after check_state_dict finds nothing wrong; otherwise
  // throws a loom::Error listing every problem and changes nothing.
  void load_state_dict(const std::map<std::string, Tensor>& tensors);

  // Total elements over all (distinct) parameters.
  int64_t num_parameters() const;

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const char* what, const std::string& name) const;
  void collect(const std::string& prefix, bool recurse, bool want_params, NamedTensors& out,
               std::vector<const TensorImpl*>& seen) const;

  std::string type_name_;
  bool training_ = true;
  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace loom::nn
