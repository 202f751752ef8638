#pragma once
// Parameter initialisers (torch.nn.init): each fills its tensor in place under NoGradGuard, draws from Loom's
// Philox generator (loom::rand / loom::randn on the default generator, so manual_seed makes them
// reproducible) and returns the same tensor. Fan computations follow torch.nn.init._calculate_fan_in_and_fan_out:
// for a weight [out, in, k...], fan_in = in * prod(k) and fan_out = out * prod(k).
#include <string>

#include "loom/core/tensor.h"

namespace loom::nn::init {

// Tensors are handles: passing one by value still fills the caller's data.
Tensor uniform_(Tensor t, double low = 0.0, double high = 1.0);
Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0);
Tensor constant_(Tensor t, double value);
Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);

// The recommended gain for a nonlinearity (torch.nn.init.calculate_gain): "linear", "conv*", "sigmoid" -> 1,
// "tanh" -> 5/3, "relu" -> sqrt(2), "leaky_relu" -> sqrt(2 / (1 + param^2)), "selu" -> 3/4.
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

struct Fans {
  int64_t fan_in;
  int64_t fan_out;
};
// Throws for tensors with fewer than 2 dims (their fans are undefined), naming `op`.
Fans calculate_fans(const Tensor& t, const char* op = "calculate_fans");

// U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform_(Tensor t, double gain = 1.0);
// N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal_(Tensor t, double gain = 1.0);
// U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a), fan = fan_in or fan_out
// per mode ("fan_in" / "fan_out"). nn::Linear uses a = sqrt(5), which gives b = 1 / sqrt(fan_in).
Tensor kaiming_uniform_(Tensor t, double a = 0.0, const std::string& mode = "fan_in",
                        const std::string& nonlinearity = "leaky_relu");
// N(0, std^2) with std = gain / sqrt(fan).
Tensor kaiming_normal_(Tensor t, double a = 0.0, const std::string& mode = "fan_in",
                       const std::string& nonlinearity = "leaky_relu");

}  // namespace loom::nn::init
