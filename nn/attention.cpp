// nn::MultiheadAttention: projections, head split, attention (the fused op, attention dropout included, or
// masked softmax and dropout when the weights or an additive mask are asked for), head merge, output
// projection.
#include "loom/nn/attention.h"

#include <cmath>

#include "loom/nn/init.h"
#include "loom/ops/attention.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/linalg.h"
#include "loom/ops/nn_ops.h"

namespace loom::nn {
namespace {

// Rows [start, start + n) of the packed projection (views: their gradients flow into the packed parameter).
Tensor rows(const Tensor& t, int64_t start, int64_t n) { return t.defined() ? t.narrow(0, start, n) : Tensor(); }

// A projection of x [B, T, k * E] (k of q, k, v at once) viewed as [B, T, k, H, D].
Tensor unpack(const Tensor& projected, int64_t k, int64_t heads, int64_t head_dim) {
  return projected.view({projected.size(0), projected.size(1), k, heads, head_dim});
}

// Part i of an unpacked projection with its heads split out: a [B, H, T, D] view.
Tensor heads(const Tensor& packed, int64_t i) { return packed.select(2, i).transpose(1, 2); }

// Folds a bool mask into `combined` (logical or), or keeps it when nothing is there yet.
void merge_bool(Tensor& combined, const Tensor& mask) {
  combined = combined.defined() ? logical_or(combined, mask) : mask;
}

}  // namespace

MultiheadAttention::MultiheadAttention(int64_t embed_dim, int64_t num_heads, double dropout, bool bias,
                                       TensorOptions options)
    : Module("MultiheadAttention"), embed_dim_(embed_dim), num_heads_(num_heads), dropout_(dropout) {
  LOOM_CHECK(embed_dim > 0 && num_heads > 0, "MultiheadAttention: embed_dim and num_heads must be positive, got ",
             embed_dim, " and ", num_heads);
  LOOM_CHECK(embed_dim % num_heads == 0, "MultiheadAttention: embed_dim ", embed_dim,
             " is not divisible by num_heads ", num_heads);
  LOOM_CHECK(dropout >= 0 && dropout <= 1, "MultiheadAttention: dropout must be in [0, 1], got ", dropout);
  in_proj_weight = register_parameter("in_proj_weight", empty({3 * embed_dim, embed_dim}, options));
  if (bias) in_proj_bias = register_parameter("in_proj_bias", empty({3 * embed_dim}, options));
  out_proj = register_module("out_proj", std::make_shared<Linear>(embed_dim, embed_dim, bias, options));
  reset_parameters();
}

void MultiheadAttention::reset_parameters() {
  // PyTorch's _reset_parameters: xavier on the packed weight (fans of the whole [3E, E] matrix), zero biases;
  // out_proj.weight keeps Linear's kaiming init.
  init::xavier_uniform_(in_proj_weight);
  if (in_proj_bias.defined()) init::zeros_(in_proj_bias);
  out_proj->reset_parameters();
  if (out_proj->bias.defined()) init::zeros_(out_proj->bias);
}

Tensor MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                   const Tensor& attn_mask, const Tensor& key_padding_mask, bool is_causal) {
  return attend(query, key, value, attn_mask, key_padding_mask, is_causal, /*need_weights=*/false).output;
}

MultiheadAttention::Output MultiheadAttention::forward_with_weights(const Tensor& query, const Tensor& key,
                                                                    const Tensor& value, const Tensor& attn_mask,
                                                                    const Tensor& key_padding_mask, bool is_causal) {
  return attend(query, key, value, attn_mask, key_padding_mask, is_causal, /*need_weights=*/true);
}

