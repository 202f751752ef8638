#include "loom/models/data/algorithmic_tasks.h"

#include <algorithm>

#include "loom/ops/factory.h"
#include "loom/ops/reduce.h"

namespace loom::data {
namespace {
constexpr uint64_t kOffsetKey = 0x6f66667365747321ull;  // "offsets!"
}  // namespace

uint32_t TaskRng::next_u32() {
  if (used_ == 4) {
    // Counter words: block (low, high), stream (low, high); key: the seed.
    Philox4x32 counter{{static_cast<uint32_t>(block_), static_cast<uint32_t>(block_ >> 32),
                        static_cast<uint32_t>(stream_), static_cast<uint32_t>(stream_ >> 32)}};
    words_ = philox4x32_10(counter, static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32));
    ++block_;
    used_ = 0;
  }
  return words_.v[used_++];
}

uint64_t TaskRng::next_u64() {
  uint64_t hi = next_u32();
  return (hi << 32) | next_u32();
}

int64_t TaskRng::uniform_int(int64_t lo, int64_t hi) {
  LOOM_CHECK(hi >= lo, "TaskRng::uniform_int: empty range [", lo, ", ", hi, "]");
  uint64_t n = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;  // 0 means all 2^64 values
  uint64_t x = next_u64();
  if (n != 0) {
    // Values below 2^64 mod n would make the low residues more likely: redraw them.
    uint64_t reject_below = (0 - n) % n;
    while (x < reject_below) x = next_u64();
    x %= n;
  }
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + x);
}

AlgorithmicTask parse_algorithmic_task(const std::string& name) {
  if (name == "copy") return AlgorithmicTask::Copy;
  if (name == "reverse") return AlgorithmicTask::Reverse;
  if (name == "addition") return AlgorithmicTask::Addition;
  LOOM_FAIL("algorithmic task: unknown task '", name, "'; expected copy, reverse or addition");
}

std::string to_string(AlgorithmicTask task) {
  switch (task) {
    case AlgorithmicTask::Copy:
      return "copy";
    case AlgorithmicTask::Reverse:
      return "reverse";
    case AlgorithmicTask::Addition:
      return "addition";
  }
  return "unknown";
}

namespace {

void check_digits(const std::vector<int>& digits, const char* what) {
  LOOM_CHECK(!digits.empty(), "algorithmic task: ", what, " has no digits");
  for (size_t i = 0; i < digits.size(); ++i)
    LOOM_CHECK(digits[i] >= 0 && digits[i] <= 9, "algorithmic task: ", what, " digit ", i, " is ", digits[i],
               "; digits are 0..9");
}

// t2t's random_number_lower_endian: digits least-significant first, the last one non-zero unless it is the
// only one.
std::vector<int> random_number_little_endian(TaskRng& rng, int64_t length) {
  std::vector<int> digits(static_cast<size_t>(length));
  if (length == 1) {
    digits[0] = static_cast<int>(rng.uniform_int(0, 9));
    return digits;
  }
  for (int64_t i = 0; i + 1 < length; ++i)
    digits[static_cast<size_t>(i)] = static_cast<int>(rng.uniform_int(0, 9));
  digits.back() = static_cast<int>(rng.uniform_int(1, 9));
  return digits;
}

}  // namespace

std::vector<int64_t> encode_digits(const std::vector<int>& digits) {
  std::vector<int64_t> ids;
  ids.reserve(digits.size() + 1);
  for (int d : digits) {
    LOOM_CHECK(d >= 0 && d <= 9, "encode_digits: digit ", d, " is not in 0..9");
    ids.push_back(d + kAlgoDigitOffset);
  }
  ids.push_back(kAlgoEos);
  return ids;
}

std::vector<int> add_little_endian(const std::vector<int>& a, const std::vector<int>& b) {
  check_digits(a, "addend 1");
  check_digits(b, "addend 2");
  std::vector<int> sum;
  int carry = 0;
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    int s = carry + (i < a.size() ? a[i] : 0) + (i < b.size() ? b[i] : 0);
    sum.push_back(s % 10);
    carry = s / 10;
  }
  if (carry) sum.push_back(carry);
  while (sum.size() > 1 && sum.back() == 0)
    sum.pop_back();  // t2t's number_to_lower_endian has no leading zeros
  return sum;
}

AlgorithmicExample make_copy_example(const std::vector<int>& digits) {
  check_digits(digits, "copy input");
  return {encode_digits(digits), encode_digits(digits)};
}

AlgorithmicExample make_reverse_example(const std::vector<int>& digits) {
  check_digits(digits, "reverse input");
  std::vector<int> reversed(digits.rbegin(), digits.rend());
  return {encode_digits(digits), encode_digits(reversed)};
}

