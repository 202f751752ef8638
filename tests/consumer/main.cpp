// Proves the installed package works: includes the umbrella header, runs a few ops, checks the answer.
#include <loom/loom.h>

#include <cstdio>

int main() {
  loom::Tensor a = loom::tensor<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  loom::Tensor b = loom::ones({3, 2});
  loom::Tensor c = loom::matmul(a, b);  // [[6, 6], [15, 15]]
  float total = loom::sum(c).item<float>();
  std::printf("consumer: sum(a @ ones) = %g\n", total);
  return total == 42.0f ? 0 : 1;
}
