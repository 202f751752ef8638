// nn::Module: registration, traversal with dotted names, modes, moves and state dicts.
#include "loom/nn/module.h"

#include <algorithm>
#include <set>

#include "loom/autograd/grad_mode.h"

namespace loom::nn {
namespace {

// Points t's TensorImpl at `replacement`'s data (same shape), keeping its autograd state: every handle to the
// parameter sees the moved data, as after PyTorch's `param.data = replacement`.
void reseat(const Tensor& t, const Tensor& replacement) {
  TensorImpl* impl = t.unsafe_impl();
  impl->storage = replacement.storage();
  impl->strides = replacement.strides();
  impl->offset = replacement.offset();
  impl->dtype = replacement.dtype();
}

// The moved/converted form of t and of its grad (converted the same way), then reseated.
void convert_in_place(const Tensor& t, const std::function<Tensor(const Tensor&)>& convert) {
  NoGradGuard no_grad;
  Tensor grad = t.grad();
  reseat(t, convert(t.detach()));
  if (grad.defined()) t.set_grad(convert(grad));
}

}  // namespace

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

Tensor Module::forward(const Tensor&) {
  LOOM_FAIL(type_name_, ": this module has no single-input forward(Tensor); call its own forward overload");
}

void Module::check_new_name(const char* what, const std::string& name) const {
  LOOM_CHECK(!name.empty(), type_name_, ".", what, ": the name must not be empty");
  LOOM_CHECK(name.find('.') == std::string::npos, type_name_, ".", what, ": name '", name,
             "' must not contain '.' (dots separate the levels of a dotted name)");
  auto has = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& e) { return e.first == name; });
  };
  LOOM_CHECK(!has(parameters_) && !has(buffers_) && !has(children_), type_name_, ".", what, ": name '", name,
             "' is already registered on this module");
}

Tensor Module::register_parameter(const std::string& name, const Tensor& tensor, bool requires_grad) {
  check_new_name("register_parameter", name);
  LOOM_CHECK(tensor.defined(), type_name_, ".register_parameter: parameter '", name, "' is undefined");
  LOOM_CHECK(is_floating(tensor.dtype()), type_name_, ".register_parameter: parameter '", name,
             "' must be floating point, got ", describe(tensor));
  Tensor p = tensor.is_leaf() ? tensor : tensor.detach();
  p.requires_grad_(requires_grad);
  parameters_.emplace_back(name, p);
  return p;
}

Tensor Module::register_buffer(const std::string& name, const Tensor& tensor) {
  check_new_name("register_buffer", name);
  LOOM_CHECK(tensor.defined(), type_name_, ".register_buffer: buffer '", name, "' is undefined");
  Tensor b = tensor.detach();
  buffers_.emplace_back(name, b);
  return b;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name("register_module", name);
  LOOM_CHECK(module != nullptr, type_name_, ".register_module: submodule '", name, "' is null");
  LOOM_CHECK(module.get() != this, type_name_, ".register_module: a module cannot contain itself ('", name, "')");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool recurse, bool want_params, NamedTensors& out,
                     std::vector<const TensorImpl*>& seen) const {
  for (const auto& [name, t] : want_params ? parameters_ : buffers_) {
    if (std::find(seen.begin(), seen.end(), t.unsafe_impl()) != seen.end()) continue;
    seen.push_back(t.unsafe_impl());
    out.emplace_back(prefix + name, t);
  }
  if (!recurse) return;
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", true, want_params, out, seen);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", recurse, true, out, seen);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", recurse, false, out, seen);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (const auto& [name, child] : children_) {
    out.emplace_back(name, child);
    for (auto& [sub, m] : child->named_modules()) out.emplace_back(name + "." + sub, m);
  }
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& [name, child] : children_) child->apply(fn);
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (const Tensor& p : parameters()) {
    if (p.grad().defined()) p.set_grad(Tensor());
  }
}

void Module::to(Device device) {
  auto convert = [device](const Tensor& t) { return t.to(device); };
  for (const Tensor& p : parameters()) convert_in_place(p, convert);
  for (const Tensor& b : buffers()) convert_in_place(b, convert);
}

void Module::to(DType dtype) {
  // Only floating tensors convert (integer buffers such as position ids keep their dtype), as Module.to(dtype).
  LOOM_CHECK(is_floating(dtype), type_name_, ".to: can only convert to a floating dtype, got ", dtype_name(dtype));
  auto convert = [dtype](const Tensor& t) { return t.to(dtype); };
  for (const Tensor& p : parameters()) convert_in_place(p, convert);
  for (const Tensor& b : buffers()) {
    if (is_floating(b.dtype())) convert_in_place(b, convert);
  }
}

NamedTensors Module::state_dict() const {
  NamedTensors out = named_parameters();
  for (auto& entry : named_buffers()) out.push_back(std::move(entry));
  return out;
}

std::vector<std::string> Module::check_state_dict(const std::map<std::string, Tensor>& tensors) const {
  std::vector<std::string> problems;
  std::set<std::string> known;
  for (const auto& [name, t] : state_dict()) {
    known.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      problems.push_back("missing tensor '" + name + "' (" + describe(t) + ")");
      continue;
    }
    const Tensor& src = it->second;
    if (!src.defined()) {
      problems.push_back("tensor '" + name + "' is undefined");
    } else if (src.shape() != t.shape() || src.dtype() != t.dtype()) {
      problems.push_back("tensor '" + name + "' is " + dtype_name(src.dtype()) + shape_str(src.shape()) +
                         " but the module's is " + dtype_name(t.dtype()) + shape_str(t.shape()));
    }
  }
  for (const auto& [name, t] : tensors) {
    if (!known.count(name)) problems.push_back("unexpected tensor '" + name + "' (the module has no such name)");
  }
  return problems;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& tensors) {
  std::vector<std::string> problems = check_state_dict(tensors);
  if (!problems.empty()) {
    std::string msg = type_name_ + ".load_state_dict: nothing was loaded:";
    for (const std::string& p : problems) msg += "\n  " + p;
    LOOM_FAIL(msg);
  }
  NoGradGuard no_grad;
  for (auto& [name, t] : state_dict()) {
    Tensor dst = t;
    dst.copy_(tensors.at(name));
  }
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

}  // namespace loom::nn
