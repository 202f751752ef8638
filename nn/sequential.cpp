// nn::Sequential and nn::Functional.
#include "loom/nn/sequential.h"

namespace loom::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

void Sequential::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& m : modules_) y = m->forward(y);
  return y;
}

const std::shared_ptr<Module>& Sequential::operator[](size_t i) const {
  LOOM_CHECK(i < modules_.size(), "Sequential: index ", i, " is out of range for ", modules_.size(), " modules");
  return modules_[i];
}

Functional::Functional(std::function<Tensor(const Tensor&)> fn, std::string type_name)
    : Module(std::move(type_name)), fn_(std::move(fn)) {
  LOOM_CHECK(fn_ != nullptr, name(), ": the function is empty");
}

}  // namespace loom::nn
