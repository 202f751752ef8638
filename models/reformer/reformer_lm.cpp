// ReformerLM: embeddings, the reversible stack of attention / feed-forward branches, and the chunked loss head.
#include "loom/models/reformer/reformer_lm.h"

#include <cmath>
#include <numeric>

#include "loom/autograd/chunked.h"
#include "loom/autograd/grad_mode.h"
#include "loom/autograd/reversible.h"
#include "loom/nn/axial_position_embedding.h"
#include "loom/nn/dropout.h"
#include "loom/nn/embedding.h"
#include "loom/ops/ops.h"

namespace loom::models {
namespace {

constexpr const char* kOp = "ReformerLM";
constexpr int64_t kIgnoreIndex = -100;

// F: pre-norm attention, LSH or local. The padding mask is an argument, not state, so a recompute in the
// reversible backward sees the mask of its own forward.
class AttentionBranch : public nn::Module {
 public:
  AttentionBranch(const ReformerConfig& c, bool lsh_layer, TensorOptions options) : Module("ReformerAttention") {
    layer_norm = register_module("layer_norm", std::make_shared<nn::LayerNorm>(c.d_model, c.eps, true, options));
    if (lsh_layer)
      lsh = register_module("lsh", std::make_shared<nn::LSHSelfAttention>(lsh_attention_options(c), options));
    else
      local = register_module("local", std::make_shared<nn::LocalSelfAttention>(local_attention_options(c), options));
  }
  Tensor forward(const Tensor& x, const Tensor& padding_mask) {
    Tensor h = layer_norm->forward(x);
    return lsh ? lsh->forward(h, padding_mask) : local->forward(h, padding_mask);
  }
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }

  std::shared_ptr<nn::LayerNorm> layer_norm;
  std::shared_ptr<nn::LSHSelfAttention> lsh;
  std::shared_ptr<nn::LocalSelfAttention> local;
};

// The output head on some positions: LayerNorm(2D) -> Dropout -> Linear(2D -> V).
Tensor apply_head(nn::LayerNorm& ln, nn::Linear& out, double p, bool training, const Tensor& x) {
  return out.forward(dropout(ln.forward(x), p, training));
}

int64_t next_power_of_two(int64_t n) {
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

}  // namespace

nn::LSHSelfAttentionOptions lsh_attention_options(const ReformerConfig& c) {
  nn::LSHSelfAttentionOptions o;
  o.d_model = c.d_model;
  o.num_heads = c.heads;
  o.head_dim = c.head_dim;
  o.chunk_len = c.lsh_chunk;
  o.n_chunks_before = c.lsh_chunks_before;
  o.n_hashes = c.n_hashes;
  o.n_buckets = c.n_buckets;
  o.causal = true;
  o.dropout = c.dropout;
  return o;
}

nn::LocalSelfAttentionOptions local_attention_options(const ReformerConfig& c) {
  nn::LocalSelfAttentionOptions o;
  o.d_model = c.d_model;
  o.num_heads = c.heads;
  o.head_dim = c.head_dim;
  o.chunk_len = c.local_chunk;
  o.n_chunks_before = c.local_chunks_before;
  o.causal = true;
  o.dropout = c.dropout;
  return o;
}

nn::ChunkedFeedForwardOptions feed_forward_options(const ReformerConfig& c) {
  nn::ChunkedFeedForwardOptions o;
  o.d_model = c.d_model;
  o.d_ff = c.d_ff;
  o.dropout = c.dropout;
  o.activation = c.activation;
  o.eps = c.eps;
  o.chunk_size = c.ff_chunk;
  return o;
}

ReformerConfig ReformerConfig::resolved() const {
  ReformerConfig c = *this;
  LOOM_CHECK(c.vocab_size > 0 && c.d_model > 0 && c.d_ff > 0 && c.layers > 0 && c.heads > 0 && c.head_dim > 0 &&
                 c.max_seq > 0,
             kOp, ": vocab_size, d_model, d_ff, layers, heads, head_dim and max_seq must be positive (", c.str(),
             ")");
  LOOM_CHECK(!c.attention.empty(), kOp, ": the attention list is empty; give 'lsh' and/or 'local'");
  for (const std::string& a : c.attention)
    LOOM_CHECK(a == "lsh" || a == "local", kOp, ": attention type '", a, "' is not 'lsh' or 'local'");
  LOOM_CHECK(c.lsh_chunk > 0 && c.local_chunk > 0 && c.lsh_chunks_before >= 0 && c.local_chunks_before >= 0 &&
                 c.n_hashes > 0,
             kOp, ": chunk lengths and n_hashes must be positive and chunks_before >= 0, got lsh_chunk ",
             c.lsh_chunk, ", local_chunk ", c.local_chunk, ", n_hashes ", c.n_hashes);
  LOOM_CHECK(c.dropout >= 0 && c.dropout < 1, kOp, ": dropout must be in [0, 1), got ", c.dropout);
  LOOM_CHECK(c.activation == "relu" || c.activation == "gelu", kOp, ": activation '", c.activation,
             "' is not 'relu' or 'gelu'");
  LOOM_CHECK(c.positions == "axial" || c.positions == "learned", kOp, ": positions '", c.positions,
             "' is not 'axial' or 'learned'");
  if (c.positions == "axial") {
    if (c.axial_shape.empty()) {
      int64_t n2 = next_power_of_two(static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(c.max_seq)))));
      c.axial_shape = {(c.max_seq + n2 - 1) / n2, n2};
    }
    if (c.axial_dims.empty()) {
      LOOM_CHECK(c.axial_shape.size() == 2 && c.d_model % 4 == 0, kOp, ": give axial dims for axial shape ",
                 list_str(c.axial_shape), " and d_model ", c.d_model,
                 " (the default split d_model / 4 + 3 d_model / 4 needs two axes and d_model divisible by 4)");
      c.axial_dims = {c.d_model / 4, 3 * c.d_model / 4};
    }
    int64_t positions = 1, width = 0;
    for (int64_t n : c.axial_shape) positions *= n;
    for (int64_t d : c.axial_dims) width += d;
    LOOM_CHECK(width == c.d_model, kOp, ": axial dims ", list_str(c.axial_dims), " sum to ", width,
               ", not d_model = ", c.d_model);
    LOOM_CHECK(positions >= c.max_seq, kOp, ": axial shape ", list_str(c.axial_shape), " covers ", positions,
               " positions, fewer than max_seq = ", c.max_seq);
  }
  return c;
}