MultiheadAttention::Output MultiheadAttention::attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                                      const Tensor& attn_mask, const Tensor& key_padding_mask,
                                                      bool is_causal, bool need_weights) {
  const char* op = "MultiheadAttention";
  LOOM_CHECK(query.defined() && key.defined() && value.defined(), op, ": undefined query, key or value");
  // Unbatched inputs run as a batch of one.
  if (query.dim() == 2) {
    LOOM_CHECK(key.dim() == 2 && value.dim() == 2, op, ": unbatched query ", query.shape(),
               " needs unbatched key and value, got ", key.shape(), " and ", value.shape());
    LOOM_CHECK(!key_padding_mask.defined() || key_padding_mask.dim() == 1, op,
               ": unbatched inputs take a key_padding_mask [S], got ", key_padding_mask.shape());
    bool self = query.is_same(key) && key.is_same(value);
    Tensor q = query.unsqueeze(0);
    Tensor k = self ? q : key.unsqueeze(0);
    Tensor v = self ? q : key.is_same(value) ? k : value.unsqueeze(0);
    Output out = attend(q, k, v, attn_mask, key_padding_mask.defined() ? key_padding_mask.unsqueeze(0) : Tensor(),
                        is_causal, need_weights);
    return {out.output.squeeze(0), out.weights.defined() ? out.weights.squeeze(0) : Tensor()};
  }

  const int64_t e = embed_dim_, h = num_heads_, d = head_dim();
  LOOM_CHECK(query.dim() == 3 && query.size(2) == e, op, "(embed_dim=", e, "): query must be [B, L, ", e,
             "], got ", query.shape());
  const int64_t b = query.size(0);
  LOOM_CHECK(key.dim() == 3 && key.size(0) == b && key.size(2) == e, op, ": key must be [", b, ", S, ", e,
             "] to match query ", query.shape(), ", got ", key.shape());
  LOOM_CHECK(value.shape() == key.shape(), op, ": value ", value.shape(), " must have key's shape ", key.shape());

  // --- projections -------------------------------------------------------------------------------------
  // Self-attention keeps its one projection packed, [B, L, 3, H, D]: the fused op takes it whole.
  if (query.is_same(key) && key.is_same(value)) {
    Tensor qkv = unpack(linear(query, in_proj_weight, in_proj_bias), 3, h, d);
    return attend_projected(query, qkv, Tensor(), Tensor(), Tensor(), attn_mask, key_padding_mask, is_causal,
                            need_weights);
  }
  ProjectedKeyValue kv = project_key_value(key, value);
  return attend_projected(query, Tensor(), project_query(query), kv.key, kv.value, attn_mask,
                          key_padding_mask, is_causal, need_weights);
}

Tensor MultiheadAttention::project_query(const Tensor& query) {
  const int64_t e = embed_dim_;
  return heads(
      unpack(linear(query, rows(in_proj_weight, 0, e), rows(in_proj_bias, 0, e)), 1, num_heads_, head_dim()),
      0);
}

MultiheadAttention::ProjectedKeyValue MultiheadAttention::project_key_value(const Tensor& key,
                                                                            const Tensor& value) {
  const int64_t e = embed_dim_, h = num_heads_, d = head_dim();
  LOOM_CHECK(
      key.defined() && value.defined() && key.dim() == 3 && key.size(2) == e && value.shape() == key.shape(),
      "MultiheadAttention::project_key_value(embed_dim=", e, "): key and value must both be [B, S, ", e,
      "], got ", key.defined() ? shape_str(key.shape()) : "undefined", " and ",
      value.defined() ? shape_str(value.shape()) : "undefined");
  if (key.is_same(value)) return split_key_value(linear(key, key_value_weight(), key_value_bias()));
  return {
      heads(unpack(linear(key, rows(in_proj_weight, e, e), rows(in_proj_bias, e, e)), 1, h, d), 0),
      heads(unpack(linear(value, rows(in_proj_weight, 2 * e, e), rows(in_proj_bias, 2 * e, e)), 1, h, d), 0),
      Tensor()};
}

Tensor MultiheadAttention::key_value_weight() const {
  return rows(in_proj_weight, embed_dim_, 2 * embed_dim_);
}

