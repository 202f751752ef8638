// TextClassifier: embeddings, one of the three sentence encoders, the two-layer source2token pooling, and the
// reference's single-sentence or sentence-pair head (models/biblosa/text_classifier.h).
#include "loom/models/biblosa/text_classifier.h"

#include <cmath>
#include <set>

#include "loom/models/biblosa/encoders.h"
#include "loom/nn/block_attention.h"
#include "loom/nn/dropout.h"
#include "loom/nn/embedding.h"
#include "loom/nn/init.h"
#include "loom/nn/linear.h"
#include "loom/ops/ops.h"

namespace loom::models {
namespace {

constexpr const char* kOp = "TextClassifier";

nn::DenseActivation activation_of(const std::string& name) {
  return name == "relu" ? nn::DenseActivation::Relu : nn::DenseActivation::Elu;
}

Tensor activate(const Tensor& x, nn::DenseActivation a) {
  return a == nn::DenseActivation::Relu ? relu(x) : elu(x);
}

// TF's dense layer initialisation: Glorot-uniform weight, zero bias.
std::shared_ptr<nn::Linear> dense(int64_t in, int64_t out, bool bias, TensorOptions options) {
  auto layer = std::make_shared<nn::Linear>(in, out, bias, options);
  nn::init::xavier_uniform_(layer->weight);
  if (layer->bias.defined()) nn::init::zeros_(layer->bias);
  return layer;
}

// SST / TREC / CR / MPQA / SUBJ (and DiSAN's SST): p = act(Drop(s) W1 + b1), logits = Drop(p) W2 (no bias).
class SentenceHead : public nn::Module {
 public:
  SentenceHead(const TextClassifierConfig& c, TensorOptions options)
      : Module("SentenceHead"), activation_(activation_of(c.activation)) {
    hidden = register_module("hidden", dense(2 * c.hidden_dim, c.hidden_dim, true, options));
    logits = register_module("logits", dense(c.hidden_dim, c.num_classes, false, options));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout));
  }
  Tensor forward(const Tensor& s) override {
    Tensor p = activate(hidden->forward(dropout->forward(s)), activation_);
    return logits->forward(dropout->forward(p));
  }

  std::shared_ptr<nn::Linear> hidden, logits;
  std::shared_ptr<nn::Dropout> dropout;

 private:
  nn::DenseActivation activation_;
};

// SNLI: z = [s1; s2; s1 - s2; s1 * s2], p = act(Drop(z) W1 + b1); with the highway (Bi-BloSAN's and the
// baselines' exp_SNLI head) t = act(Drop(p) Wt + bt), g = sigmoid(Drop(p) Wg + bg), q = g t + (1 - g) p, each
// dropout its own mask; logits = Drop(q) Wo + bo. DiSAN's own SNLI head has no highway (logits from p).
class PairHead : public nn::Module {
 public:
  PairHead(const TextClassifierConfig& c, bool with_highway, TensorOptions options)
      : Module("PairHead"), activation_(activation_of(c.activation)) {
    const int64_t d = c.hidden_dim;
    hidden = register_module("hidden", dense(8 * d, d, true, options));
    if (with_highway) {
      highway_transform = register_module("highway_transform", dense(d, d, true, options));
      highway_gate = register_module("highway_gate", dense(d, d, true, options));
    }
    logits = register_module("logits", dense(d, c.num_classes, true, options));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout));
  }
  Tensor forward(const Tensor& s1, const Tensor& s2) {
    Tensor z = cat({s1, s2, sub(s1, s2), mul(s1, s2)}, 1);
    Tensor p = activate(hidden->forward(dropout->forward(z)), activation_);
    if (highway_transform) {
      Tensor t = activate(highway_transform->forward(dropout->forward(p)), activation_);
      Tensor g = sigmoid(highway_gate->forward(dropout->forward(p)));
      p = add(mul(g, t), mul(1.0 - g, p));
    }
    return logits->forward(dropout->forward(p));
  }

  std::shared_ptr<nn::Linear> hidden, highway_transform, highway_gate, logits;
  std::shared_ptr<nn::Dropout> dropout;

 private:
  nn::DenseActivation activation_;
};

// DiSAN's pair head is the one without a highway; Bi-BloSAN's exp_SNLI code (which also runs the multi-head
// baseline) has it. This is what makes the spec §4 counts come out (2,800,803 and 2,345,403).
bool pair_head_has_highway(const TextClassifierConfig& c) { return c.encoder != "disan"; }

}  // namespace

// ---- config -----------------------------------------------------------------------------------------------

