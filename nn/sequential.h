#pragma once
// nn::Sequential (torch.nn.Sequential): submodules named "0", "1", ... applied in order, each through its
// forward(Tensor). nn::Functional wraps a plain function as a module, for steps that have no parameters.
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "loom/nn/module.h"

namespace loom::nn {

class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);

  // Appends a module under the next index.
  void push_back(std::shared_ptr<Module> module);
  Tensor forward(const Tensor& x) override;

  size_t size() const { return modules_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

class Functional : public Module {
 public:
  explicit Functional(std::function<Tensor(const Tensor&)> fn, std::string type_name = "Functional");
  Tensor forward(const Tensor& x) override { return fn_(x); }

 private:
  std::function<Tensor(const Tensor&)> fn_;
};

}  // namespace loom::nn
