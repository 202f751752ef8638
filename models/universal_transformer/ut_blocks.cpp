// The Universal Transformer's layer and transition functions (see ut_blocks.h).
#include "loom/models/universal_transformer/ut_blocks.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "loom/autograd/grad_mode.h"
#include "loom/nn/init.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/linalg.h"
#include "loom/ops/nn_ops.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom::models {
namespace {

std::string describe_or_undefined(const Tensor& t) { return t.defined() ? describe(t) : "undefined"; }

// x [B, L, c] with the rows at padding (bool [B, L], true = padding) zeroed; x itself without a mask.
Tensor zero_padding(const Tensor& x, const Tensor& padding) {
  if (!padding.defined()) return x;
  return where(padding.unsqueeze(2), zeros({1}, x.options()), x);
}

// Attention for some query rows. q [n, d] holds the queries of the flattened positions `rows` (b * L + l,
// ascending); kv holds attn's projection of the [B, S, d] keys and values. Each batch element's rows go into
// slots of a [B, n_max] grid so one attention call serves the whole batch; unused slots repeat query 0 and
// are dropped (their zero output gradient adds exact zeros). causal: the row at position l sees keys j <= l.
Tensor attend_rows(nn::MultiheadAttention& attn, const Tensor& q, const std::vector<int64_t>& rows, int64_t L,
                   const nn::MultiheadAttention::ProjectedKeyValue& kv, const Tensor& key_padding_mask,
                   bool causal) {
  const int64_t B = kv.key.size(0), S = kv.key.size(2), d = q.size(1), n = static_cast<int64_t>(rows.size());
  std::vector<int64_t> count(static_cast<size_t>(B), 0);
  for (int64_t r : rows) ++count[static_cast<size_t>(r / L)];
  const int64_t n_max = std::max<int64_t>(*std::max_element(count.begin(), count.end()), 1);
  std::vector<int64_t> slot_src(static_cast<size_t>(B * n_max), 0), row_slot(static_cast<size_t>(n));
  std::vector<int64_t> filled(static_cast<size_t>(B), 0);
  std::vector<double> mask;
  if (causal) mask.assign(static_cast<size_t>(B * n_max * S), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t b = rows[static_cast<size_t>(j)] / L, l = rows[static_cast<size_t>(j)] % L;
    const int64_t slot = b * n_max + filled[static_cast<size_t>(b)]++;
    slot_src[static_cast<size_t>(slot)] = j;
    row_slot[static_cast<size_t>(j)] = slot;
    if (causal)
      for (int64_t k = l + 1; k < S; ++k) mask[static_cast<size_t>(slot * S + k)] = 1.0;
  }
  const Device device = q.device();
  Tensor qp = index_select(q, 0, tensor(slot_src, {B * n_max}).to(device)).view({B, n_max, d});
  Tensor m = causal ? tensor(mask, {B, 1, n_max, S}).to(DType::Bool).to(device) : Tensor();
  Tensor out = attn.forward(qp, kv, m, key_padding_mask);
  return index_select(out.reshape({B * n_max, d}), 0, tensor(row_slot, {n}).to(device));
}

}  // namespace

Tensor depthwise_conv1d(const Tensor& x, const Tensor& w, bool causal) {
  LOOM_CHECK(x.defined() && w.defined() && x.dim() == 3 && w.dim() == 2 && w.size(1) == x.size(2),
             "depthwise_conv1d", ": need x [B, L, c] and w [k, c], got x ", describe_or_undefined(x),
             " and w ", describe_or_undefined(w));
  const int64_t B = x.size(0), L = x.size(1), c = x.size(2), k = w.size(0);
  const int64_t left = causal ? k - 1 : (k - 1) / 2, right = k - 1 - left;
  std::vector<Tensor> parts;
  if (left > 0) parts.push_back(zeros({B, left, c}, x.options()));
  parts.push_back(x);
  if (right > 0) parts.push_back(zeros({B, right, c}, x.options()));
  Tensor xp = parts.size() == 1 ? x : cat(parts, 1);
  Tensor out;
  for (int64_t j = 0; j < k; ++j) {
    Tensor term = xp.narrow(1, j, L) * w.select(0, j).view({1, 1, c});
    out = out.defined() ? out + term : term;
  }
  return out;
}

