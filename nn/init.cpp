// Initialisers: a fresh draw on the tensor's device and dtype, scaled and shifted, then copied in (the
// tensor may be a non-contiguous view, and copy_ handles any layout).
#include "loom/nn/init.h"

#include <cmath>

#include "loom/autograd/grad_mode.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"

namespace loom::nn::init {
namespace {

void check_floating(const char* op, const Tensor& t) {
  LOOM_CHECK(t.defined(), "init::", op, ": undefined tensor");
  LOOM_CHECK(is_floating(t.dtype()), "init::", op, ": expected a floating tensor, got ", describe(t));
}

// t = draw * scale + shift, written into t.
Tensor fill_from(Tensor t, Tensor draw, double scale, double shift) {
  NoGradGuard no_grad;
  mul_(draw, scale);
  add_(draw, shift);
  t.copy_(draw);
  return t;
}

int64_t fan_for(const Tensor& t, const std::string& mode, const char* op) {
  Fans fans = calculate_fans(t, op);
  LOOM_CHECK(mode == "fan_in" || mode == "fan_out", "init::", op, ": mode must be 'fan_in' or 'fan_out', got '",
             mode, "'");
  int64_t fan = mode == "fan_in" ? fans.fan_in : fans.fan_out;
  LOOM_CHECK(fan > 0, "init::", op, ": ", mode, " of ", describe(t), " is 0");
  return fan;
}

}  // namespace

Tensor uniform_(Tensor t, double low, double high) {
  check_floating("uniform_", t);
  LOOM_CHECK(low <= high, "init::uniform_: low ", low, " is greater than high ", high);
  return fill_from(t, rand(t.shape(), t.options()), high - low, low);
}

Tensor normal_(Tensor t, double mean, double std) {
  check_floating("normal_", t);
  LOOM_CHECK(std >= 0, "init::normal_: std must be non-negative, got ", std);
  return fill_from(t, randn(t.shape(), t.options()), std, mean);
}

Tensor constant_(Tensor t, double value) {
  LOOM_CHECK(t.defined(), "init::constant_: undefined tensor");
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}

Tensor zeros_(Tensor t) { return constant_(t, 0.0); }
Tensor ones_(Tensor t) { return constant_(t, 1.0); }

double calculate_gain(const std::string& nonlinearity, double param) {
  if (nonlinearity == "linear" || nonlinearity == "sigmoid" || nonlinearity.rfind("conv", 0) == 0) return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nonlinearity == "selu") return 0.75;
  LOOM_FAIL("init::calculate_gain: unsupported nonlinearity '", nonlinearity,
            "' (linear, conv*, sigmoid, tanh, relu, leaky_relu, selu)");
}

Fans calculate_fans(const Tensor& t, const char* op) {
  LOOM_CHECK(t.defined(), "init::", op, ": undefined tensor");
  LOOM_CHECK(t.dim() >= 2, "init::", op, ": fan in and fan out cannot be computed for a tensor with fewer than "
             "2 dims, got shape ", t.shape());
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor xavier_uniform_(Tensor t, double gain) {
  check_floating("xavier_uniform_", t);
  Fans f = calculate_fans(t, "xavier_uniform_");
  double a = gain * std::sqrt(6.0 / static_cast<double>(f.fan_in + f.fan_out));
  return uniform_(t, -a, a);
}

Tensor xavier_normal_(Tensor t, double gain) {
  check_floating("xavier_normal_", t);
  Fans f = calculate_fans(t, "xavier_normal_");
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out)));
}

Tensor kaiming_uniform_(Tensor t, double a, const std::string& mode, const std::string& nonlinearity) {
  check_floating("kaiming_uniform_", t);
  int64_t fan = fan_for(t, mode, "kaiming_uniform_");
  double bound = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / static_cast<double>(fan));
  return uniform_(t, -bound, bound);
}

Tensor kaiming_normal_(Tensor t, double a, const std::string& mode, const std::string& nonlinearity) {
  check_floating("kaiming_normal_", t);
  int64_t fan = fan_for(t, mode, "kaiming_normal_");
  return normal_(t, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan)));
}

}  // namespace loom::nn::init
