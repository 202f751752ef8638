#pragma once
// Custom autograd functions with a user-written forward and backward, recorded as one tape entry (the shape of
// libtorch's torch::autograd::Function):
//
//   struct ScaledExp : loom::autograd::Function<ScaledExp> {
//     static constexpr const char* name = "scaled_exp";   // optional; names the entry in errors
//     static Tensor forward(AutogradContext* ctx, const Tensor& x, double scale) {
//       Tensor y = loom::exp(x) * scale;
//       ctx->save_for_backward({y});
//       return y;
//     }
//     static std::vector<Tensor> backward(AutogradContext* ctx, const std::vector<Tensor>& grad_outputs) {
//       return {grad_outputs[0] * ctx->get_saved_variables()[0], Tensor()};  // one per forward argument
//     }
//   };
//   Tensor y = ScaledExp::apply(x, 2.0);
//
// forward runs with grad mode off; backward returns one gradient per forward argument (undefined for
// non-tensor arguments and inputs that need none) and runs with grad mode off unless it turns it on itself.
#include <any>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"

namespace loom::autograd {

class AutogradContext {
 public:
  explicit AutogradContext(const char* name) : name_(name) {}
  // Tensors backward needs; an in-place change to any of them before backward is reported as an error.
  void save_for_backward(const std::vector<Tensor>& tensors);
  std::vector<Tensor> get_saved_variables() const;
  // Whether forward argument i (counting every argument) is a tensor that needs a gradient.
  bool needs_input_grad(size_t i) const { return i < needs_input_grad_.size() && needs_input_grad_[i]; }
  // Anything else backward needs (sizes, flags, a Philox state).
  std::unordered_map<std::string, std::any> saved_data;

  std::vector<bool> needs_input_grad_;  // set by Function::apply

 private:
  const char* name_;
  std::vector<SavedTensor> saved_;
};

namespace detail {

template <typename A>
constexpr bool is_tensor_arg = std::is_same_v<std::remove_cvref_t<A>, Tensor>;

inline std::vector<Tensor> as_outputs(Tensor t) { return {std::move(t)}; }
inline std::vector<Tensor> as_outputs(std::vector<Tensor> v) { return v; }

template <typename R>
R from_outputs(std::vector<Tensor> v) {
  if constexpr (std::is_same_v<R, Tensor>) {
    return std::move(v[0]);
  } else {
    return v;
  }
}

}  // namespace detail

template <typename Derived>
struct Function {
  template <typename... Args>
  static auto apply(Args&&... args) {
    const char* name = "Function";
    if constexpr (requires { Derived::name; }) name = Derived::name;

    // The tensor arguments, and which argument each one was.
    std::vector<Tensor> inputs;
    std::vector<size_t> input_arg;
    auto ctx = std::make_shared<AutogradContext>(name);
    size_t arg = 0;
    auto collect = [&](const auto& a) {
      if constexpr (detail::is_tensor_arg<decltype(a)>) {
        inputs.push_back(a);
        input_arg.push_back(arg);
        ctx->needs_input_grad_.push_back(GradMode::is_enabled() && a.defined() && a.requires_grad());
      } else {
        ctx->needs_input_grad_.push_back(false);
      }
      ++arg;
    };
    (collect(args), ...);
    const size_t num_args = sizeof...(Args);
    bool recording = any_requires_grad(inputs);

    using Result = decltype(Derived::forward(ctx.get(), std::forward<Args>(args)...));
    std::vector<Tensor> outputs;
    {
      GradModeGuard no_grad(false);
      outputs = detail::as_outputs(Derived::forward(ctx.get(), std::forward<Args>(args)...));
    }
    if (recording) {
      // An output that is one of the inputs becomes a new handle, so the input keeps its own tape state.
      for (Tensor& out : outputs)
        for (const Tensor& in : inputs)
          if (out.defined() && out.is_same(in)) out = out.detach();
      auto backward = [ctx, input_arg, num_args, name](const std::vector<Tensor>& grads) {
        std::vector<Tensor> arg_grads = Derived::backward(ctx.get(), grads);
        LOOM_CHECK(arg_grads.size() == num_args, name, " backward: returned ", arg_grads.size(),
                   " gradients, expected one per forward argument (", num_args, "; undefined for non-tensors)");
        std::vector<Tensor> input_grads;
        input_grads.reserve(input_arg.size());
        for (size_t a : input_arg) input_grads.push_back(std::move(arg_grads[a]));
        return input_grads;
      };
      record_entry(name, inputs, outputs, std::move(backward));
    }
    return detail::from_outputs<Result>(std::move(outputs));
  }
};

}  // namespace loom::autograd
