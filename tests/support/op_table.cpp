// The op table. Rows marked golden mirror tests/golden/make_golden.py case by case (same name, shapes,
// dtypes, value ranges, parameters and views); parity-only rows cover random ops and shapes large enough to
// take the kernels' vectorised and multi-threaded paths.
#include "support/op_table.h"

#include <cmath>
#include <memory>
#include <numbers>
#include <numeric>

#include "loom/loom.h"

namespace loom::test {

double Rng::uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
  double u1 = 1.0 - uniform();
  double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

int64_t Rng::integer(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(engine_() % static_cast<uint64_t>(hi - lo));
}

namespace {

using V = std::vector<Tensor>;

// --- input builders (host tensors; see Gen in make_golden.py)
// ------------------------------------------------

Tensor from_doubles(const std::vector<double>& values, const Shape& shape, DType dtype) {
  return tensor<double>(values, shape).to(dtype);
}

Tensor normal(Rng& r, const Shape& shape, DType dtype = kFloat32, double scale = 1.0, double shift = 0.0) {
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = r.normal() * scale + shift;
  return from_doubles(v, shape, dtype);
}

Tensor uniform(Rng& r, const Shape& shape, double lo, double hi, DType dtype = kFloat32) {
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = lo + (hi - lo) * r.uniform();
  return from_doubles(v, shape, dtype);
}

// Integers in [lo, hi) in any dtype (integer-valued floats give ties on purpose).
Tensor ints(Rng& r, const Shape& shape, int64_t lo, int64_t hi, DType dtype = kInt64) {
  std::vector<int64_t> v(shape_numel(shape));
  for (int64_t& x : v) x = r.integer(lo, hi);
  return tensor<int64_t>(v, shape).to(dtype);
}

Tensor bools(Rng& r, const Shape& shape, double p = 0.5) {
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = r.uniform() < p ? 1.0 : 0.0;
  return from_doubles(v, shape, kBool);
}

std::vector<int64_t> permutation(Rng& r, int64_t n) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[r.integer(0, i + 1)]);
  return p;
}

// 0 .. n-1 in random order (halved for floats): no ties.
Tensor distinct(Rng& r, const Shape& shape, DType dtype = kFloat32) {
  std::vector<int64_t> p = permutation(r, shape_numel(shape));
  std::vector<double> v(p.begin(), p.end());
  if (is_floating(dtype)) {
    for (double& x : v) x *= 0.5;
  }
  return from_doubles(v, shape, dtype);
}

// int64 indices in [0, n) that never repeat along `dim`.
Tensor unique_index(Rng& r, const Shape& shape, int64_t dim, int64_t n) {
  Shape moved = shape;
  int64_t last = static_cast<int64_t>(shape.size()) - 1;
  std::swap(moved[dim], moved[last]);
  int64_t k = moved[last];
  std::vector<int64_t> v;
  for (int64_t row = 0; row < shape_numel(moved) / k; ++row) {
    std::vector<int64_t> p = permutation(r, n);
    v.insert(v.end(), p.begin(), p.begin() + k);
  }
  return tensor<int64_t>(v, moved).transpose(dim, last).contiguous();
}

Tensor floats(const std::vector<float>& values, const Shape& shape) { return tensor<float>(values, shape); }
Tensor floats(const std::vector<float>& values) { return tensor<float>(values); }

// --- op results as a list of outputs
// ---------------------------------------------------------------------------

V outputs(const Tensor& t) { return {t}; }
V outputs(const ValuesIndices& vi) { return {vi.values, vi.indices}; }
V outputs(V v) { return v; }
// A host answer (allclose) as a 0-d bool tensor on the device the row ran on, like every other output.
V on_device(bool b, Device dev) { return {tensor<bool>({b}, Shape{}).to(dev)}; }

#define MAKE(...) []([[maybe_unused]] Rng& r) -> V { return {__VA_ARGS__}; }
#define RUN(...) \
  []([[maybe_unused]] const V& x, [[maybe_unused]] Device dev) -> V { return outputs(__VA_ARGS__); }

V none(Rng&) { return {}; }
V n35(Rng& r) { return {normal(r, {3, 5})}; }
V n34(Rng& r) { return {normal(r, {3, 4})}; }
V n345(Rng& r) { return {normal(r, {3, 4, 5})}; }
V n34x2(Rng& r) { return {normal(r, {3, 4}), normal(r, {3, 4})}; }
V pos35(Rng& r) { return {uniform(r, {3, 5}, 0.1, 4.0)}; }
V f64_35(Rng& r) { return {normal(r, {3, 5}, kFloat64)}; }
V extreme(Rng&) { return {floats({-100, -30, -5, -0.0f, 0, 5, 30, 100})}; }
V ties34(Rng& r) { return {ints(r, {3, 4}, -2, 3, kFloat32)}; }
V ties34x2(Rng& r) { return {ints(r, {3, 4}, -2, 3, kFloat32), ints(r, {3, 4}, -2, 3, kFloat32)}; }
V nan_pair(Rng&) { return {floats({1, NAN, 3, NAN}), floats({2, 1, NAN, NAN})}; }
V b34(Rng& r) { return {bools(r, {3, 4}, 0.3)}; }
V ties46(Rng& r) { return {ints(r, {4, 6}, 0, 3, kFloat32)}; }
V ties38(Rng& r) { return {ints(r, {3, 8}, 0, 4, kFloat32)}; }
V n45(Rng& r) { return {normal(r, {4, 5})}; }
V n23(Rng& r) { return {normal(r, {2, 3})}; }
V ce(Rng& r) { return {normal(r, {5, 4}), ints(r, {5}, 0, 4)}; }

// Mask with row `row` fully excluded (bools elsewhere), as row_masked in make_golden.py.
Tensor row_masked(Rng& r, const Shape& shape, int64_t row) {
  Tensor m = bools(r, shape, 0.3);
  m.select(0, row).fill_(1.0);
  return m;
}

// Logits [6, 4] and targets with `value` at the given positions, as ignored() in make_golden.py.
V ignored(Rng& r, int64_t value, std::initializer_list<int64_t> positions) {
  Tensor x = normal(r, {6, 4});
  Tensor t = ints(r, {6}, 0, 4);
  for (int64_t p : positions) t.select(0, p).fill_(static_cast<double>(value));
  return {x, t};
}

// a, and b within `rel` of a (float32), for allclose.
V near(Rng& r, double rel_noise, double scale) {
  std::vector<double> a(12), b(12);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(r.normal());
    b[i] = a[i] * scale + rel_noise * r.normal();
  }
  return {from_doubles(a, {3, 4}, kFloat32), from_doubles(b, {3, 4}, kFloat32)};
}

V big(Rng& r) { return {normal(r, {129, 1031})}; }

V ce_big(Rng& r) {
  Tensor logits = normal(r, {256, 1000});
  Tensor target = ints(r, {256}, 0, 1000);
  for (int64_t p : {0, 7, 100, 255}) target.select(0, p).fill_(-100);
  return {logits, target};
}

// The op's output and the gradients of sum(out * probe) (probe = the last input) with respect to the first
// n_leaves inputs: one row checks a kernel's forward and backward together.
template <typename F>
V with_grads(const V& x, size_t n_leaves, F op) {
  V leaves;
  for (size_t i = 0; i < n_leaves; ++i) leaves.push_back(x[i].detach().requires_grad_());
  Tensor out = op(leaves);
  sum(out * x.back()).backward();
  V result{out.detach()};
  for (const Tensor& leaf : leaves) result.push_back(leaf.grad());
  return result;
}

// Two AdamW steps (weight decay on) and one Adam step with L2 decay from fixed gradients: the fused update.
V adam_steps(const V& x, Device) {
  V result;
  for (bool decoupled : {true, false}) {
    Tensor p = x[0].clone().requires_grad_();
    nn::AdamOptions options;
    options.lr = 1e-2;
    options.weight_decay = 0.1;
    std::unique_ptr<nn::Optimizer> opt;
    if (decoupled)
      opt = std::make_unique<nn::AdamW>(nn::Optimizer::NamedParameters{{"p", p}}, options);
    else
      opt = std::make_unique<nn::Adam>(nn::Optimizer::NamedParameters{{"p", p}}, options);
    for (size_t step = 1; step < x.size(); ++step) {
      opt->zero_grad();
      sum(p * x[step]).backward();
      opt->step();
    }
    result.push_back(p.detach());
  }
  return result;
}

// act_frozen_projection forward and its gradients (of sum(out * probe)) with respect to every floating input;
// squared_norm is |centred|^2 as the model makes it, so the variance is positive.
V act_frozen_projection_case(const V& x, Device dev) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < 6; ++i) leaves.push_back(x[i].detach().requires_grad_());
  // Rows [0, n + h) split between running (n) and frozen (h): the hand-picked split for the small case, else
  // rows visited with a stride coprime to n + h, the first h of them frozen.
  const int64_t n = x[0].size(0), h = x[1].size(0), total = n + h;
  std::vector<int64_t> frozen_rows{1, 2, 4, 6}, running_rows{0, 3, 5};
  if (n != 3 || h != 4) {
    frozen_rows.clear();
    running_rows.clear();
    int64_t stride = 37;
    while (std::gcd(stride, total) != 1) ++stride;
    for (int64_t i = 0; i < total; ++i) (i < h ? frozen_rows : running_rows).push_back(i * stride % total);
  }
  ActFrozenRows frozen{tensor(frozen_rows, {h}).to(dev), leaves[1], leaves[2],
                       sum(leaves[2] * leaves[2], {1})};
  ActStepSignalTerms signal{leaves[3], leaves[4], leaves[5]};
  Tensor out = act_frozen_projection(leaves[0], tensor(running_rows, {n}).to(dev), frozen, signal, 1e-6);
  sum(out * x[6]).backward();
  V result{out.detach()};
  for (const Tensor& leaf : leaves) result.push_back(leaf.grad());
  return result;
}