Tensor MultiheadAttention::key_value_bias() const { return rows(in_proj_bias, embed_dim_, 2 * embed_dim_); }

MultiheadAttention::ProjectedKeyValue MultiheadAttention::split_key_value(const Tensor& packed) const {
  const int64_t e = embed_dim_;
  LOOM_CHECK(packed.defined() && packed.dim() == 3 && packed.size(2) == 2 * e,
             "MultiheadAttention::split_key_value(embed_dim=", e, "): packed keys and values must be [B, S, ",
             2 * e, "], got ", packed.defined() ? shape_str(packed.shape()) : "undefined");
  Tensor kv = unpack(packed, 2, num_heads_, head_dim());
  return {heads(kv, 0), heads(kv, 1), kv};
}

Tensor MultiheadAttention::forward(const Tensor& query, const ProjectedKeyValue& key_value,
                                   const Tensor& attn_mask, const Tensor& key_padding_mask, bool is_causal) {
  const char* op = "MultiheadAttention";
  const int64_t e = embed_dim_, h = num_heads_, d = head_dim();
  LOOM_CHECK(query.defined() && query.dim() == 3 && query.size(2) == e, op, "(embed_dim=", e,
             "): query must be [B, L, ", e, "], got ",
             query.defined() ? shape_str(query.shape()) : "undefined");
  const Tensor &k = key_value.key, &v = key_value.value;
  LOOM_CHECK(k.defined() && v.defined() && k.dim() == 4 && k.size(0) == query.size(0) && k.size(1) == h &&
                 k.size(3) == d && v.shape() == k.shape(),
             op, ": projected key and value must be [", query.size(0), ", ", h, ", S, ", d,
             "] (from project_key_value on a batch like query ", query.shape(), "), got ",
             k.defined() ? shape_str(k.shape()) : "undefined", " and ",
             v.defined() ? shape_str(v.shape()) : "undefined");
  // The packed form only when it is what key and value view (a caller may have built the struct otherwise).
  const Tensor& p = key_value.packed;
  auto same_view = [](const Tensor& a, const Tensor& b) {
    return a.data_ptr() == b.data_ptr() && a.shape() == b.shape() && a.strides() == b.strides();
  };
  const bool packed =
      p.defined() && p.dim() == 5 && p.size(2) == 2 && same_view(k, heads(p, 0)) && same_view(v, heads(p, 1));
  return attend_projected(query, Tensor(), project_query(query), k, v, attn_mask, key_padding_mask, is_causal,
                          /*need_weights=*/false, packed ? p : Tensor())
      .output;
}