TextClassifierConfig TextClassifierConfig::resolved() const {
  TextClassifierConfig c = *this;
  LOOM_CHECK(c.encoder == "biblosa" || c.encoder == "disan" || c.encoder == "multihead", kOp, ": encoder '",
             c.encoder, "' is not 'biblosa', 'disan' or 'multihead'");
  LOOM_CHECK(c.vocab_size > 0 && c.num_classes > 0 && c.embed_dim > 0 && c.hidden_dim > 0, kOp,
             ": vocab_size, num_classes, embed_dim and hidden_dim must be positive, got vocab ", c.vocab_size,
             ", classes ", c.num_classes, ", d_e ", c.embed_dim, ", d ", c.hidden_dim);
  LOOM_CHECK(c.block_len >= 0, kOp, ": block_len must be positive (or 0 for the per-batch rule), got ",
             c.block_len);
  LOOM_CHECK(c.heads > 0, kOp, ": heads must be positive, got ", c.heads);
  if (c.encoder == "multihead")
    LOOM_CHECK((2 * c.hidden_dim) % c.heads == 0, kOp,
               ": the multihead encoder splits 2d = ", 2 * c.hidden_dim, " features into ", c.heads,
               " heads, which does not divide");
  LOOM_CHECK(c.activation == "relu" || c.activation == "elu", kOp, ": activation '", c.activation,
             "' is not 'relu' or 'elu'");
  LOOM_CHECK(c.dropout >= 0 && c.dropout < 1, kOp, ": dropout must be in [0, 1), got ", c.dropout);
  return c;
}

std::string TextClassifierConfig::str() const {
  return detail::concat("encoder=", encoder, " vocab=", vocab_size, " classes=", num_classes,
                        " d_e=", embed_dim, " d=", hidden_dim, " r=", block_len, " heads=", heads,
                        " act=", activation, " pair=", pair ? 1 : 0, " parity=", reference_parity ? 1 : 0);
}

// ---- model ------------------------------------------------------------------------------------------------

TextClassifier::TextClassifier(const TextClassifierConfig& config, TensorOptions options)
    : Module("TextClassifier"), config_(config.resolved()) {
  const TextClassifierConfig& c = config_;
  const nn::DenseActivation act = activation_of(c.activation);
  embedding =
      register_module("embedding", std::make_shared<nn::Embedding>(c.vocab_size, c.embed_dim, options));
  // The reference's initialisation of words missing from GloVe (spec 2.9); a driver loads pretrained rows
  // over it.
  nn::init::uniform_(embedding->weight, -0.05, 0.05);
  if (c.encoder == "biblosa") {
    nn::BlockSelfAttentionOptions o;
    o.block_len = c.block_len;
    o.activation = act;
    o.dropout = c.dropout;
    o.options = options;
    o.reference_parity = c.reference_parity;
    encoder =
        register_module("encoder", std::make_shared<nn::BiBlockSelfAttention>(c.embed_dim, c.hidden_dim, o));
  } else if (c.encoder == "disan") {
    encoder = register_module("encoder", std::make_shared<DisanEncoder>(
                                             c.embed_dim, c.hidden_dim,
                                             nn::DirectionalSelfAttentionOptions{act, c.dropout, options}));
  } else {
    encoder =
        register_module("encoder", std::make_shared<MultiheadEncoder>(
                                       c.embed_dim, c.heads, 2 * c.hidden_dim / c.heads, c.dropout, options));
  }
  pooling =
      register_module("pooling", std::make_shared<nn::Source2Token>(
                                     2 * c.hidden_dim, nn::Source2TokenOptions{2, act, c.dropout, options}));
  if (c.pair)
    head = register_module("head", std::make_shared<PairHead>(c, pair_head_has_highway(c), options));
  else
    head = register_module("head", std::make_shared<SentenceHead>(c, options));
}

void TextClassifier::check_tokens(const char* who, const Tensor& ids, const Tensor& padding_mask) const {
  LOOM_CHECK(ids.defined() && ids.dtype() == DType::Int64 && ids.dim() == 2, kOp, "::", who,
             ": ids must be int64 [B, n], got ",
             ids.defined() ? describe(ids) : std::string("an undefined tensor"));
  LOOM_CHECK(ids.size(0) >= 1 && ids.size(1) >= 1, kOp, "::", who,
             ": expected at least one sentence of at least ", "one token, got ids ", ids.shape());
  if (!padding_mask.defined()) return;
  LOOM_CHECK(padding_mask.dtype() == DType::Bool && padding_mask.shape() == ids.shape(), kOp, "::", who,
             ": padding_mask must be bool ", ids.shape(), " like ids (true = padding), got ",
             describe(padding_mask));
  LOOM_CHECK(padding_mask.device() == ids.device(), kOp, "::", who, ": ids on ", ids.device(),
             " but padding_mask on ", padding_mask.device());
}