Transition::Transition(const TransitionOptions& options, TensorOptions tensor_options)
    : Module("Transition"), options_(options) {
  const int64_t d = options.d_model, f = options.d_ff;
  LOOM_CHECK(d > 0 && f > 0, "Transition: d_model and d_ff must be positive, got ", d, " and ", f);
  LOOM_CHECK(options.type == "ffn" || options.type == "sepconv", "Transition: type '", options.type,
             "' is not 'ffn' or 'sepconv'");
  if (options.type == "ffn") {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(d, f, true, tensor_options));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(f, d, true, tensor_options));
  } else {
    // Depthwise kernels: Glorot uniform over the kernel's taps (tf's depthwise fan in = fan out = k).
    NoGradGuard no_grad;
    Tensor w1 = empty({3, d}, tensor_options), w2 = empty({5, f}, tensor_options);
    nn::init::uniform_(w1, -std::sqrt(3.0 / 3.0), std::sqrt(3.0 / 3.0));
    nn::init::uniform_(w2, -std::sqrt(3.0 / 5.0), std::sqrt(3.0 / 5.0));
    depthwise1 = register_parameter("depthwise1", w1);
    pointwise1 = register_module("pointwise1", std::make_shared<nn::Linear>(d, f, true, tensor_options));
    depthwise2 = register_parameter("depthwise2", w2);
    pointwise2 = register_module("pointwise2", std::make_shared<nn::Linear>(f, d, true, tensor_options));
  }
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(options.dropout));
}

Tensor Transition::forward_rows(const Tensor& x_rows) {
  LOOM_CHECK(positionwise(), "Transition::forward_rows: the '", options_.type,
             "' transition mixes positions; call forward on the whole sequence");
  LOOM_CHECK(x_rows.defined() && x_rows.dim() == 2 && x_rows.size(1) == options_.d_model,
             "Transition::forward_rows: rows must be [n, ", options_.d_model, "], got ",
             describe_or_undefined(x_rows));
  return fc2->forward(dropout->forward(relu(fc1->forward(x_rows))));
}

Tensor Transition::forward(const Tensor& x, const Tensor& padding) {
  LOOM_CHECK(x.defined() && x.dim() == 3 && x.size(2) == options_.d_model, "Transition(", options_.type,
             "): input must be [B, L, ", options_.d_model, "], got ", describe_or_undefined(x));
  LOOM_CHECK(!padding.defined() || (padding.dtype() == DType::Bool && padding.dim() == 2 &&
                                    padding.size(0) == x.size(0) && padding.size(1) == x.size(1)),
             "Transition(", options_.type, "): padding must be bool [", x.size(0), ", ", x.size(1), "], got ",
             describe_or_undefined(padding));
  if (positionwise()) return fc2->forward(dropout->forward(relu(fc1->forward(x))));
  Tensor h =
      relu(pointwise1->forward(depthwise_conv1d(zero_padding(x, padding), depthwise1, options_.causal)));
  h = dropout->forward(h);
  return pointwise2->forward(depthwise_conv1d(zero_padding(h, padding), depthwise2, options_.causal));
}

UTBlock::UTBlock(const UTBlockOptions& options, TensorOptions tensor_options)
    : Module("UTBlock"), options_(options) {
  const int64_t d = options.d_model;
  LOOM_CHECK(d > 0 && options.heads > 0 && d % options.heads == 0, "UTBlock: d_model (", d,
             ") must be a positive multiple of heads (", options.heads, ")");
  LOOM_CHECK(options.dropout >= 0 && options.dropout < 1, "UTBlock: dropout must be in [0, 1), got ",
             options.dropout);
  ln_self = register_module("ln_self", std::make_shared<nn::LayerNorm>(d, options.eps, true, tensor_options));
  self_attn = register_module("self_attn", std::make_shared<nn::MultiheadAttention>(
                                               d, options.heads, options.dropout, true, tensor_options));
  if (options.decoder) {
    ln_cross =
        register_module("ln_cross", std::make_shared<nn::LayerNorm>(d, options.eps, true, tensor_options));
    cross_attn = register_module("cross_attn", std::make_shared<nn::MultiheadAttention>(
                                                   d, options.heads, options.dropout, true, tensor_options));
  }
  ln_transition =
      register_module("ln_transition", std::make_shared<nn::LayerNorm>(d, options.eps, true, tensor_options));
  TransitionOptions t;
  t.d_model = d;
  t.d_ff = options.d_ff;
  t.type = options.transition;
  t.causal = options.decoder;
  t.dropout = options.dropout;
  transition = register_module("transition", std::make_shared<Transition>(t, tensor_options));
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(options.dropout));
}