MultiheadAttention::Output MultiheadAttention::attend_projected(
    const Tensor& query, const Tensor& qkv, Tensor q, Tensor k, Tensor v, const Tensor& attn_mask,
    const Tensor& key_padding_mask, bool is_causal, bool need_weights, const Tensor& kv_packed) {
  const char* op = "MultiheadAttention";
  const int64_t e = embed_dim_, h = num_heads_, d = head_dim();
  const int64_t b = query.size(0), l = query.size(1), s = qkv.defined() ? l : k.size(2);

  // --- masks, as one bool mask broadcastable to [B, H, L, S] plus an optional additive float mask ---------
  Tensor bool_mask, float_mask;
  if (attn_mask.defined()) {
    Tensor m;
    if (attn_mask.dim() == 2 && attn_mask.size(0) == l && attn_mask.size(1) == s) {
      m = attn_mask.view({1, 1, l, s});
    } else if (attn_mask.dim() == 3 && attn_mask.size(0) == b * h && attn_mask.size(1) == l &&
               attn_mask.size(2) == s) {
      m = attn_mask.reshape({b, h, l, s});
    } else if (attn_mask.dim() == 4 && (attn_mask.size(0) == 1 || attn_mask.size(0) == b) &&
               (attn_mask.size(1) == 1 || attn_mask.size(1) == h) && attn_mask.size(2) == l &&
               attn_mask.size(3) == s) {
      m = attn_mask;
    } else {
      LOOM_FAIL(op, ": attn_mask of shape ", attn_mask.shape(), " fits neither [L, S] = [", l, ", ", s,
                "], [B * H, L, S] = [", b * h, ", ", l, ", ", s, "] nor [B|1, H|1, L, S] for query ",
                query.shape(), " and ", s, " keys with ", h, " heads");
    }
    if (m.dtype() == DType::Bool) {
      merge_bool(bool_mask, m);
    } else {
      LOOM_CHECK(is_floating(m.dtype()), op, ": attn_mask must be bool or floating, got ", describe(attn_mask));
      float_mask = m.to(query.dtype());
    }
  }
  if (key_padding_mask.defined()) {
    LOOM_CHECK(key_padding_mask.dtype() == DType::Bool, op, ": key_padding_mask must be bool (true = padding), got ",
               describe(key_padding_mask));
    LOOM_CHECK(key_padding_mask.dim() == 2 && key_padding_mask.size(0) == b && key_padding_mask.size(1) == s, op,
               ": key_padding_mask must be [B, S] = [", b, ", ", s, "], got ", key_padding_mask.shape());
    merge_bool(bool_mask, key_padding_mask.view({b, 1, 1, s}));
  }
  if (bool_mask.defined() && bool_mask.device() != query.device()) bool_mask = bool_mask.to(query.device());
  if (float_mask.defined() && float_mask.device() != query.device()) float_mask = float_mask.to(query.device());

  // --- attention ------------------------------------------------------------------------------------------
  // The fused op computes the same function without the [B, H, L, S] weights. It reads the heads straight out
  // of the projections (strided views, no copies) and writes its output in [B, L, H, D] order, so merging the
  // heads is a view too; from the packed self-attention projection, its backward also writes one packed
  // gradient. Its attention dropout draws the same mask as the composed path's dropout would; additive masks
  // take the composed path below.
  const double attention_dropout = is_training() ? dropout_ : 0.0;
  if (!need_weights && !float_mask.defined()) {
    Tensor context =  // [B, H, L, D]
        qkv.defined() ? scaled_dot_product_attention_packed(qkv, bool_mask, is_causal, 0, attention_dropout)
        : kv_packed.defined()
            ? scaled_dot_product_attention_kv_packed(q, kv_packed, bool_mask, is_causal, 0, attention_dropout)
            : scaled_dot_product_attention(q, k, v, bool_mask, is_causal, 0, attention_dropout);
    return {out_proj->forward(context.permute({0, 2, 1, 3}).reshape({b, l, e})), Tensor()};
  }
  if (qkv.defined()) q = heads(qkv, 0), k = heads(qkv, 1), v = heads(qkv, 2);
  if (is_causal) {
    Tensor key_pos = arange(static_cast<double>(s), {DType::Int64, query.device()}).view({1, s});
    Tensor query_pos = arange(static_cast<double>(l), {DType::Int64, query.device()}).view({l, 1});
    merge_bool(bool_mask, gt(key_pos, query_pos).view({1, 1, l, s}));
  }

  // q / sqrt(D) before the product, as PyTorch 1.13's _scaled_dot_product_attention.
  Tensor scores = matmul(div(q, std::sqrt(static_cast<double>(d))), k.transpose(-2, -1));  // [B, H, L, S]
  if (float_mask.defined()) scores = add(scores, float_mask);
  Tensor weights = softmax(scores, -1, bool_mask);
  if (attention_dropout > 0) weights = dropout(weights, attention_dropout, true);
  Tensor context = matmul(weights, v);  // [B, H, L, D]
  Tensor merged = context.permute({0, 2, 1, 3}).reshape({b, l, e});
  return {out_proj->forward(merged), weights};
}

}  // namespace loom::nn