Tensor TextClassifier::encode_tokens(const Tensor& ids, const Tensor& padding_mask) {
  check_tokens("encode_tokens", ids, padding_mask);
  // No dropout on the embeddings themselves: every dense layer of the encoder drops out its own input (spec
  // P8).
  Tensor x = embedding->forward(ids);
  if (config_.encoder == "biblosa")
    return std::static_pointer_cast<nn::BiBlockSelfAttention>(encoder)->forward(x, padding_mask);
  if (config_.encoder == "disan")
    return std::static_pointer_cast<DisanEncoder>(encoder)->forward(x, padding_mask);
  return std::static_pointer_cast<MultiheadEncoder>(encoder)->forward(x, padding_mask);
}

Tensor TextClassifier::encode(const Tensor& ids, const Tensor& padding_mask) {
  // The pooling masks padded positions out of its softmax; an all-padding row pools to 0.
  return pooling->forward(encode_tokens(ids, padding_mask), padding_mask);
}

Tensor TextClassifier::forward(const Tensor& ids, const Tensor& padding_mask) {
  LOOM_CHECK(!config_.pair, kOp,
             "::forward: this model has the sentence-pair head (pair = true); call forward_pair ",
             "with two sentences (got ids ", ids.defined() ? describe(ids) : std::string("undefined"), ")");
  return std::static_pointer_cast<SentenceHead>(head)->forward(encode(ids, padding_mask));
}

Tensor TextClassifier::forward_pair(const Tensor& ids1, const Tensor& mask1, const Tensor& ids2,
                                    const Tensor& mask2) {
  LOOM_CHECK(config_.pair, kOp,
             "::forward_pair: this model has the single-sentence head (pair = false); call ", "forward");
  check_tokens("forward_pair", ids1, mask1);
  check_tokens("forward_pair", ids2, mask2);
  LOOM_CHECK(ids1.size(0) == ids2.size(0), kOp,
             "::forward_pair: the two sentence batches differ in size: ids1 ", ids1.shape(), ", ids2 ",
             ids2.shape());
  // The same encoder (same weights) for both sentences, as the reference's reused variable scope.
  Tensor s1 = encode(ids1, mask1), s2 = encode(ids2, mask2);
  return std::static_pointer_cast<PairHead>(head)->forward(s1, s2);
}

std::vector<std::string> TextClassifier::decayed_parameter_names() const {
  // DiSA's W_1 / W_2 ('linear_dependent', 'linear_head' in TF) are built without wd, wherever a DiSA sits
  // (DiSAN's encoder, mBloSA's inter-block attention). mBloSA's intra-block W_kq is built with it and is
  // decayed.
  std::set<std::string> excluded = {"embedding.weight"};
  for (const auto& [name, m] : named_modules())
    if (dynamic_cast<const nn::DirectionalSelfAttention*>(m.get()) != nullptr)
      excluded.insert(name + ".key_query.weight");
  std::vector<std::string> names;
  for (const auto& [name, p] : named_parameters())
    if (p.dim() >= 2 && excluded.count(name) == 0) names.push_back(name);
  return names;
}

Tensor TextClassifier::l2_penalty() const {
  const std::vector<std::string> names = decayed_parameter_names();
  const std::set<std::string> wanted(names.begin(), names.end());
  Tensor total;
  for (const auto& [name, p] : named_parameters()) {
    if (wanted.count(name) == 0) continue;
    Tensor term = mul(sum(mul(p, p)), 0.5);  // tf.nn.l2_loss
    total = total.defined() ? add(total, term) : term;
  }
  return total.defined() ? total : zeros({}, embedding->weight.options());
}

int64_t TextClassifier::encoder_and_head_parameters() const {
  const TextClassifierConfig& c = config_;
  const int64_t d = c.hidden_dim, de = c.embed_dim, C = c.num_classes;
  int64_t n = 0;
  if (c.encoder == "biblosa")
    n += 2 * (14 * d * d + (de + 10) * d);  // per direction (spec §4)
  else if (c.encoder == "disan")
    n += 2 * (de * d + 4 * d * d + 5 * d);  // per DiSA: W_h, b_h, W_1, W_2, b_f, two gate linears, b_o
  else
    n += 3 * de * 2 * d;   // W [3, heads, d_e, 2d / heads]
  n += 8 * d * d + 4 * d;  // the sentence source2token, two 2d x 2d layers
  if (c.pair) {
    n += 8 * d * d + d;                                  // z (8d) -> d
    if (pair_head_has_highway(c)) n += 2 * (d * d + d);  // highway transform and gate
    n += d * C + C;                                      // logits, with bias
  } else {
    n += 2 * d * d + d + d * C;  // 2d -> d, then logits without bias
  }
  return n;
}

}  // namespace loom::models