void UTBlock::check_input(const Tensor& x, const UTBlockContext& c) const {
  const char* op = options_.decoder ? "UTBlock(decoder)" : "UTBlock(encoder)";
  const int64_t d = options_.d_model;
  LOOM_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d, op, ": input must be [B, L, ", d, "], got ",
             describe_or_undefined(x));
  const int64_t B = x.size(0), L = x.size(1);
  LOOM_CHECK(!c.padding.defined() || (c.padding.dtype() == DType::Bool && c.padding.dim() == 2 &&
                                      c.padding.size(0) == B && c.padding.size(1) == L),
             op, ": padding must be bool [", B, ", ", L, "], got ", describe_or_undefined(c.padding));
  if (!options_.decoder) return;
  LOOM_CHECK(c.memory.defined() && c.memory.dim() == 3 && c.memory.size(0) == B && c.memory.size(2) == d, op,
             ": memory (the encoder output) must be [", B, ", S, ", d, "], got ",
             describe_or_undefined(c.memory));
  LOOM_CHECK(!c.memory_padding.defined() ||
                 (c.memory_padding.dtype() == DType::Bool && c.memory_padding.dim() == 2 &&
                  c.memory_padding.size(0) == B && c.memory_padding.size(1) == c.memory.size(1)),
             op, ": memory_padding must be bool [", B, ", ", c.memory.size(1), "], got ",
             describe_or_undefined(c.memory_padding));
  const Tensor& k = c.memory_key_value.key;
  LOOM_CHECK(!k.defined() || (k.dim() == 4 && k.size(0) == B && k.size(1) == options_.heads &&
                              k.size(2) == c.memory.size(1) && k.size(3) == d / options_.heads),
             op, ": memory_key_value must be cross_attn's projection of memory ", shape_str(c.memory.shape()),
             ", [", B, ", ", options_.heads, ", ", c.memory.size(1), ", ", d / options_.heads, "], got ",
             describe_or_undefined(k));
}

nn::MultiheadAttention::ProjectedKeyValue UTBlock::memory_key_value(const UTBlockContext& c) {
  return c.memory_key_value.key.defined() ? c.memory_key_value
                                          : cross_attn->project_key_value(c.memory, c.memory);
}

Tensor UTBlock::forward(const Tensor& x, const UTBlockContext& c) {
  check_input(x, c);
  const bool dec = options_.decoder;
  Tensor h = ln_self->forward(x);
  Tensor y = x + dropout->forward(self_attn->forward(h, h, h, Tensor(), dec ? Tensor() : c.padding, dec));
  if (dec) {
    Tensor hc = ln_cross->forward(y);
    y = y + dropout->forward(cross_attn->forward(hc, memory_key_value(c), Tensor(), c.memory_padding));
  }
  return y + dropout->forward(transition->forward(ln_transition->forward(y), c.padding));
}

std::vector<int64_t> UTBlock::row_indices(const Tensor& x, const Tensor& rows) const {
  const int64_t N = x.size(0) * x.size(1);
  LOOM_CHECK(rows.defined() && rows.dim() == 1 && rows.dtype() == DType::Int64, "UTBlock::forward_rows",
             ": rows must be int64 [n], got ", describe_or_undefined(rows));
  std::vector<int64_t> idx = rows.cpu().contiguous().to_vector<int64_t>();
  for (size_t j = 0; j < idx.size(); ++j)
    LOOM_CHECK(idx[j] >= 0 && idx[j] < N && (j == 0 || idx[j] > idx[j - 1]), "UTBlock::forward_rows",
               ": rows must be ascending indices into the ", N, " positions of ", shape_str(x.shape()),
               "; entry ", j, " is ", idx[j]);
  return idx;
}

Tensor UTBlock::rows_after_key_values(const Tensor& x_rows, const Tensor& h_rows,
                                      const std::vector<int64_t>& idx, int64_t L,
                                      const nn::MultiheadAttention::ProjectedKeyValue& kv,
                                      const UTBlockContext& c) {
  const bool dec = options_.decoder;
  Tensor y =
      x_rows + dropout->forward(attend_rows(*self_attn, h_rows, idx, L, kv, dec ? Tensor() : c.padding, dec));
  if (dec) {
    Tensor hc = ln_cross->forward(y);
    y = y +
        dropout->forward(attend_rows(*cross_attn, hc, idx, L, memory_key_value(c), c.memory_padding, false));
  }
  return y + dropout->forward(transition->forward_rows(ln_transition->forward(y)));
}

Tensor UTBlock::forward_rows(const Tensor& x, const Tensor& rows, const UTBlockContext& c) {
  check_input(x, c);
  const int64_t B = x.size(0), L = x.size(1), d = x.size(2);
  std::vector<int64_t> idx = row_indices(x, rows);
  const int64_t n = rows.numel();
  if (n == B * L) return forward(x, c).reshape({n, d});
  if (!transition->positionwise()) return index_select(forward(x, c).reshape({B * L, d}), 0, rows);
  Tensor h = ln_self->forward(x);
  return rows_after_key_values(index_select(x.reshape({B * L, d}), 0, rows),
                               index_select(h.reshape({B * L, d}), 0, rows), idx, L,
                               self_attn->project_key_value(h, h), c);
}