std::string ReformerConfig::str() const {
  std::string attn;
  for (const std::string& a : attention) attn += (attn.empty() ? "" : ",") + a;
  std::string s = detail::concat("vocab=", vocab_size, " d_model=", d_model, " d_ff=", d_ff, " layers=", layers,
                                 " heads=", heads, " head_dim=", head_dim, " attention=", attn,
                                 " lsh_chunk=", lsh_chunk, "/", lsh_chunks_before, " local_chunk=", local_chunk,
                                 "/", local_chunks_before, " max_seq=", max_seq, " positions=", positions,
                                 " activation=", activation);
  if (positions == "axial") s += " axial=" + list_str(axial_shape) + "x" + list_str(axial_dims);
  return s;
}

ReformerLM::ReformerLM(const ReformerConfig& config, TensorOptions options)
    : Module("ReformerLM"), config_(config.resolved()) {
  const ReformerConfig& c = config_;
  tok = register_module("tok", std::make_shared<nn::Embedding>(c.vocab_size, c.d_model, options));
  if (c.positions == "axial")
    pos = register_module("pos", std::make_shared<nn::AxialPositionEmbedding>(c.axial_shape, c.axial_dims, options));
  else
    pos = register_module("pos", std::make_shared<nn::Embedding>(c.max_seq, c.d_model, options));
  layers = register_module("layers", std::make_shared<nn::ReversibleSequence>());
  for (int64_t l = 0; l < c.layers; ++l) {
    const bool is_lsh = c.attention[static_cast<size_t>(l) % c.attention.size()] == "lsh";
    auto f = std::make_shared<AttentionBranch>(c, is_lsh, options);
    if (f->lsh) lsh_layers.push_back(f->lsh);
    if (f->local) local_layers.push_back(f->local);
    auto g = std::make_shared<nn::ChunkedFeedForward>(feed_forward_options(c), options);
    feed_forwards.push_back(g);
    layers->push_back(f, g);
  }
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(2 * c.d_model, c.eps, true, options));
  head = register_module("head", std::make_shared<nn::Linear>(2 * c.d_model, c.vocab_size, true, options));
}