AlgorithmicExample make_addition_example(const std::vector<int>& n1, const std::vector<int>& n2) {
  std::vector<int> sum = add_little_endian(n1, n2);  // checks both
  AlgorithmicExample ex;
  for (int d : n1) ex.input.push_back(d + kAlgoDigitOffset);
  ex.input.push_back(kAlgoSeparator);
  for (int d : n2) ex.input.push_back(d + kAlgoDigitOffset);
  ex.input.push_back(kAlgoEos);
  ex.target = encode_digits(sum);
  return ex;
}

AlgorithmicExample generate_algorithmic_example(AlgorithmicTask task, int64_t max_length, uint64_t seed,
                                                uint64_t split, int64_t index) {
  int64_t min_length = task == AlgorithmicTask::Addition ? 3 : 1;
  LOOM_CHECK(max_length >= min_length, "algorithmic task ", to_string(task), ": max_length ", max_length,
             " is below the minimum ", min_length);
  LOOM_CHECK(index >= 0 && index < (int64_t{1} << 40) && split < (uint64_t{1} << 24), "algorithmic task ",
             to_string(task), ": example index ", index, " or split ", split, " out of range");
  TaskRng rng(seed, (split << 40) | static_cast<uint64_t>(index));
  if (task == AlgorithmicTask::Addition) {
    int64_t l1 = rng.uniform_int(1, max_length / 2);
    int64_t l2 = rng.uniform_int(1, max_length - l1 - 1);
    std::vector<int> n1 = random_number_little_endian(rng, l1);
    std::vector<int> n2 = random_number_little_endian(rng, l2);
    return make_addition_example(n1, n2);
  }
  int64_t length = rng.uniform_int(1, max_length);
  std::vector<int> digits(static_cast<size_t>(length));
  for (int& d : digits) d = static_cast<int>(rng.uniform_int(0, 9));
  return task == AlgorithmicTask::Copy ? make_copy_example(digits) : make_reverse_example(digits);
}

Seq2SeqBatch collate_seq2seq(const std::vector<const AlgorithmicExample*>& examples,
                             const BatchOptions& options) {
  LOOM_CHECK(!examples.empty(), "collate_seq2seq: empty batch");
  LOOM_CHECK(options.min_input_length >= 0 && options.min_target_length >= 0,
             "collate_seq2seq: negative minimum lengths ", options.min_input_length, ", ",
             options.min_target_length);
  int64_t b = static_cast<int64_t>(examples.size());
  Seq2SeqBatch batch;
  int64_t s = options.min_input_length, t = options.min_target_length;
  for (const AlgorithmicExample* ex : examples) {
    LOOM_CHECK(ex != nullptr && !ex->input.empty() && !ex->target.empty(),
               "collate_seq2seq: a null example or one with an empty input or target");
    batch.input_lengths.push_back(static_cast<int64_t>(ex->input.size()));
    batch.target_lengths.push_back(static_cast<int64_t>(ex->target.size()));
    s = std::max(s, batch.input_lengths.back());
    t = std::max(t, batch.target_lengths.back());
  }
  std::vector<int64_t> inputs(static_cast<size_t>(b * s), kAlgoPad),
      targets(static_cast<size_t>(b * t), kAlgoPad), decoder_inputs(static_cast<size_t>(b * t), kAlgoPad);
  std::vector<bool> input_padding(static_cast<size_t>(b * s), true),
      target_padding(static_cast<size_t>(b * t), true);
  for (int64_t i = 0; i < b; ++i) {
    const AlgorithmicExample& ex = *examples[static_cast<size_t>(i)];
    for (size_t j = 0; j < ex.input.size(); ++j) {
      inputs[static_cast<size_t>(i * s) + j] = ex.input[j];
      input_padding[static_cast<size_t>(i * s) + j] = false;
    }
    for (size_t j = 0; j < ex.target.size(); ++j) {
      size_t at = static_cast<size_t>(i * t) + j;
      targets[at] = ex.target[j];
      target_padding[at] = false;
      decoder_inputs[at] = j == 0 ? options.start_token : ex.target[j - 1];
    }
  }
  batch.inputs = tensor(inputs, {b, s});
  batch.input_padding = tensor(input_padding, {b, s});
  batch.decoder_inputs = tensor(decoder_inputs, {b, t});
  batch.targets = tensor(targets, {b, t});
  batch.target_padding = tensor(target_padding, {b, t});
  return batch;
}