Tensor UTBlock::forward_rows(const Tensor& x, const Tensor& rows, const UTBlockContext& c,
                             const UTStepInput& input, HaltedKeyValues& halted) {
  constexpr const char* op = "UTBlock::forward_rows(halted key/values)";
  check_input(x, c);
  const int64_t B = x.size(0), L = x.size(1), d = x.size(2), N = B * L;
  LOOM_CHECK(input.v.defined() && input.v.shape() == x.shape() && input.v.dtype() == x.dtype() &&
                 input.step_signal.defined() && input.step_signal.dim() == 1 &&
                 input.step_signal.size(0) == d && input.step_signal.dtype() == x.dtype(),
             op, ": the step input must be v like x ", describe(x), " and a step signal [", d, "], got v ",
             describe_or_undefined(input.v), " and step signal ", describe_or_undefined(input.step_signal));
  std::vector<int64_t> idx = row_indices(x, rows);
  const int64_t n = static_cast<int64_t>(idx.size());
  // 0 = halted since the last call, 1 = running, 2 = halted earlier (its keys and values are in `halted`).
  std::vector<char> state(static_cast<size_t>(N), 0);
  for (int64_t r : idx) state[static_cast<size_t>(r)] = 1;
  for (int64_t r : halted.rows) {
    LOOM_CHECK(
        state[static_cast<size_t>(r)] == 0, op, ": position ", r,
        " halted at an earlier step and is asked for again; the halted keys and values need the compact ACT "
        "loop, whose halted states are frozen");
    state[static_cast<size_t>(r)] = 2;
  }
  if (n == N) return forward(x, c).reshape({n, d});
  if (!transition->positionwise()) return index_select(forward(x, c).reshape({N, d}), 0, rows);

  const Tensor W = self_attn->key_value_weight(), b = self_attn->key_value_bias();
  const Tensor &gamma = ln_self->weight, &beta = ln_self->bias;
  std::vector<int64_t> newly;
  for (int64_t r = 0; r < N; ++r)
    if (state[static_cast<size_t>(r)] == 0) newly.push_back(r);
  if (!newly.empty()) {
    Tensor v = index_select(input.v.reshape({N, d}), 0,
                            tensor(newly, {static_cast<int64_t>(newly.size())}).to(x.device()));
    Tensor centred = v - mean(v, {1}, true);
    Tensor projected = linear(centred * gamma, W);
    Tensor squared_norm = sum(centred * centred, {1});
    auto append = [](Tensor& to, const Tensor& more) { to = to.defined() ? cat({to, more}, 0) : more; };
    append(halted.centred, centred);
    append(halted.projected, projected);
    append(halted.squared_norm, squared_norm);
    halted.rows.insert(halted.rows.end(), newly.begin(), newly.end());
  }
  const int64_t h = static_cast<int64_t>(halted.rows.size());

  // Running positions: layer norm and projection as forward_rows; halted ones from the terms kept.
  Tensor x_rows = index_select(x.reshape({N, d}), 0, rows);
  Tensor h_rows = ln_self->forward(x_rows);
  ActStepSignalTerms signal;
  signal.centred = input.step_signal - mean(input.step_signal);
  signal.projected = linear((signal.centred * gamma).view({1, d}), W).view({2 * d});
  signal.shift = linear(beta.view({1, d}), W, b).view({2 * d});
  ActFrozenRows frozen{tensor(halted.rows, {h}).to(x.device()), halted.projected, halted.centred,
                       halted.squared_norm};
  Tensor kv = act_frozen_projection(linear(h_rows, W, b), rows, frozen, signal, options_.eps);
  return rows_after_key_values(x_rows, h_rows, idx, L, self_attn->split_key_value(kv.view({B, L, 2 * d})), c);
}

ActStepFn ut_act_step(std::shared_ptr<UTBlock> block, UTBlockContext context,
                      std::shared_ptr<const UTStepInput> input) {
  LOOM_CHECK(block != nullptr, "ut_act_step: null block");
  if (!input)
    return
        [block = std::move(block), context = std::move(context)](
            const Tensor& x, const Tensor& rows, int64_t) { return block->forward_rows(x, rows, context); };
  return [block = std::move(block), context = std::move(context), input = std::move(input),
          halted = std::make_shared<HaltedKeyValues>()](const Tensor& x, const Tensor& rows, int64_t step) {
    LOOM_CHECK(input->step == step, "ut_act_step: the step input is for step ", input->step,
               ", the loop is at step ", step, " (the loop's preprocessing must record each step's input)");
    return block->forward_rows(x, rows, context, *input, *halted);
  };
}

}  // namespace loom::models
