// Proves the installed package works: includes the umbrella header, runs ops, a backward pass and an nn layer,
// and checks the answers.
#include <loom/loom.h>

#include <cstdio>

int main() {
  loom::Tensor a = loom::tensor<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  loom::Tensor b = loom::ones({3, 2}).requires_grad_();
  loom::Tensor c = loom::matmul(a, b);  // [[6, 6], [15, 15]]
  loom::Tensor total = loom::sum(c);
  total.backward();  // d total / d b[k][j] = sum_i a[i][k] = {5, 7, 9} for each column j
  std::vector<float> g = b.grad().to_vector<float>();
  loom::nn::Linear layer(3, 2);
  loom::Tensor y = layer.forward(a);
  std::printf("consumer: sum(a @ ones) = %g, grad row sums %g %g %g, linear output %lld x %lld\n",
              total.item<float>(), g[0], g[2], g[4], static_cast<long long>(y.size(0)),
              static_cast<long long>(y.size(1)));
  bool ok = total.item<float>() == 42.0f && g[0] == 5 && g[1] == 5 && g[2] == 7 && g[4] == 9 &&
            y.shape() == loom::Shape{2, 2};
  return ok ? 0 : 1;
}