AlgorithmicDataset::AlgorithmicDataset(AlgorithmicTask task, int64_t size, int64_t max_length, uint64_t seed,
                                       uint64_t split)
    : task_(task), max_length_(max_length) {
  LOOM_CHECK(size >= 0, "AlgorithmicDataset: negative size ", size);
  examples_.reserve(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i)
    examples_.push_back(generate_algorithmic_example(task, max_length, seed, split, i));
}

AlgorithmicDataset AlgorithmicDataset::t2t_train(AlgorithmicTask task, uint64_t seed, int64_t size,
                                                 int64_t max_length) {
  return AlgorithmicDataset(task, size, max_length, seed, 0);
}

AlgorithmicDataset AlgorithmicDataset::t2t_eval(AlgorithmicTask task, uint64_t seed, int64_t size,
                                                int64_t max_length) {
  return AlgorithmicDataset(task, size, max_length, seed, 1);
}

const AlgorithmicExample& AlgorithmicDataset::operator[](int64_t i) const {
  LOOM_CHECK(i >= 0 && i < size(), "AlgorithmicDataset: index ", i, " out of range for ", size(),
             " examples");
  return examples_[static_cast<size_t>(i)];
}

Seq2SeqBatch AlgorithmicDataset::batch(const std::vector<int64_t>& indices,
                                       const BatchOptions& options) const {
  std::vector<const AlgorithmicExample*> picked;
  picked.reserve(indices.size());
  for (int64_t i : indices) picked.push_back(&(*this)[i]);
  return collate_seq2seq(picked, options);
}

std::string AlgorithmicDataset::summary() const {
  return detail::concat("algorithmic ", to_string(task_), ": ", size(), " examples, length 1..", max_length_,
                        ", vocabulary ", kAlgoVocabSize);
}

Tensor random_position_offsets(const std::vector<int64_t>& lengths, int64_t max_offset, uint64_t seed,
                               uint64_t stream) {
  // A key of its own, so passing a dataset's seed does not replay that dataset's example streams.
  TaskRng rng(seed ^ kOffsetKey, stream);
  std::vector<int64_t> offsets;
  offsets.reserve(lengths.size());
  for (size_t b = 0; b < lengths.size(); ++b) {
    LOOM_CHECK(lengths[b] >= 0 && lengths[b] <= max_offset, "random_position_offsets: length ", lengths[b],
               " of row ", b, " does not fit in max_offset ", max_offset);
    offsets.push_back(rng.uniform_int(0, max_offset - lengths[b]));
  }
  return tensor(offsets);
}

double SequenceAccuracy::char_accuracy() const {
  return tokens == 0 ? 0.0 : static_cast<double>(tokens_correct) / static_cast<double>(tokens);
}

double SequenceAccuracy::sequence_accuracy() const {
  return sequences == 0 ? 0.0 : static_cast<double>(sequences_correct) / static_cast<double>(sequences);
}

SequenceAccuracy& SequenceAccuracy::operator+=(const SequenceAccuracy& o) {
  tokens_correct += o.tokens_correct;
  tokens += o.tokens;
  sequences_correct += o.sequences_correct;
  sequences += o.sequences;
  return *this;
}

SequenceAccuracy padded_accuracy(const Tensor& predictions, const Tensor& targets) {
  LOOM_CHECK(targets.dim() == 2 && targets.dtype() == DType::Int64,
             "padded_accuracy: targets must be int64 [B, T], got ", dtype_name(targets.dtype()), " ",
             targets.shape());
  Tensor ids = predictions;
  if (is_floating(predictions.dtype())) {
    LOOM_CHECK(predictions.dim() == 3, "padded_accuracy: logits must be [B, T, V], got ",
               predictions.shape());
    ids = argmax(predictions, -1);
  }
  LOOM_CHECK(ids.dtype() == DType::Int64 && ids.shape() == targets.shape(), "padded_accuracy: predictions ",
             dtype_name(predictions.dtype()), " ", predictions.shape(), " do not match targets int64 ",
             targets.shape(), " (expected int64 ids [B, T] or logits [B, T, V])");
  std::vector<int64_t> pred = ids.to_vector<int64_t>(), gold = targets.to_vector<int64_t>();
  int64_t b = targets.size(0), t = targets.size(1);
  SequenceAccuracy acc;
  acc.sequences = b;
  for (int64_t i = 0; i < b; ++i) {
    bool all_right = true;
    for (int64_t j = 0; j < t; ++j) {
      size_t at = static_cast<size_t>(i * t + j);
      if (gold[at] == kAlgoPad) continue;
      ++acc.tokens;
      if (pred[at] == gold[at])
        ++acc.tokens_correct;
      else
        all_right = false;
    }
    if (all_right) ++acc.sequences_correct;
  }
  return acc;
}

}  // namespace loom::data