int64_t ReformerLM::length_multiple() const {
  int64_t m = 1;
  if (!lsh_layers.empty()) m = std::lcm(m, config_.lsh_chunk);
  if (!local_layers.empty()) m = std::lcm(m, config_.local_chunk);
  return m;
}

void ReformerLM::set_n_hashes(int64_t n_hashes) {
  for (auto& l : lsh_layers) l->set_n_hashes(n_hashes);
  config_.n_hashes = n_hashes;
}

void ReformerLM::set_full_attention(bool on) {
  for (auto& l : lsh_layers) l->set_full_attention(on);
}

void ReformerLM::set_ff_chunk(int64_t chunk) {
  for (auto& g : feed_forwards) g->set_chunk_size(chunk);
  config_.ff_chunk = chunk;
}

Tensor ReformerLM::embed(const Tensor& tokens) {
  const int64_t L = tokens.size(1);
  Tensor e = tok->forward(tokens);
  if (auto axial = std::dynamic_pointer_cast<nn::AxialPositionEmbedding>(pos)) {
    e = add(e, axial->forward(L));
  } else {
    auto table = std::static_pointer_cast<nn::Embedding>(pos);
    e = add(e, table->weight.narrow(0, 0, L));
  }
  return dropout(e, config_.dropout, is_training());
}

Tensor ReformerLM::features(const Tensor& tokens, const Tensor& padding_mask) {
  LOOM_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.dtype() == kInt64, kOp,
             ": expected int64 tokens [B, L], got ", tokens.defined() ? describe(tokens) : std::string("undefined"));
  const int64_t L = tokens.size(1);
  LOOM_CHECK(L >= 1 && L <= config_.max_seq, kOp, ": sequence length ", L, " of tokens ", tokens.shape(),
             " is outside [1, max_seq = ", config_.max_seq, "]");
  if (padding_mask.defined())
    LOOM_CHECK(padding_mask.dtype() == DType::Bool && padding_mask.shape() == tokens.shape(), kOp,
               ": padding_mask must be bool of the tokens' shape ", tokens.shape(), ", got ", describe(padding_mask));
  // The attention layers check divisibility themselves; this message says what to do at the model's level.
  for (int64_t chunk : {lsh_layers.empty() ? int64_t{0} : config_.lsh_chunk,
                        local_layers.empty() ? int64_t{0} : config_.local_chunk}) {
    LOOM_CHECK(chunk == 0 || L <= chunk || L % chunk == 0, kOp, ": sequence length ", L,
               " must be at most or a multiple of the attention chunk ", chunk,
               " (pad the sequence to a multiple of ", length_multiple(), " and pass a padding mask)");
  }
  Tensor x = embed(tokens);

  std::vector<ReversibleBlock> blocks;
  for (size_t l = 0; l < layers->size(); ++l) {
    auto f = std::static_pointer_cast<AttentionBranch>((*layers)[l]->f);
    auto g = (*layers)[l]->g;
    blocks.push_back({[f, padding_mask](const Tensor& h) { return f->forward(h, padding_mask); },
                      [g](const Tensor& h) { return g->forward(h); }});
  }
  Tensor y1, y2;
  if (config_.reversible) {
    ReversibleOutput y = reversible_sequence(blocks, x, x, layers->parameters());
    y1 = y.y1;
    y2 = y.y2;
  } else {  // the same computation, every activation on the tape
    y1 = x;
    y2 = x;
    for (const ReversibleBlock& b : blocks) {
      y1 = add(y1, b.f(y2));
      y2 = add(y2, b.g(y1));
    }
  }
  return cat({y1, y2}, -1);
}

Tensor ReformerLM::head_logits(const Tensor& features_slice) {
  return apply_head(*ln_f, *head, config_.dropout, is_training(), features_slice);
}

Tensor ReformerLM::forward(const Tensor& tokens, const Tensor& padding_mask) {
  return head_logits(features(tokens, padding_mask));
}

