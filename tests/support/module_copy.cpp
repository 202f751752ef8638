#include "support/module_copy.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "loom/autograd/grad_mode.h"

namespace loom::test {

void copy_parameters(const nn::Module& from, nn::Module& to) {
  auto src = from.named_parameters();
  NoGradGuard no_grad;
  for (auto& [name, p] : to.named_parameters()) {
    auto it = std::find_if(src.begin(), src.end(), [&](const auto& kv) { return kv.first == name; });
    ASSERT_NE(it, src.end()) << name;
    p.copy_(it->second.to(p.device()));
  }
}

}  // namespace loom::test