std::vector<OpCase> build() {
  std::vector<OpCase> t;
  auto row = [&t](const char* name, MakeFn make, RunFn run, Tolerance tol = {}) {
    t.push_back({name, make, run, tol, true});
  };
  auto parity = [&t](const char* name, MakeFn make, RunFn run, Tolerance tol = {}) {
    t.push_back({name, make, run, tol, false});
  };
  const Tolerance sum_tol{1e-5, 1e-4};  // float32 sums of hundreds of terms in a different order

  // --- elementwise -----------------------------------------------------------------------------------------
  row("neg", n35, RUN(neg(x[0])));
  row("exp", n35, RUN(exp(x[0])));
  row("tanh", n35, RUN(tanh(x[0])));
  row("sigmoid", n35, RUN(sigmoid(x[0])));
  row("relu", n35, RUN(relu(x[0])));
  row("gelu", n35, RUN(gelu(x[0])));
  row("gelu_tanh", n35, RUN(gelu(x[0], "tanh")));
  row("elu", n35, RUN(elu(x[0])));
  row("elu_alpha", n35, RUN(elu(x[0], 0.5)));
  row("abs", n35, RUN(abs(x[0])));
  row("square", n35, RUN(square(x[0])));
  row("clamp", n35, RUN(clamp(x[0], -0.5, 0.8)));
  row("clamp_min", n35, RUN(clamp(x[0], -0.5, INFINITY)));
  row("clamp_max", n35, RUN(clamp(x[0], -INFINITY, 0.3)));
  row("pow_scalar_int_exponent", n35, RUN(pow(x[0], 3.0)));
  row("pow_scalar_base", n35, RUN(pow(2.0, x[0])));
  row("log", pos35, RUN(log(x[0])));
  row("sqrt", pos35, RUN(sqrt(x[0])));
  row("rsqrt", pos35, RUN(rsqrt(x[0])));
  row("reciprocal", pos35, RUN(reciprocal(x[0])));
  row("pow_scalar", pos35, RUN(pow(x[0], 2.5)));
  row("sign", MAKE(ints(r, {3, 5}, -2, 3, kFloat32)), RUN(sign(x[0])));
  row("logical_not", MAKE(bools(r, {3, 5})), RUN(logical_not(x[0])));
  row("exp_f64", f64_35, RUN(exp(x[0])));
  row("tanh_f64", f64_35, RUN(tanh(x[0])));
  row("sigmoid_f64", f64_35, RUN(sigmoid(x[0])));
  row("gelu_f64", f64_35, RUN(gelu(x[0])));
  row("gelu_tanh_f64", f64_35, RUN(gelu(x[0], "tanh")));
  row("elu_f64", f64_35, RUN(elu(x[0])));
  row("log_f64", MAKE(uniform(r, {3, 5}, 0.1, 4.0, kFloat64)), RUN(log(x[0])));
  row("neg_int64", MAKE(ints(r, {7}, -5, 5)), RUN(neg(x[0])));
  row("abs_int32", MAKE(ints(r, {7}, -5, 5, kInt32)), RUN(abs(x[0])));
  row("sigmoid_extreme", extreme, RUN(sigmoid(x[0])));
  row("tanh_extreme", extreme, RUN(tanh(x[0])));
  row("gelu_extreme", extreme, RUN(gelu(x[0])));
  row("elu_extreme", extreme, RUN(elu(x[0])));
  row("exp_extreme", MAKE(floats({-200, -100, -80, 0, 80, 88, 89, 100})), RUN(exp(x[0])));
  row("log_edge", MAKE(floats({0, 1e-30f, 1, 1e30f, INFINITY})), RUN(log(x[0])));
  row("exp_transposed", MAKE(normal(r, {5, 3})), RUN(exp(x[0].t())));
  row("tanh_strided", MAKE(normal(r, {3, 8})), RUN(tanh(x[0].slice(1, 0, 8, 2))));
  row("sigmoid_expanded", MAKE(normal(r, {3, 1})), RUN(sigmoid(x[0].expand({3, 4}))));

  row("add", n34x2, RUN(add(x[0], x[1])));
  row("sub", n34x2, RUN(sub(x[0], x[1])));
  row("mul", n34x2, RUN(mul(x[0], x[1])));
  row("maximum", n34x2, RUN(maximum(x[0], x[1])));
  row("minimum", n34x2, RUN(minimum(x[0], x[1])));
  row("div", MAKE(normal(r, {3, 4}), uniform(r, {3, 4}, 0.5, 2.0)), RUN(div(x[0], x[1])));
  row("pow", MAKE(uniform(r, {3, 4}, 0.5, 2.0), normal(r, {3, 4})), RUN(pow(x[0], x[1])));
  row("add_broadcast", MAKE(normal(r, {2, 1, 4}), normal(r, {3, 1})), RUN(add(x[0], x[1])));
  row("mul_broadcast_0d", MAKE(normal(r, {3, 4}), normal(r, {})), RUN(mul(x[0], x[1])));
  row("sub_broadcast_rank", MAKE(normal(r, {4}), normal(r, {3, 4})), RUN(sub(x[0], x[1])));
  row("maximum_broadcast", MAKE(normal(r, {3, 1}), normal(r, {1, 4})), RUN(maximum(x[0], x[1])));
  row("add_transposed", MAKE(normal(r, {3, 4}), normal(r, {4, 3})), RUN(add(x[0], x[1].t())));
  row("mul_sliced", MAKE(normal(r, {3, 8}), normal(r, {3, 4})), RUN(mul(x[0].slice(1, 1, 8, 2), x[1])));
  row("div_expanded", MAKE(normal(r, {3, 4}), uniform(r, {1, 4}, 0.5, 2.0)),
      RUN(div(x[0], x[1].expand({3, 4}))));
  row("add_int64", MAKE(ints(r, {3, 4}, -100, 100), ints(r, {3, 4}, -100, 100)), RUN(add(x[0], x[1])));
  row("sub_int32", MAKE(ints(r, {3, 4}, -100, 100, kInt32), ints(r, {3, 4}, -100, 100, kInt32)),
      RUN(sub(x[0], x[1])));
  row("mul_int64", MAKE(ints(r, {3, 4}, -100, 100), ints(r, {3, 4}, -100, 100)), RUN(mul(x[0], x[1])));
  row("add_int32_int64", MAKE(ints(r, {5}, -9, 9, kInt32), ints(r, {5}, -9, 9)), RUN(add(x[0], x[1])));
  row("add_int_float", MAKE(ints(r, {3, 4}, -9, 9), normal(r, {3, 4})), RUN(add(x[0], x[1])));
  row("div_int", MAKE(ints(r, {3, 4}, -9, 9), ints(r, {3, 4}, 1, 5)), RUN(div(x[0], x[1])));
  row("pow_int64", MAKE(ints(r, {6}, 0, 5), ints(r, {6}, 0, 4)), RUN(pow(x[0], x[1])));
  row("maximum_nan", nan_pair, RUN(maximum(x[0], x[1])));
  row("minimum_nan", nan_pair, RUN(minimum(x[0], x[1])));
  row("add_f64", MAKE(normal(r, {3, 4}, kFloat64), normal(r, {3, 4}, kFloat64)), RUN(add(x[0], x[1])));
  row("mul_f64", MAKE(normal(r, {3, 4}, kFloat64), normal(r, {3, 4}, kFloat64)), RUN(mul(x[0], x[1])));
  row("div_f64", MAKE(normal(r, {3, 4}, kFloat64), uniform(r, {3, 4}, 0.5, 2.0, kFloat64)),
      RUN(div(x[0], x[1])));
  row("pow_f64", MAKE(uniform(r, {3, 4}, 0.5, 2.0, kFloat64), normal(r, {3, 4}, kFloat64)),
      RUN(pow(x[0], x[1])));

  row("add_scalar", n34, RUN(add(x[0], 2.5)));
  row("sub_scalar", n34, RUN(sub(x[0], 1.5)));
  row("mul_scalar", n34, RUN(mul(x[0], -3.0)));
  row("div_scalar", n34, RUN(div(x[0], 4.0)));
  row("rsub_scalar", n34, RUN(2.0 - x[0]));
  row("rdiv_scalar", MAKE(uniform(r, {3, 4}, 0.5, 2.0)), RUN(1.5 / x[0]));
  row("add_scalar_int", MAKE(ints(r, {3, 4}, -9, 9)), RUN(add(x[0], 3.0)));
  row("mul_scalar_int_frac", MAKE(ints(r, {3, 4}, -9, 9)), RUN(mul(x[0], 0.5)));
  row("operators", MAKE(normal(r, {3, 4}), normal(r, {3, 4}), uniform(r, {3, 4}, 0.5, 2.0)),
      RUN(V{(x[0] + x[1]) * x[2], x[0] - x[1] / x[2], -x[0], 2.0 * x[0] + 1.0, 3.0 - x[0], 1.0 / x[2],
            x[0] / 2.0 - 1.0}));

  row("add_inplace", n34x2, [](const V& x, Device) -> V {
    Tensor y = x[0].clone();
    return {add_(y, x[1])};
  });
  row("sub_inplace", n34x2, [](const V& x, Device) -> V {
    Tensor y = x[0].clone();
    return {sub_(y, x[1])};
  });
  row("mul_inplace", n34x2, [](const V& x, Device) -> V {
    Tensor y = x[0].clone();
    return {mul_(y, x[1])};
  });
  row("div_inplace", MAKE(normal(r, {3, 4}), uniform(r, {3, 4}, 0.5, 2.0)), [](const V& x, Device) -> V {
    Tensor y = x[0].clone();
    return {div_(y, x[1])};
  });
  row("add_inplace_broadcast", MAKE(normal(r, {3, 4}), normal(r, {4})), [](const V& x, Device) -> V {
    Tensor y = x[0].clone();
    return {add_(y, x[1])};
  });
  row("add_scalar_inplace", n34, [](const V& x, Device) -> V {
    Tensor y = x[0].clone();
    return {add_(y, 1.5)};
  });
  row("mul_scalar_inplace", n34, [](const V& x, Device) -> V {
    Tensor y = x[0].clone();
    return {mul_(y, -0.5)};
  });

  row("eq", ties34x2, RUN(eq(x[0], x[1])));
  row("ne", ties34x2, RUN(ne(x[0], x[1])));
  row("lt", ties34x2, RUN(lt(x[0], x[1])));
  row("le", ties34x2, RUN(le(x[0], x[1])));
  row("gt", ties34x2, RUN(gt(x[0], x[1])));
  row("ge", ties34x2, RUN(ge(x[0], x[1])));
  row("eq_scalar", ties34, RUN(eq(x[0], 1.0)));
  row("ne_scalar", ties34, RUN(ne(x[0], 1.0)));
  row("lt_scalar", ties34, RUN(lt(x[0], 0.5)));
  row("le_scalar", ties34, RUN(le(x[0], 0.0)));
  row("gt_scalar", ties34, RUN(gt(x[0], -1.0)));
  row("ge_scalar", ties34, RUN(ge(x[0], 1.0)));
  row("eq_broadcast", MAKE(ints(r, {3, 4}, -2, 3, kFloat32), ints(r, {4}, -2, 3, kFloat32)),
      RUN(eq(x[0], x[1])));
  row("lt_int64", MAKE(ints(r, {3, 4}, -2, 3), ints(r, {3, 4}, -2, 3)), RUN(lt(x[0], x[1])));
  row("le_mixed", MAKE(ints(r, {6}, -2, 3), ints(r, {6}, -2, 3, kFloat32)), RUN(le(x[0], x[1])));
  row("logical_and", MAKE(bools(r, {3, 4}), bools(r, {3, 4})), RUN(logical_and(x[0], x[1])));
  row("logical_or", MAKE(bools(r, {3, 4}), bools(r, {3, 4})), RUN(logical_or(x[0], x[1])));
  row("logical_and_broadcast", MAKE(bools(r, {3, 1}), bools(r, {4})), RUN(logical_and(x[0], x[1])));

  row("where", MAKE(bools(r, {3, 4}), normal(r, {3, 4}), normal(r, {4})), RUN(where(x[0], x[1], x[2])));
  row("where_scalar", MAKE(bools(r, {3, 4}), normal(r, {3, 4})), RUN(where(x[0], x[1], -1.0)));
  row("where_int64", MAKE(bools(r, {3, 4}), ints(r, {3, 4}, -9, 9), ints(r, {3, 4}, -9, 9)),
      RUN(where(x[0], x[1], x[2])));
  row("where_cond_broadcast", MAKE(bools(r, {3, 1}), normal(r, {3, 4}), normal(r, {})),
      RUN(where(x[0], x[1], x[2])));
  row("masked_fill", MAKE(normal(r, {3, 4}), bools(r, {3, 4})), RUN(masked_fill(x[0], x[1], -2.5)));
  row("masked_fill_broadcast", MAKE(normal(r, {3, 4}), bools(r, {3, 1})), RUN(masked_fill(x[0], x[1], 7.0)));
  row("masked_fill_neginf", MAKE(normal(r, {3, 4}), bools(r, {3, 4})),
      RUN(masked_fill(x[0], x[1], -INFINITY)));
  row("masked_fill_int64", MAKE(ints(r, {3, 4}, -9, 9), bools(r, {3, 4})), RUN(masked_fill(x[0], x[1], 7.0)));
  row(
      "allclose_true", [](Rng& r) { return near(r, 1e-7, 1.0); },
      RUN(on_device(allclose(x[0], x[1], 1e-5, 1e-6), dev)));
  row("allclose_false", n34x2, RUN(on_device(allclose(x[0], x[1]), dev)));
  row(
      "allclose_loose", [](Rng& r) { return near(r, 0.0, 1.005); },
      RUN(on_device(allclose(x[0], x[1], 1e-2, 0.0), dev)));

  // --- reductions and scans --------------------------------------------------------------------------------
  row("sum_all", n345, RUN(sum(x[0])));
  row("sum_dim1", n345, RUN(sum(x[0], {1})));
  row("sum_dims_keepdim", n345, RUN(sum(x[0], {0, 2}, true)));
  row("sum_neg_dim", n345, RUN(sum(x[0], {-1})));
  row("sum_int32", MAKE(ints(r, {3, 4}, -50, 50, kInt32)), RUN(sum(x[0], {1})));
  row("sum_bool", MAKE(bools(r, {3, 4})), RUN(sum(x[0])));
  row("sum_empty_dim", MAKE(normal(r, {3, 0})), RUN(sum(x[0], {1})));
  row("sum_transposed", MAKE(normal(r, {5, 3})), RUN(sum(x[0].t(), {1})));
  row("sum_long_rows", MAKE(normal(r, {4, 1000})), RUN(sum(x[0], {1})), sum_tol);
  row("sum_f64", MAKE(normal(r, {100}, kFloat64)), RUN(sum(x[0])));
  row("mean_all", n345, RUN(mean(x[0])));
  row("mean_dims", n345, RUN(mean(x[0], {0, 1})));
  row("mean_keepdim", n345, RUN(mean(x[0], {2}, true)));
  row("mean_f64", MAKE(normal(r, {3, 4}, kFloat64)), RUN(mean(x[0], {1})));
  row("prod_dim", MAKE(uniform(r, {3, 4}, 0.5, 1.5)), RUN(prod(x[0], {1})));
  row("prod_all", MAKE(uniform(r, {3, 4}, 0.5, 1.5)), RUN(prod(x[0])));
  row("prod_int64", MAKE(ints(r, {6}, 1, 4)), RUN(prod(x[0])));
  row("amax_all", n345, RUN(amax(x[0])));
  row("amax_dims_keepdim", n345, RUN(amax(x[0], {1, 2}, true)));
  row("amin_dim", n345, RUN(amin(x[0], {0})));
  row("amin_neg_dim", n345, RUN(amin(x[0], {-1})));
  row("amax_int64", MAKE(ints(r, {3, 4}, -50, 50)), RUN(amax(x[0], {1})));
  row("logsumexp_dim", n345, RUN(logsumexp(x[0], {1})));
  row("logsumexp_multi_keepdim", n345, RUN(logsumexp(x[0], {0, 2}, true)));
  row("logsumexp_large", MAKE(normal(r, {3, 6}, kFloat32, 50.0, 1000.0)), RUN(logsumexp(x[0], {1})));
  row("logsumexp_neginf", MAKE(floats({-INFINITY, -INFINITY, -INFINITY, -INFINITY, 0.5f, -1}, {2, 3})),
      RUN(logsumexp(x[0], {1})));
  row("var_all", n345, RUN(var(x[0])));
  row("var_dim_correction0", n345, RUN(var(x[0], {1}, 0)));
  row("var_dims_keepdim", n345, RUN(var(x[0], {0, 2}, 1, true)));
  row("var_correction2", n345, RUN(var(x[0], {2}, 2)));
  row("var_large_mean", MAKE(normal(r, {4, 64}, kFloat32, 1.0, 1e4)), RUN(var(x[0], {1})));
  row("var_f64", MAKE(normal(r, {3, 7}, kFloat64)), RUN(var(x[0], {1})));
  row("any_dim", b34, RUN(any(x[0], {1})));
  row("all_dim", MAKE(bools(r, {3, 4}, 0.7)), RUN(all(x[0], {0})));
  row("any_all", b34, RUN(any(x[0])));
  row("all_all", b34, RUN(all(x[0])));
  row("any_keepdim", b34, RUN(any(x[0], {1}, true)));
  row("max_dim", n35, RUN(max(x[0], 1)));
  row("max_dim_keepdim", n35, RUN(max(x[0], 0, true)));
  row("min_dim", n35, RUN(min(x[0], 0)));
  row("max_ties", ties46, RUN(max(x[0], 1)));
  row("min_ties", ties46, RUN(min(x[0], 1)));
  row("argmax_dim", n35, RUN(argmax(x[0], 1)));
  row("argmin_keepdim", n35, RUN(argmin(x[0], 0, true)));
  row("argmax_ties", ties46, RUN(argmax(x[0], 1)));
  row("argmin_ties", ties46, RUN(argmin(x[0], 1)));
  row("argmax_int64", MAKE(ints(r, {3, 5}, -9, 9)), RUN(argmax(x[0], 1)));
  row("cumsum_dim0", MAKE(normal(r, {4, 3})), RUN(cumsum(x[0], 0)));
  row("cumsum_dim1", n345, RUN(cumsum(x[0], 1)));
  row("cumsum_neg_dim", n345, RUN(cumsum(x[0], -1)));
  row("cumsum_int64", MAKE(ints(r, {3, 5}, -9, 9)), RUN(cumsum(x[0], 1)));
  row("cumsum_transposed", MAKE(normal(r, {5, 3})), RUN(cumsum(x[0].t(), 1)));
  row("cumprod_dim1", MAKE(uniform(r, {3, 6}, 0.5, 1.5)), RUN(cumprod(x[0], 1)));
  row("cumprod_f64", MAKE(uniform(r, {3, 6}, -1.5, 1.5, kFloat64)), RUN(cumprod(x[0], 0)));

  // --- linear algebra --------------------------------------------------------------------------------------
  row("matmul_2d", MAKE(normal(r, {3, 4}), normal(r, {4, 5})), RUN(matmul(x[0], x[1])));
  row("matmul_1d_1d", MAKE(normal(r, {4}), normal(r, {4})), RUN(matmul(x[0], x[1])));
  row("matmul_1d_2d", MAKE(normal(r, {4}), normal(r, {4, 5})), RUN(matmul(x[0], x[1])));
  row("matmul_2d_1d", MAKE(normal(r, {3, 4}), normal(r, {4})), RUN(matmul(x[0], x[1])));
  row("matmul_batched", MAKE(normal(r, {2, 3, 4}), normal(r, {2, 4, 5})), RUN(matmul(x[0], x[1])));
  row("matmul_broadcast", MAKE(normal(r, {2, 1, 3, 4}), normal(r, {3, 4, 5})), RUN(matmul(x[0], x[1])));
  row("matmul_batched_1d", MAKE(normal(r, {2, 3, 4}), normal(r, {4})), RUN(matmul(x[0], x[1])));
  row("matmul_1d_batched", MAKE(normal(r, {4}), normal(r, {2, 4, 5})), RUN(matmul(x[0], x[1])));
  row("matmul_transposed_a", MAKE(normal(r, {4, 3}), normal(r, {4, 5})), RUN(matmul(x[0].t(), x[1])));
  row("matmul_transposed_b", MAKE(normal(r, {3, 4}), normal(r, {5, 4})), RUN(matmul(x[0], x[1].t())));
  row("matmul_f64", MAKE(normal(r, {5, 6}, kFloat64), normal(r, {6, 7}, kFloat64)), RUN(matmul(x[0], x[1])));
  row("matmul_long_k", MAKE(normal(r, {4, 256}), normal(r, {256, 3})), RUN(matmul(x[0], x[1])), sum_tol);
  row("matmul_empty_k", MAKE(normal(r, {3, 0}), normal(r, {0, 4})), RUN(matmul(x[0], x[1])));
  row("bmm", MAKE(normal(r, {2, 3, 4}), normal(r, {2, 4, 5})), RUN(bmm(x[0], x[1])));
  row("bmm_transposed", MAKE(normal(r, {2, 3, 4}), normal(r, {2, 5, 4})),
      RUN(bmm(x[0], x[1].transpose(1, 2))));
  row("linear", MAKE(normal(r, {3, 4}), normal(r, {5, 4}), normal(r, {5})), RUN(linear(x[0], x[1], x[2])));
  row("linear_nobias", MAKE(normal(r, {3, 4}), normal(r, {5, 4})), RUN(linear(x[0], x[1])));
  row("linear_3d", MAKE(normal(r, {2, 3, 4}), normal(r, {5, 4}), normal(r, {5})),
      RUN(linear(x[0], x[1], x[2])));
  row("linear_f64", MAKE(normal(r, {3, 4}, kFloat64), normal(r, {5, 4}, kFloat64), normal(r, {5}, kFloat64)),
      RUN(linear(x[0], x[1], x[2])));

  // --- shape, indexing, factories and conversions ---------------------------------------------------------
  row("cat_dim0", MAKE(normal(r, {2, 3}), normal(r, {1, 3}), normal(r, {3, 3})), RUN(cat(x, 0)));
  row("cat_dim1", MAKE(normal(r, {2, 1}), normal(r, {2, 3})), RUN(cat(x, 1)));
  row("cat_neg_dim", MAKE(normal(r, {2, 2, 3}), normal(r, {2, 2, 1})), RUN(cat(x, -1)));
  row("cat_int64", MAKE(ints(r, {2}, 0, 9), ints(r, {3}, 0, 9)), RUN(cat(x, 0)));
  row("cat_transposed", MAKE(normal(r, {2, 3}), normal(r, {3, 2})), RUN(cat({x[0], x[1].t()}, 0)));
  row("cat_with_empty", MAKE(normal(r, {2, 3}), normal(r, {0, 3})), RUN(cat(x, 0)));
  row("stack_dim0", MAKE(normal(r, {2, 3}), normal(r, {2, 3}), normal(r, {2, 3})), RUN(stack(x, 0)));
  row("stack_dim1", MAKE(normal(r, {2, 3}), normal(r, {2, 3})), RUN(stack(x, 1)));
  row("stack_dim_last", MAKE(normal(r, {2, 3}), normal(r, {2, 3})), RUN(stack(x, -1)));
  row("split_size", MAKE(normal(r, {7, 3})), RUN(split(x[0], 3, 0)));
  row("split_sizes", MAKE(normal(r, {2, 6})), RUN(split(x[0], std::vector<int64_t>{1, 2, 3}, 1)));
  row("chunk", MAKE(normal(r, {7, 2})), RUN(chunk(x[0], 3, 0)));
  row("chunk_fewer", MAKE(normal(r, {6})), RUN(chunk(x[0], 4, 0)));
  row("chunk_dim1", MAKE(normal(r, {2, 5})), RUN(chunk(x[0], 2, 1)));
  row("gather_dim0", MAKE(normal(r, {4, 3}), ints(r, {2, 3}, 0, 4)), RUN(gather(x[0], 0, x[1])));
  row("gather_dim1", MAKE(normal(r, {3, 5}), ints(r, {3, 4}, 0, 5)), RUN(gather(x[0], 1, x[1])));
  row("gather_3d", MAKE(normal(r, {2, 3, 4}), ints(r, {2, 3, 2}, 0, 4)), RUN(gather(x[0], -1, x[1])));
  row("scatter_dim0", MAKE(normal(r, {4, 3}), unique_index(r, {3, 3}, 0, 4), normal(r, {3, 3})),
      RUN(scatter(x[0], 0, x[1], x[2])));
  row("scatter_dim1", MAKE(normal(r, {3, 5}), unique_index(r, {3, 2}, 1, 5), normal(r, {3, 2})),
      RUN(scatter(x[0], 1, x[1], x[2])));
  row("scatter_add_dim0", MAKE(normal(r, {4, 3}), ints(r, {6, 3}, 0, 4), normal(r, {6, 3})),
      RUN(scatter_add(x[0], 0, x[1], x[2])));
  row("scatter_add_dim1", MAKE(normal(r, {3, 4}), ints(r, {3, 5}, 0, 4), normal(r, {3, 5})),
      RUN(scatter_add(x[0], 1, x[1], x[2])));
  row("index_select_dim0", MAKE(normal(r, {5, 3}), ints(r, {4}, 0, 5)), RUN(index_select(x[0], 0, x[1])));
  row("index_select_dim1", MAKE(normal(r, {3, 5}), ints(r, {3}, 0, 5)), RUN(index_select(x[0], 1, x[1])));
  row("index_select_transposed", MAKE(normal(r, {5, 3}), ints(r, {4}, 0, 5)),
      RUN(index_select(x[0].t(), 1, x[1])));
  row("index_select_int64", MAKE(ints(r, {5, 2}, -9, 9), ints(r, {3}, 0, 5)),
      RUN(index_select(x[0], 0, x[1])));
  row("index_add_dim0", MAKE(normal(r, {5, 3}), ints(r, {6}, 0, 5), normal(r, {6, 3})),
      RUN(index_add(x[0], 0, x[1], x[2])));
  row("index_add_dim1", MAKE(normal(r, {3, 5}), ints(r, {4}, 0, 5), normal(r, {3, 4})),
      RUN(index_add(x[0], 1, x[1], x[2])));
  row("sort_asc", ties38, RUN(sort(x[0], -1)));
  row("sort_desc", ties38, RUN(sort(x[0], -1, true)));
  row("sort_dim0", MAKE(normal(r, {5, 3})), RUN(sort(x[0], 0)));
  row("sort_f64", MAKE(normal(r, {2, 6}, kFloat64)), RUN(sort(x[0], -1)));
  row("sort_int64", MAKE(ints(r, {2, 7}, -3, 3)), RUN(sort(x[0], -1)));
  row("argsort", ties38, RUN(argsort(x[0], -1)));
  row("argsort_desc", ties38, RUN(argsort(x[0], -1, true)));
  row("argsort_dim0", MAKE(ints(r, {6, 2}, 0, 3, kFloat32)), RUN(argsort(x[0], 0)));
  row("topk_largest", MAKE(distinct(r, {3, 8})), RUN(topk(x[0], 3, -1)));
  row("topk_smallest", MAKE(distinct(r, {3, 8})), RUN(topk(x[0], 3, -1, false)));
  row("topk_dim0", MAKE(distinct(r, {6, 3})), RUN(topk(x[0], 2, 0)));
  row("topk_int64", MAKE(distinct(r, {2, 6}, kInt64)), RUN(topk(x[0], 4, -1)));
  row("one_hot", MAKE(ints(r, {5}, 0, 4)), RUN(one_hot(x[0])));
  row("one_hot_num_classes", MAKE(ints(r, {2, 3}, 0, 3)), RUN(one_hot(x[0], 5)));
  row("tril", n45, RUN(tril(x[0])));
  row("triu", n45, RUN(triu(x[0])));
  row("tril_diag_neg1", n45, RUN(tril(x[0], -1)));
  row("triu_diag2", n45, RUN(triu(x[0], 2)));
  row("tril_batched", MAKE(normal(r, {2, 3, 3})), RUN(tril(x[0])));
  row("triu_int64", MAKE(ints(r, {3, 3}, 1, 9)), RUN(triu(x[0])));
  row("tril_transposed", MAKE(normal(r, {5, 4})), RUN(tril(x[0].t())));
  row("arange_end", none, RUN(arange(5, {kInt64, dev})));
  row("arange_start_step", none, RUN(arange(1, 10, 3, {kInt64, dev})));
  row("arange_float", none, RUN(arange(0, 2, 0.25, {kFloat32, dev})));
  row("arange_neg_step", none, RUN(arange(5, -1, -1.5, {kFloat32, dev})));
  row("arange_f64", none, RUN(arange(0, 1, 0.1, {kFloat64, dev})));
  row("zeros", none, RUN(zeros({2, 3}, {kFloat32, dev})));
  row("ones_int32", none, RUN(ones({4}, {kInt32, dev})));
  row("full", none, RUN(full({2, 2}, 3.5, {kFloat32, dev})));
  row("full_int64", none, RUN(full({3}, -7, {kInt64, dev})));
  row("full_bool", none, RUN(full({2}, 1, {kBool, dev})));
  row("scalar_tensor", none, RUN(scalar_tensor(2.5, {kFloat64, dev})));
  row("zeros_like", n23, RUN(zeros_like(x[0])));
  row("ones_like", MAKE(ints(r, {2, 3}, 0, 9)), RUN(ones_like(x[0])));
  row("full_like", n23, RUN(full_like(x[0], -1.25)));
  row("to_int64", MAKE(normal(r, {3, 4}, kFloat32, 3.0)), RUN(x[0].to(kInt64)));
  row("to_int32", MAKE(normal(r, {3, 4}, kFloat32, 3.0)), RUN(x[0].to(kInt32)));
  row("to_bool", MAKE(ints(r, {3, 4}, -1, 2, kFloat32)), RUN(x[0].to(kBool)));
  row("to_f64", n23, RUN(x[0].to(kFloat64)));
  row("int_to_f32", MAKE(ints(r, {2, 3}, -9, 9)), RUN(x[0].to(kFloat32)));
  row("bool_to_f32", MAKE(bools(r, {2, 3})), RUN(x[0].to(kFloat32)));
  row("contiguous_permuted", MAKE(normal(r, {2, 3, 4})), RUN(x[0].permute({2, 0, 1}).contiguous()));
  row("clone_strided", MAKE(normal(r, {4, 6})), RUN(x[0].slice(0, 1, 4, 2).slice(1, 0, 6, 3).clone()));
  row("copy_broadcast", MAKE(normal(r, {4})), [](const V& x, Device dev) -> V {
    Tensor y = zeros({3, 4}, {kFloat32, dev});
    return {y.copy_(x[0])};
  });
  row("fill", n23, [](const V& x, Device) -> V {
    Tensor y = x[0].clone();
    return {y.fill_(0.75)};
  });

  // --- neural-network ops --------------------------------------------------------------------------------
  row("softmax_last", n35, RUN(softmax(x[0], -1)));
  row("softmax_dim0", n35, RUN(softmax(x[0], 0)));
  row("softmax_dim1_3d", MAKE(normal(r, {2, 3, 4})), RUN(softmax(x[0], 1)));
  row("softmax_large", MAKE(normal(r, {3, 5}, kFloat32, 100.0, 1000.0)), RUN(softmax(x[0], -1)));
  row("softmax_f64", f64_35, RUN(softmax(x[0], -1)));
  row("softmax_neginf", MAKE(floats({-INFINITY, 0, 1, 2, -INFINITY, -INFINITY}, {2, 3})),
      RUN(softmax(x[0], -1)));
  row("softmax_masked", MAKE(normal(r, {3, 5}), row_masked(r, {3, 5}, 1)), RUN(softmax(x[0], -1, x[1])));
  row("softmax_masked_broadcast", MAKE(normal(r, {2, 3, 5}), bools(r, {1, 5}, 0.4)),
      RUN(softmax(x[0], -1, x[1])));
  row("softmax_masked_dim0", MAKE(normal(r, {4, 3}), bools(r, {4, 3}, 0.3)), RUN(softmax(x[0], 0, x[1])));
  row("log_softmax_last", n35, RUN(log_softmax(x[0], -1)));
  row("log_softmax_dim0", n35, RUN(log_softmax(x[0], 0)));
  row("log_softmax_large", MAKE(normal(r, {3, 5}, kFloat32, 100.0, -1000.0)), RUN(log_softmax(x[0], -1)));
  row("log_softmax_f64", f64_35, RUN(log_softmax(x[0], -1)));
  row("log_softmax_masked", MAKE(normal(r, {3, 5}), row_masked(r, {3, 5}, 2)),
      RUN(log_softmax(x[0], -1, x[1])));
  row("layer_norm", MAKE(normal(r, {3, 8}), normal(r, {8}), normal(r, {8})),
      RUN(layer_norm(x[0], {8}, x[1], x[2])));
  row("layer_norm_no_affine", MAKE(normal(r, {3, 8})), RUN(layer_norm(x[0], {8})));
  row("layer_norm_weight_only", MAKE(normal(r, {3, 8}), normal(r, {8})), RUN(layer_norm(x[0], {8}, x[1])));
  row("layer_norm_2d", MAKE(normal(r, {2, 3, 4}), normal(r, {3, 4}), normal(r, {3, 4})),
      RUN(layer_norm(x[0], {3, 4}, x[1], x[2])));
  row("layer_norm_eps", MAKE(normal(r, {3, 8}, kFloat32, 0.05)),
      RUN(layer_norm(x[0], {8}, Tensor(), Tensor(), 1e-2)));
  row("layer_norm_large_mean", MAKE(normal(r, {3, 16}, kFloat32, 1.0, 100.0)), RUN(layer_norm(x[0], {16})),
      {1e-4, 1e-5});
  row("layer_norm_f64", MAKE(normal(r, {3, 8}, kFloat64), normal(r, {8}, kFloat64), normal(r, {8}, kFloat64)),
      RUN(layer_norm(x[0], {8}, x[1], x[2])));
  row("embedding", MAKE(ints(r, {4}, 0, 6), normal(r, {6, 3})), RUN(embedding(x[0], x[1])));
  row("embedding_2d", MAKE(ints(r, {2, 3}, 0, 6), normal(r, {6, 3})), RUN(embedding(x[0], x[1])));
  row("cross_entropy_mean", ce, RUN(cross_entropy(x[0], x[1])));
  row("cross_entropy_sum", ce, RUN(cross_entropy(x[0], x[1], -100, Reduction::Sum)));
  row("cross_entropy_none", ce, RUN(cross_entropy(x[0], x[1], -100, Reduction::None)));
  row(
      "cross_entropy_ignore_index",
      [](Rng& r) {
        return ignored(r, -100, {1, 4});
      },
      RUN(cross_entropy(x[0], x[1])));
  row(
      "cross_entropy_ignore_custom",
      [](Rng& r) {
        return ignored(r, 2, {0, 3});
      },
      RUN(cross_entropy(x[0], x[1], 2, Reduction::None)));
  row(
      "cross_entropy_ignore_sum", [](Rng& r) { return ignored(r, -100, {2}); },
      RUN(cross_entropy(x[0], x[1], -100, Reduction::Sum)));
  row("cross_entropy_3d", MAKE(normal(r, {2, 4, 3}), ints(r, {2, 3}, 0, 4)), RUN(cross_entropy(x[0], x[1])));
  row("cross_entropy_large_logits", MAKE(normal(r, {4, 5}, kFloat32, 100.0), ints(r, {4}, 0, 5)),
      RUN(cross_entropy(x[0], x[1])));
  row("cross_entropy_f64", MAKE(normal(r, {5, 4}, kFloat64), ints(r, {5}, 0, 4)),
      RUN(cross_entropy(x[0], x[1])));
  row("dropout_eval", n35, RUN(dropout(x[0], 0.5, false)));
  row("dropout_p0", n35, RUN(dropout(x[0], 0.0)));

  // --- parity only: Philox draws (identical on every backend by design)
  // -------------------------------------
  parity("rand_philox", none, RUN(rand({1000}, PhiloxState{42, 0}, {kFloat32, dev})));
  parity("randn_philox_f64", none, RUN(randn({999}, PhiloxState{42, 5}, {kFloat64, dev})));
  parity("rand_default_generator", none, RUN(rand({257}, {kFloat32, dev})));
  parity("randint_default_generator", none, RUN(randint(-5, 17, {300}, {kInt64, dev})));
  parity("dropout_philox", MAKE(normal(r, {64, 33})), RUN(dropout(x[0], 0.3, PhiloxState{7, 3})));
  parity("dropout_default_generator", MAKE(normal(r, {64, 33})), RUN(dropout(x[0], 0.5)));

  // --- parity only: shapes that reach the vectorised, tiled and multi-threaded paths
  // --------------------------
  parity("add_big_broadcast", MAKE(normal(r, {129, 1031}), normal(r, {1031})), RUN(add(x[0], x[1])));
  parity("mul_big_transposed", MAKE(normal(r, {129, 1031}), normal(r, {1031, 129})),
         RUN(mul(x[0], x[1].t())));
  parity("gelu_big", big, RUN(gelu(x[0])));
  parity("gelu_tanh_big", big, RUN(gelu(x[0], "tanh")));
  parity("exp_big_transposed", MAKE(normal(r, {1031, 129})), RUN(exp(x[0].t())));
  parity("sigmoid_big", big, RUN(sigmoid(x[0])));
  parity("where_big", MAKE(bools(r, {129, 1031}), normal(r, {129, 1031}), normal(r, {1031})),
         RUN(where(x[0], x[1], x[2])));
  parity("gt_big", MAKE(normal(r, {129, 1031}), normal(r, {129, 1})), RUN(gt(x[0], x[1])));
  parity("sum_big_rows", big, RUN(sum(x[0], {1})), sum_tol);
  parity("sum_big_cols", big, RUN(sum(x[0], {0})), sum_tol);
  parity("sum_big_all", big, RUN(sum(x[0])), {1e-4, 1e-2});
  parity("mean_big_middle", MAKE(normal(r, {16, 513, 17})), RUN(mean(x[0], {1})), sum_tol);
  parity("amax_big", big, RUN(amax(x[0], {1})));
  parity("var_big", big, RUN(var(x[0], {1})), sum_tol);
  parity("logsumexp_big", big, RUN(logsumexp(x[0], {1})), sum_tol);
  parity("max_big", big, RUN(max(x[0], 1)));
  parity("argmin_big_cols", big, RUN(argmin(x[0], 0)));
  parity("any_big", MAKE(bools(r, {129, 1031}, 0.001)), RUN(any(x[0], {1})));
  parity("cumsum_big", MAKE(normal(r, {16, 4000})), RUN(cumsum(x[0], 1)), {1e-4, 1e-3});
  parity("matmul_big", MAKE(normal(r, {128, 256}), normal(r, {256, 96})), RUN(matmul(x[0], x[1])),
         {1e-4, 1e-4});
  parity("matmul_big_batched_transposed", MAKE(normal(r, {4, 64, 128}), normal(r, {32, 128})),
         RUN(matmul(x[0], x[1].t())), {1e-4, 1e-4});
  parity("linear_big", MAKE(normal(r, {64, 300}), normal(r, {200, 300}), normal(r, {200})),
         RUN(linear(x[0], x[1], x[2])), {1e-4, 1e-4});
  parity("softmax_big", MAKE(normal(r, {64, 1000})), RUN(softmax(x[0], -1)));
  parity("log_softmax_big", MAKE(normal(r, {64, 1000})), RUN(log_softmax(x[0], -1)), {1e-5, 1e-5});
  parity("softmax_masked_big", MAKE(normal(r, {64, 1000}), row_masked(r, {64, 1000}, 3)),
         RUN(softmax(x[0], -1, x[1])));
  parity("softmax_big_dim0", MAKE(normal(r, {300, 70})), RUN(softmax(x[0], 0)));
  parity("layer_norm_big", MAKE(normal(r, {64, 768}), normal(r, {768}), normal(r, {768})),
         RUN(layer_norm(x[0], {768}, x[1], x[2])), {1e-4, 1e-5});
  parity("cross_entropy_big", ce_big,
         RUN(V{cross_entropy(x[0], x[1]), cross_entropy(x[0], x[1], -100, Reduction::None)}), {1e-5, 1e-5});
  parity("sort_big_stable", MAKE(ints(r, {16, 1000}, 0, 50, kFloat32)), RUN(sort(x[0], -1)));
  parity("sort_big_desc_dim0", MAKE(ints(r, {1000, 3}, 0, 50, kFloat32)), RUN(sort(x[0], 0, true)));
  parity("topk_big", MAKE(distinct(r, {16, 1000})), RUN(topk(x[0], 10, -1)));
  parity("gather_big", MAKE(normal(r, {64, 1000}), ints(r, {64, 300}, 0, 1000)), RUN(gather(x[0], 1, x[1])));
  parity("scatter_add_big", MAKE(zeros({100, 64}), ints(r, {5000, 64}, 0, 100), normal(r, {5000, 64})),
         RUN(scatter_add(x[0], 0, x[1], x[2])), sum_tol);
  parity("index_add_big", MAKE(zeros({100, 64}), ints(r, {5000}, 0, 100), normal(r, {5000, 64})),
         RUN(index_add(x[0], 0, x[1], x[2])), sum_tol);
  parity("index_add_big_dim1", MAKE(zeros({3, 50, 7}), ints(r, {400}, 0, 50), normal(r, {3, 400, 7})),
         RUN(index_add(x[0], 1, x[1], x[2])), sum_tol);
  parity("sort_big_1d_ties", MAKE(ints(r, {100000}, 0, 1000, kFloat32)), RUN(sort(x[0])));
  parity("sort_bool_desc", MAKE(bools(r, {7, 300})), RUN(sort(x[0], -1, true)));
  parity("embedding_big", MAKE(ints(r, {8, 64}, 0, 1000), normal(r, {1000, 64})), RUN(embedding(x[0], x[1])));
  parity("tril_big", MAKE(normal(r, {3, 200, 200})), RUN(tril(x[0], 1)));
  // --- parity only: forward and backward together (the gradient of sum(out * probe))
  // -----------------------------
  const Tolerance grad_tol{1e-4, 1e-4};
  parity("softmax_grad", MAKE(normal(r, {64, 1000}), normal(r, {64, 1000})),
         RUN(with_grads(x, 1, [](const V& l) { return softmax(l[0], -1); })), grad_tol);
  parity("softmax_grad_dim0", MAKE(normal(r, {300, 70}), normal(r, {300, 70})),
         RUN(with_grads(x, 1, [](const V& l) { return softmax(l[0], 0); })), grad_tol);
  parity("softmax_masked_long_rows",
         MAKE(normal(r, {6, 3000}), row_masked(r, {6, 3000}, 2), normal(r, {6, 3000})),
         RUN(with_grads(x, 1, [&x](const V& l) { return softmax(l[0], -1, x[1]); })), grad_tol);
  parity("softmax_mask_broadcast_leading_dims",
         MAKE(normal(r, {2, 3, 5, 7}), bools(r, {2, 1, 5, 7}, 0.3), normal(r, {2, 3, 5, 7})),
         RUN(with_grads(x, 1, [&x](const V& l) { return softmax(l[0], -1, x[1]); })), grad_tol);
  parity("log_softmax_mask_dim1", MAKE(normal(r, {4, 9, 6}), bools(r, {1, 9, 6}, 0.3), normal(r, {4, 9, 6})),
         RUN(with_grads(x, 1, [&x](const V& l) { return log_softmax(l[0], 1, x[1]); })), grad_tol);
  parity("log_softmax_masked_grad",
         MAKE(normal(r, {64, 1000}), row_masked(r, {64, 1000}, 3), normal(r, {64, 1000})),
         RUN(with_grads(x, 1, [&x](const V& l) { return log_softmax(l[0], -1, x[1]); })), grad_tol);
  parity("log_softmax_grad_long_rows", MAKE(normal(r, {6, 3000}), normal(r, {6, 3000})),
         RUN(with_grads(x, 1, [](const V& l) { return log_softmax(l[0], -1); })), grad_tol);
  parity("layer_norm_grad",
         MAKE(normal(r, {64, 768}), normal(r, {768}), normal(r, {768}), normal(r, {64, 768})),
         RUN(with_grads(x, 3, [](const V& l) { return layer_norm(l[0], {768}, l[1], l[2]); })), grad_tol);
  parity("layer_norm_grad_many_rows",
         MAKE(normal(r, {5000, 48}, kFloat32, 1.0, 3.0), normal(r, {48}), normal(r, {48}),
              normal(r, {5000, 48})),
         RUN(with_grads(x, 3, [](const V& l) { return layer_norm(l[0], {48}, l[1], l[2]); })), {1e-4, 1e-3});
  parity("layer_norm_grad_long_rows_no_affine", MAKE(normal(r, {33, 1500}), normal(r, {33, 1500})),
         RUN(with_grads(x, 1, [](const V& l) { return layer_norm(l[0], {1500}); })), grad_tol);
  parity("layer_norm_grad_f64",
         MAKE(normal(r, {20, 30}, kFloat64), normal(r, {30}, kFloat64), normal(r, {30}, kFloat64),
              normal(r, {20, 30}, kFloat64)),
         RUN(with_grads(x, 3, [](const V& l) { return layer_norm(l[0], {30}, l[1], l[2]); })));
  parity("gelu_grad", MAKE(normal(r, {129, 1031}), normal(r, {129, 1031})),
         RUN(with_grads(x, 1, [](const V& l) { return gelu(l[0]); })), grad_tol);
  parity("gelu_tanh_grad", MAKE(normal(r, {129, 1031}), normal(r, {129, 1031})),
         RUN(with_grads(x, 1, [](const V& l) { return gelu(l[0], "tanh"); })), grad_tol);
  parity("relu_grad", MAKE(normal(r, {129, 1031}), normal(r, {129, 1031})),
         RUN(with_grads(x, 1, [](const V& l) { return relu(l[0]); })));
  parity("cross_entropy_grad", MAKE(normal(r, {256, 1000}), ints(r, {256}, 0, 1000), normal(r, {})),
         RUN(with_grads(x, 1, [&x](const V& l) { return cross_entropy(l[0], x[1]); })), grad_tol);
  parity("embedding_grad_repeated",
         MAKE(normal(r, {100, 64}), ints(r, {8, 64}, 0, 100), normal(r, {8, 64, 64})),
         RUN(with_grads(x, 1, [&x](const V& l) { return embedding(x[1], l[0]); })), sum_tol);
  parity("gather_grad", MAKE(normal(r, {64, 1000}), ints(r, {64, 300}, 0, 1000), normal(r, {64, 300})),
         RUN(with_grads(x, 1, [&x](const V& l) { return gather(l[0], 1, x[1]); })), sum_tol);
  parity("sort_grad", MAKE(distinct(r, {16, 1000}), normal(r, {16, 1000})),
         RUN(with_grads(x, 1, [](const V& l) { return sort(l[0], -1, true).values; })));
  parity("topk_grad_dim0", MAKE(distinct(r, {500, 12}), normal(r, {7, 12})),
         RUN(with_grads(x, 1, [](const V& l) { return topk(l[0], 7, 0, false).values; })));
  parity("max_grad_long_rows", MAKE(distinct(r, {9, 5000}), normal(r, {9})),
         RUN(with_grads(x, 1, [](const V& l) { return max(l[0], 1).values; })));
  parity("argmax_nan_and_ties", MAKE(floats({1, NAN, 3, NAN, 3, 3, -1, 3}, {2, 4})),
         RUN(V{argmax(x[0], 1), argmin(x[0], 0)}));
  parity("cumsum_grad", MAKE(normal(r, {16, 4000}), normal(r, {16, 4000})),
         RUN(with_grads(x, 1, [](const V& l) { return cumsum(l[0], 1); })), {1e-4, 1e-3});
  parity("matmul_grad", MAKE(normal(r, {64, 128}), normal(r, {128, 96}), normal(r, {64, 96})),
         RUN(with_grads(x, 2, [](const V& l) { return matmul(l[0], l[1]); })), grad_tol);
  parity("attention_grad_causal_masked",
         MAKE(normal(r, {2, 4, 100, 32}), normal(r, {2, 4, 100, 32}), normal(r, {2, 4, 100, 32}),
              bools(r, {100, 100}, 0.2), normal(r, {2, 4, 100, 32})),
         RUN(with_grads(
             x, 3, [&x](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2], x[3], true); })),
         grad_tol);
  parity("attention_grad_dropout",
         MAKE(normal(r, {2, 3, 70, 16}), normal(r, {2, 3, 90, 16}), normal(r, {2, 3, 90, 24}),
              normal(r, {2, 3, 70, 24})),
         RUN(with_grads(x, 3,
                        [](const V& l) {
                          return scaled_dot_product_attention(l[0], l[1], l[2], Tensor(), false, 0, 0.2);
                        })),
         grad_tol);
  // The CUDA kernel's edges: strided [B, L, H, D] views with a broadcast per-batch mask, float64 heads wide
  // enough for a smaller tile, a head too wide for any tile (the composed fallback), rows with no allowed
  // key, a single query row against many keys, and causal attention with more keys than queries.
  parity("attention_grad_strided_views",
         MAKE(normal(r, {2, 75, 3, 40}), normal(r, {2, 61, 3, 40}), normal(r, {2, 61, 3, 24}),
              bools(r, {2, 1, 75, 61}, 0.3), normal(r, {2, 3, 75, 24})),
         RUN(with_grads(x, 3,
                        [&x](const V& l) {
                          return scaled_dot_product_attention(l[0].permute({0, 2, 1, 3}),
                                                              l[1].permute({0, 2, 1, 3}),
                                                              l[2].permute({0, 2, 1, 3}), x[3]);
                        })),
         grad_tol);
  parity("attention_grad_f64_wide_head",
         MAKE(normal(r, {3, 50, 96}, kFloat64), normal(r, {3, 45, 96}, kFloat64),
              normal(r, {3, 45, 80}, kFloat64), normal(r, {3, 50, 80}, kFloat64)),
         RUN(with_grads(x, 3, [](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2]); })));
  // Too wide for 48 KiB of shared memory: the kernels opt into the device's maximum (forward and backward).
  parity("attention_grad_wide_head_opt_in",
         MAKE(normal(r, {2, 40, 256}, kFloat32, 0.2), normal(r, {2, 50, 256}, kFloat32, 0.2),
              normal(r, {2, 50, 256}), normal(r, {2, 40, 256})),
         RUN(with_grads(x, 3, [](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2]); })),
         grad_tol);
  parity("attention_grad_head_beyond_tiles",
         MAKE(normal(r, {2, 20, 2000}, kFloat32, 0.05), normal(r, {2, 30, 2000}, kFloat32, 0.05),
              normal(r, {2, 30, 40}), normal(r, {2, 20, 40})),
         RUN(with_grads(x, 3, [](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2]); })),
         grad_tol);
  parity("attention_grad_rows_without_keys",
         MAKE(normal(r, {2, 40, 16}), normal(r, {2, 70, 16}), normal(r, {2, 70, 16}),
              row_masked(r, {40, 70}, 5), normal(r, {2, 40, 16})),
         RUN(with_grads(x, 3,
                        [&x](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2], x[3]); })),
         grad_tol);
  parity(
      "attention_grad_one_query_many_keys",
      MAKE(normal(r, {4, 1, 64}), normal(r, {4, 1000, 64}), normal(r, {4, 1000, 64}), normal(r, {4, 1, 64})),
      RUN(with_grads(x, 3, [](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2]); })),
      grad_tol);
  parity(
      "attention_grad_causal_more_keys",
      MAKE(normal(r, {2, 33, 128}), normal(r, {2, 97, 128}), normal(r, {2, 97, 128}),
           normal(r, {2, 33, 128})),
      RUN(with_grads(
          x, 3, [](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2], Tensor(), true); })),
      grad_tol);
  // The register-tiled kernels' edges (64-row tiles, 16 x 16 threads with strided columns): several query and
  // key tiles with tails, head widths that are no multiple of 16 (the clamped columns), each width class
  // (<= 32, <= 64, <= 128), causal attention with fewer keys than queries, masks, dropout, and float64.
  parity("attention_grad_register_tile_tails",
         MAKE(normal(r, {2, 2, 150, 20}), normal(r, {2, 2, 130, 20}), normal(r, {2, 2, 130, 72}),
              bools(r, {150, 130}, 0.2), normal(r, {2, 2, 150, 72})),
         RUN(with_grads(x, 3,
                        [&x](const V& l) {
                          return scaled_dot_product_attention(l[0], l[1], l[2], x[3], true, 0, 0.1);
                        })),
         grad_tol);
  parity("attention_grad_register_tiles_f64",
         MAKE(normal(r, {2, 140, 64}, kFloat64), normal(r, {2, 200, 64}, kFloat64),
              normal(r, {2, 200, 45}, kFloat64), row_masked(r, {140, 200}, 70),
              normal(r, {2, 140, 45}, kFloat64)),
         RUN(with_grads(x, 3,
                        [&x](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2], x[3]); })));
  parity(
      "attention_grad_causal_fewer_keys_head_128",
      MAKE(normal(r, {1, 3, 190, 128}, kFloat32, 0.3), normal(r, {1, 3, 70, 128}, kFloat32, 0.3),
           normal(r, {1, 3, 70, 128}), normal(r, {1, 3, 190, 128})),
      RUN(with_grads(
          x, 3, [](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2], Tensor(), true); })),
      grad_tol);
  // The tensor-core kernels' zero padding: widths that are no multiple of the mma's 8 (q and k 100 wide,
  // padded to 104 in the widest class; v 36, padded to 40), with a mask and query and key tiles with tails.
  parity("attention_grad_tensor_core_padding",
         MAKE(normal(r, {2, 2, 90, 100}, kFloat32, 0.3), normal(r, {2, 2, 77, 100}, kFloat32, 0.3),
              normal(r, {2, 2, 77, 36}), bools(r, {90, 77}, 0.2), normal(r, {2, 2, 90, 36})),
         RUN(with_grads(x, 3,
                        [&x](const V& l) { return scaled_dot_product_attention(l[0], l[1], l[2], x[3]); })),
         grad_tol);
  parity("lsh_attention_grad",
         MAKE(normal(r, {2, 2, 128, 16}), normal(r, {2, 2, 128, 16}), bools(r, {2, 128}, 0.1),
              normal(r, {2, 2, 128, 16})),
         RUN(with_grads(x, 2,
                        [&x](const V& l) {
                          LshAttentionOptions o;
                          o.chunk_len = 32;
                          o.n_hashes = 2;
                          o.causal = true;
                          o.seed = 11;
                          o.has_seed = true;
                          return lsh_attention(l[0], l[1], o, x[2]).out;
                        })),
         grad_tol);
  // LSH kernel edges: chunks that are not a multiple of the 32-key tile, look-ahead, three rounds with the
  // duplicate-attention bias and the rounds' logsumexp gradient; and a window wider than the chunk count (the
  // same chunk twice in one window) in float64.
  parity("lsh_attention_grad_lookahead_dedup",
         MAKE(normal(r, {2, 2, 96, 32}), normal(r, {2, 2, 96, 16}), bools(r, {2, 96}, 0.1),
              normal(r, {2, 2, 96, 16})),
         RUN(with_grads(x, 2,
                        [&x](const V& l) {
                          LshAttentionOptions o;
                          o.chunk_len = 24;
                          o.n_chunks_after = 1;
                          o.n_hashes = 3;
                          o.allow_duplicate_attention = false;
                          o.seed = 12;
                          o.has_seed = true;
                          return lsh_attention(l[0], l[1], o, x[2]).out;
                        })),
         grad_tol);
  // The register-tiled kernels' edges: chunks of 100 rows (a 64-row tile and a tail of 36), windows of 200
  // keys (three full 64-key tiles and a tail), four chunks over two rounds, head widths that are no multiple
  // of 16 and differ (40 and 72), causal and padding (the bias: lookahead_dedup, whose tiles are register
  // tiles too).
  parity("lsh_attention_grad_register_tile_tails",
         MAKE(normal(r, {1, 2, 200, 40}), normal(r, {1, 2, 200, 72}), bools(r, {1, 200}, 0.1),
              normal(r, {1, 2, 200, 72})),
         RUN(with_grads(x, 2,
                        [&x](const V& l) {
                          LshAttentionOptions o;
                          o.chunk_len = 100;
                          o.n_hashes = 2;
                          o.causal = true;
                          o.seed = 15;
                          o.has_seed = true;
                          return lsh_attention(l[0], l[1], o, x[2]).out;
                        })),
         grad_tol);
  // The tensor-core kernels' zero padding in LSH attention: qk 36 wide and v 50 (padded to 40 and 56), chunks
  // of 50 rows (less than one 64-row tile), causal, padding.
  parity("lsh_attention_grad_tensor_core_padding",
         MAKE(normal(r, {1, 2, 150, 36}), normal(r, {1, 2, 150, 50}), bools(r, {1, 150}, 0.1),
              normal(r, {1, 2, 150, 50})),
         RUN(with_grads(x, 2,
                        [&x](const V& l) {
                          LshAttentionOptions o;
                          o.chunk_len = 50;
                          o.n_buckets = {4};
                          o.n_hashes = 2;
                          o.causal = true;
                          o.seed = 16;
                          o.has_seed = true;
                          return lsh_attention(l[0], l[1], o, x[2]).out;
                        })),
         grad_tol);
  // A float64 head of 128: its tiles exceed 48 KiB, so the kernels opt into more shared memory.
  parity("lsh_attention_grad_f64_wide_head_opt_in",
         MAKE(normal(r, {1, 2, 64, 128}, kFloat64), normal(r, {1, 2, 64, 128}, kFloat64),
              normal(r, {1, 2, 64, 128}, kFloat64)),
         RUN(with_grads(x, 2, [](const V& l) {
           LshAttentionOptions o;
           o.chunk_len = 32;
           o.n_buckets = {2};
           o.seed = 14;
           o.has_seed = true;
           return lsh_attention(l[0], l[1], o).out;
         })));
  parity("lsh_attention_grad_window_wraps_f64",
         MAKE(normal(r, {1, 3, 32, 8}, kFloat64), normal(r, {1, 3, 32, 8}, kFloat64),
              normal(r, {1, 3, 32, 8}, kFloat64)),
         RUN(with_grads(x, 2, [](const V& l) {
           LshAttentionOptions o;
           o.chunk_len = 16;
           o.n_chunks_after = 1;
           o.n_buckets = {2};
           o.seed = 13;
           o.has_seed = true;
           return lsh_attention(l[0], l[1], o).out;
         })));
  parity("multi_dim_attention_grad",
         MAKE(normal(r, {3, 40, 16}), normal(r, {3, 40, 16}), normal(r, {3, 40, 16}), normal(r, {16}),
              bools(r, {3, 40}, 0.2), normal(r, {3, 40, 16})),
         RUN(with_grads(x, 4,
                        [&x](const V& l) {
                          return multi_dim_attention(l[0], l[1], l[2], l[3], AttentionDirection::Forward,
                                                     x[4]);
                        })),
         grad_tol);
  // Multi-dimensional attention's kernel edges: every direction with and without masked queries in float64,
  // more rows than one 32-row tile and features not a multiple of the 32-feature tile; q and k as column
  // slices of one packed projection (strided rows), as Bi-BloSA reads them; Bi-BloSA's block shape (many
  // short sequences, d = 300); one long sequence.
  parity("multi_dim_attention_grad_every_direction_f64",
         MAKE(normal(r, {2, 70, 40}, kFloat64), normal(r, {2, 70, 40}, kFloat64),
              normal(r, {2, 70, 40}, kFloat64), normal(r, {40}, kFloat64), bools(r, {2, 70}, 0.2),
              normal(r, {2, 70, 40}, kFloat64)),
         RUN(with_grads(x, 4, [&x](const V& l) {
           using D = AttentionDirection;
           Tensor out = multi_dim_attention(l[0], l[1], l[2], l[3], D::Forward, x[4]);
           out = add(out, multi_dim_attention(l[0], l[1], l[2], l[3], D::Backward, x[4], 2.5, false));
           out = add(out, multi_dim_attention(l[0], l[1], l[2], l[3], D::NoDiagonal, x[4], 0.5));
           return add(out, multi_dim_attention(l[0], l[1], l[2], l[3], D::All, x[4], 40.0, false));
         })));
  parity("multi_dim_attention_grad_packed_columns",
         MAKE(normal(r, {2, 37, 96}), normal(r, {2, 37, 48}), normal(r, {48}), bools(r, {2, 37}, 0.2),
              normal(r, {2, 37, 48})),
         RUN(with_grads(x, 3,
                        [&x](const V& l) {
                          return multi_dim_attention(l[0].narrow(-1, 48, 48), l[0].narrow(-1, 0, 48), l[1],
                                                     l[2], AttentionDirection::NoDiagonal, x[3], 5.0, false);
                        })),
         grad_tol);
  parity("multi_dim_attention_grad_biblosa_blocks",
         MAKE(normal(r, {64, 20, 300}), normal(r, {64, 20, 300}), normal(r, {64, 20, 300}), normal(r, {300}),
              bools(r, {64, 20}, 0.1), normal(r, {64, 20, 300})),
         RUN(with_grads(x, 4,
                        [&x](const V& l) {
                          return multi_dim_attention(l[0], l[1], l[2], l[3], AttentionDirection::Backward,
                                                     x[4]);
                        })),
         grad_tol);
  parity("multi_dim_attention_grad_long_sequence",
         MAKE(normal(r, {1, 300, 8}), normal(r, {1, 300, 8}), normal(r, {1, 300, 8}), normal(r, {8}),
              normal(r, {1, 300, 8})),
         RUN(with_grads(x, 4,
                        [](const V& l) {
                          return multi_dim_attention(l[0], l[1], l[2], l[3], AttentionDirection::Forward);
                        })),
         grad_tol);
  parity("adam_steps", MAKE(normal(r, {1000}), normal(r, {1000}), normal(r, {1000})), adam_steps);
  parity("act_frozen_projection",
         MAKE(normal(r, {3, 6}), normal(r, {4, 6}), normal(r, {4, 5}), normal(r, {5}), normal(r, {6}),
              normal(r, {6}), normal(r, {7, 6})),
         act_frozen_projection_case, {1e-5, 1e-5});
  // Frozen rows over several 64-row chunks of the column sums, wider rows than a warp.
  parity("act_frozen_projection_chunks",
         MAKE(normal(r, {50, 96}), normal(r, {200, 96}), normal(r, {200, 48}), normal(r, {48}),
              normal(r, {96}), normal(r, {96}), normal(r, {250, 96})),
         act_frozen_projection_case, {1e-4, 1e-4});
  parity("contiguous_big_permuted", MAKE(normal(r, {32, 64, 48})), RUN(x[0].permute({2, 0, 1}).contiguous()));
  return t;
}

#undef MAKE
#undef RUN

}  // namespace

const std::vector<OpCase>& op_table() {
  static const std::vector<OpCase> table = build();
  return table;
}

const OpCase* find_op(const std::string& name) {
  for (const OpCase& op : op_table()) {
    if (name == op.name) return &op;
  }
  return nullptr;
}

std::vector<Tensor> make_inputs(const OpCase& op, Device device) {
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the name
  for (const char* c = op.name; *c; ++c) seed = (seed ^ static_cast<unsigned char>(*c)) * 1099511628211ull;
  Rng rng(seed);
  std::vector<Tensor> inputs = op.make(rng);
  for (Tensor& t : inputs) t = t.to(device);
  return inputs;
}

bool is_missing_kernel(const Error& e) {
  return std::string(e.what()).find("has no kernel") != std::string::npos;
}

}  // namespace loom::test