Tensor ReformerLM::loss(const Tensor& tokens, const Tensor& targets) {
  LOOM_CHECK(targets.defined() && targets.shape() == tokens.shape() && targets.dtype() == kInt64, kOp,
             "::loss: targets must be int64 of the tokens' shape ", tokens.shape(), ", got ",
             targets.defined() ? describe(targets) : std::string("undefined"));
  const int64_t counted = ne(targets, static_cast<double>(kIgnoreIndex)).sum().item<int64_t>();
  LOOM_CHECK(counted > 0, kOp, "::loss: every target of ", targets.shape(), " is ignored (-100)");
  Tensor h = features(tokens);
  const int64_t V = config_.vocab_size;
  // Per-position negative log-likelihood [B, len, 1]; ignored targets contribute 0.
  // The chunked head reruns in backward, possibly after this call returned: it holds what it reads by value
  // (tensor handles, the layers, the dropout setting), never references to the arguments or to this model.
  auto nll = [ln = ln_f, out = head, targets, V, p = config_.dropout, training = is_training()](
                 const Tensor& slice, int64_t start) {
    const int64_t b = slice.size(0), len = slice.size(1);
    Tensor t = targets.narrow(1, start, len).reshape({-1});
    Tensor logits = apply_head(*ln, *out, p, training, slice).reshape({b * len, V});
    return cross_entropy(logits, t, kIgnoreIndex, Reduction::None).reshape({b, len, 1});
  };
  Tensor per_position = chunked_apply_indexed(nll, h, config_.loss_chunk, 1);
  return div(per_position.sum(), static_cast<double>(counted));
}

Tensor sample(ReformerLM& model, const Tensor& prompt, int64_t count, double temperature) {
  LOOM_CHECK(prompt.defined() && prompt.dim() == 1 && prompt.dtype() == kInt64 && prompt.size(0) >= 1,
             "sample: the prompt must be int64 [P] with P >= 1, got ",
             prompt.defined() ? describe(prompt) : std::string("undefined"));
  LOOM_CHECK(count >= 0 && temperature >= 0, "sample: count and temperature must be non-negative, got ", count,
             " and ", temperature);
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const ReformerConfig& c = model.config();
  const Device device = model.tok->weight.device();
  std::vector<int64_t> seq(static_cast<size_t>(prompt.size(0)));
  Tensor host_prompt = prompt.to(Device("cpu")).contiguous();
  for (size_t i = 0; i < seq.size(); ++i) seq[i] = host_prompt.data<int64_t>()[i];
  // The longest context the attention layers accept within max_seq.
  const int64_t m = model.length_multiple();
  const int64_t max_context = c.max_seq >= m ? c.max_seq / m * m : c.max_seq;
  for (int64_t t = 0; t < count; ++t) {
    // The last max_context tokens, right-padded to a length the attention layers accept.
    const int64_t ctx = std::min(static_cast<int64_t>(seq.size()), max_context);
    const int64_t padded = std::min(max_context, (ctx + m - 1) / m * m);
    Tensor tokens = zeros({1, padded}, kInt64);
    Tensor pad = ones({1, padded}, DType::Bool);
    for (int64_t i = 0; i < ctx; ++i) {
      tokens.data<int64_t>()[i] = seq[seq.size() - static_cast<size_t>(ctx) + static_cast<size_t>(i)];
      pad.data<bool>()[i] = false;
    }
    Tensor logits = model.forward(tokens.to(device), ctx < padded ? pad.to(device) : Tensor());
    Tensor last = logits.select(1, ctx - 1).reshape({-1}).to(Device("cpu")).to(kFloat64).contiguous();
    const double* z = last.data<double>();
    const int64_t V = last.size(0);
    int64_t next = 0;
    if (temperature == 0) {
      for (int64_t v = 1; v < V; ++v) next = z[v] > z[next] ? v : next;
    } else {
      double zmax = z[0];
      for (int64_t v = 1; v < V; ++v) zmax = std::max(zmax, z[v]);
      std::vector<double> p(static_cast<size_t>(V));
      double total = 0;
      for (int64_t v = 0; v < V; ++v) total += p[static_cast<size_t>(v)] = std::exp((z[v] - zmax) / temperature);
      double u = rand({1}, kFloat64).item<double>() * total;
      next = V - 1;
      for (int64_t v = 0; v < V; ++v) {
        u -= p[static_cast<size_t>(v)];
        if (u < 0) {
          next = v;
          break;
        }
      }
    }
    seq.push_back(next);
  }
  model.train(was_training);
  Tensor out = Tensor::empty({static_cast<int64_t>(seq.size())}, kInt64);
  std::copy(seq.begin(), seq.end(), out.data<int64_t>());
  return out;
}

}  // namespace loom::models
