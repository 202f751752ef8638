// The synthetic task data (models/data/algorithmic_tasks.h, models/data/babi_generator.h): hand-checked
// encodings, t2t's length and digit rules over whole generated datasets, addition checked by integer
// arithmetic, determinism from the seed, batching and masks, the padded accuracies on a hand-made prediction,
// and bAbI-like answers and supporting facts checked by replaying each story with an independent parser.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/models/data/algorithmic_tasks.h"
#include "loom/models/data/babi_generator.h"
#include "support/expect.h"

using namespace loom;
using namespace loom::data;
using test::expect_error;

namespace {

using Ids = std::vector<int64_t>;

// Digits (ids 2..11) of an id list up to (not including) `end`.
std::vector<int> digits_of(const Ids& ids, size_t begin, size_t end) {
  std::vector<int> d;
  for (size_t i = begin; i < end; ++i) d.push_back(static_cast<int>(ids[i] - 2));
  return d;
}

// Little-endian digits -> integer; the numbers fit: at most 38 digits (< 10^38 < 2^128).
unsigned __int128 to_int(const std::vector<int>& little_endian) {
  unsigned __int128 v = 0;
  for (size_t i = little_endian.size(); i-- > 0;) v = v * 10 + static_cast<unsigned>(little_endian[i]);
  return v;
}

std::vector<int> from_int(unsigned __int128 v) {
  std::vector<int> d;
  do {
    d.push_back(static_cast<int>(v % 10));
    v /= 10;
  } while (v != 0);
  return d;
}

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// Algorithmic tasks: encodings by hand.

TEST(AlgorithmicTasks, EncodesDigitsShiftedWithEos) {
  EXPECT_EQ(encode_digits({3, 0, 7}), (Ids{5, 2, 9, 1}));
  EXPECT_EQ(encode_digits({9}), (Ids{11, 1}));
  expect_error([] { encode_digits({3, 10}); }, "encode_digits: digit 10 is not in 0..9");
  EXPECT_EQ(kAlgoVocabSize, 13);
  EXPECT_EQ(kAlgoSeparator, 12);
}

TEST(AlgorithmicTasks, HandCheckedExamples) {
  // 95 + 7 = 102: n1 = [5, 9], n2 = [7] least-significant first.
  AlgorithmicExample add = make_addition_example({5, 9}, {7});
  EXPECT_EQ(add.input, (Ids{7, 11, 12, 9, 1}));
  EXPECT_EQ(add.target, (Ids{4, 2, 3, 1}));  // 102 -> [2, 0, 1]
  // datasets notes' example: 57 + 8 = 65 -> input [9, 7, 12, 10, 1], target [7, 8, 1].
  AlgorithmicExample add2 = make_addition_example({7, 5}, {8});
  EXPECT_EQ(add2.input, (Ids{9, 7, 12, 10, 1}));
  EXPECT_EQ(add2.target, (Ids{7, 8, 1}));
  // 0 + 0 = 0 keeps one digit.
  EXPECT_EQ(make_addition_example({0}, {0}).target, (Ids{2, 1}));
  AlgorithmicExample rev = make_reverse_example({1, 2, 3});
  EXPECT_EQ(rev.input, (Ids{3, 4, 5, 1}));
  EXPECT_EQ(rev.target, (Ids{5, 4, 3, 1}));
  AlgorithmicExample copy = make_copy_example({4, 0});
  EXPECT_EQ(copy.input, (Ids{6, 2, 1}));
  EXPECT_EQ(copy.target, (Ids{6, 2, 1}));
  expect_error([] { make_copy_example({}); }, "copy input has no digits");
  expect_error([] { make_addition_example({1}, {-1}); }, "addend 2 digit 0 is -1");
}

TEST(AlgorithmicTasks, LongAdditionCarriesThroughEveryDigit) {
  std::vector<int> nines(60, 9);  // 10^60 - 1, beyond any integer type
  std::vector<int> want(60, 0);
  want.push_back(1);
  EXPECT_EQ(add_little_endian(nines, {1}), want);
  EXPECT_EQ(add_little_endian({1}, nines), want);
  EXPECT_EQ(add_little_endian({5, 0, 0}, {5}), (std::vector<int>{0, 1}));  // leading zeros dropped
  // Against integers on a grid of small numbers.
  for (uint64_t a = 0; a < 1200; a += 7)
    for (uint64_t b = 0; b < 1200; b += 13)
      ASSERT_EQ(add_little_endian(from_int(a), from_int(b)), from_int(a + b));
}

TEST(AlgorithmicTasks, ParsesTaskNames) {
  EXPECT_EQ(parse_algorithmic_task("copy"), AlgorithmicTask::Copy);
  EXPECT_EQ(parse_algorithmic_task("reverse"), AlgorithmicTask::Reverse);
  EXPECT_EQ(parse_algorithmic_task("addition"), AlgorithmicTask::Addition);
  EXPECT_EQ(to_string(AlgorithmicTask::Reverse), "reverse");
  expect_error([] { parse_algorithmic_task("sort"); },
               {"unknown task 'sort'", "expected copy, reverse or addition"});
}

// -----------------------------------------------------------------------------------------------------------
// The random stream.

TEST(AlgorithmicTasks, TaskRngIsPhiloxWithTheStreamInTheCounter) {
  // Random123's known answer for Philox 4x32-10, counter 0 and key 0.
  TaskRng zero(0, 0);
  EXPECT_EQ(zero.next_u32(), 0x6627e8d5u);
  EXPECT_EQ(zero.next_u32(), 0xe169c58du);
  EXPECT_EQ(zero.next_u32(), 0xbc57ac4cu);
  EXPECT_EQ(zero.next_u32(), 0x9b00dbd8u);
  // The stream occupies counter words 2 and 3; the block counter words 0 and 1.
  TaskRng s(0x1234, 77);
  Philox4x32 want = philox4x32_10(Philox4x32{{0, 0, 77, 0}}, 0x1234, 0);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(s.next_u32(), want.v[i]);
  Philox4x32 want1 = philox4x32_10(Philox4x32{{1, 0, 77, 0}}, 0x1234, 0);
  EXPECT_EQ(s.next_u32(), want1.v[0]);

  TaskRng r(5, 0);
  std::vector<int> count(7, 0);
  for (int i = 0; i < 70000; ++i) {
    int64_t v = r.uniform_int(-3, 3);
    ASSERT_GE(v, -3);
    ASSERT_LE(v, 3);
    ++count[static_cast<size_t>(v + 3)];
  }
  for (int c : count) EXPECT_NEAR(c, 10000, 500);  // sd ~ 93
  EXPECT_EQ(r.uniform_int(4, 4), 4);
  expect_error([&] { r.uniform_int(2, 1); }, "empty range [2, 1]");
}

// -----------------------------------------------------------------------------------------------------------
// Generated datasets.

TEST(AlgorithmicTasks, CopyAndReverseFollowT2tLengthsAndDigits) {
  for (AlgorithmicTask task : {AlgorithmicTask::Copy, AlgorithmicTask::Reverse}) {
    AlgorithmicDataset data(task, 20000, 40, 11);
    std::vector<int> by_length(41, 0);
    std::vector<int> by_digit(10, 0);
    for (int64_t i = 0; i < data.size(); ++i) {
      const AlgorithmicExample& ex = data[i];
      int64_t len = static_cast<int64_t>(ex.input.size()) - 1;
      ASSERT_GE(len, 1);
      ASSERT_LE(len, 40);
      ++by_length[static_cast<size_t>(len)];
      ASSERT_EQ(ex.input.back(), kAlgoEos);
      ASSERT_EQ(ex.target.back(), kAlgoEos);
      ASSERT_EQ(ex.target.size(), ex.input.size());
      for (int64_t j = 0; j < len; ++j) {
        int64_t id = ex.input[static_cast<size_t>(j)];
        ASSERT_TRUE(id >= 2 && id <= 11) << "example " << i << " position " << j << " id " << id;
        ++by_digit[static_cast<size_t>(id - 2)];
        int64_t want = task == AlgorithmicTask::Copy ? id : ex.input[static_cast<size_t>(len - 1 - j)];
        ASSERT_EQ(ex.target[static_cast<size_t>(j)], want);
      }
    }
    // Uniform on 1..40: 500 expected per length (sd ~22), including both ends.
    for (int len = 1; len <= 40; ++len)
      EXPECT_NEAR(by_length[static_cast<size_t>(len)], 500, 110) << "length " << len;
    int64_t total = 0;
    for (int c : by_digit) total += c;
    for (int c : by_digit) EXPECT_NEAR(static_cast<double>(c) / static_cast<double>(total), 0.1, 0.005);
  }
  // The eval split reaches length 400.
  AlgorithmicDataset eval = AlgorithmicDataset::t2t_eval(AlgorithmicTask::Copy, 11, 3000);
  size_t longest = 0, shortest = 1000;
  for (int64_t i = 0; i < eval.size(); ++i) {
    longest = std::max(longest, eval[i].input.size() - 1);
    shortest = std::min(shortest, eval[i].input.size() - 1);
  }
  EXPECT_LE(longest, 400u);
  EXPECT_GE(longest, 395u);
  EXPECT_LE(shortest, 5u);
  EXPECT_EQ(eval.summary(), "algorithmic copy: 3000 examples, length 1..400, vocabulary 13");
}

TEST(AlgorithmicTasks, AdditionFollowsT2tRulesAndAddsCorrectly) {
  AlgorithmicDataset data = AlgorithmicDataset::t2t_train(AlgorithmicTask::Addition, 3, 20000);
  std::set<size_t> l1_seen, l2_seen;
  for (int64_t i = 0; i < data.size(); ++i) {
    const AlgorithmicExample& ex = data[i];
    ASSERT_EQ(ex.input.back(), kAlgoEos);
    ASSERT_LE(ex.input.size() - 1, 40u);
    auto sep = std::find(ex.input.begin(), ex.input.end(), kAlgoSeparator);
    ASSERT_NE(sep, ex.input.end());
    ASSERT_EQ(std::count(ex.input.begin(), ex.input.end(), kAlgoSeparator), 1);
    size_t l1 = static_cast<size_t>(sep - ex.input.begin());
    size_t l2 = ex.input.size() - 1 - l1 - 1;
    ASSERT_TRUE(l1 >= 1 && l1 <= 20) << l1;
    ASSERT_TRUE(l2 >= 1 && l2 <= 40 - l1 - 1) << l1 << " " << l2;
    l1_seen.insert(l1);
    l2_seen.insert(l2);
    std::vector<int> n1 = digits_of(ex.input, 0, l1), n2 = digits_of(ex.input, l1 + 1, l1 + 1 + l2);
    for (const auto* n : {&n1, &n2}) {
      for (int d : *n) ASSERT_TRUE(d >= 0 && d <= 9);
      if (n->size() > 1) {
        ASSERT_NE(n->back(), 0) << "leading zero in example " << i;
      }
    }
    // Independent check: as integers (l1 <= 20, l2 <= 38 digits).
    std::vector<int> want = from_int(to_int(n1) + to_int(n2));
    ASSERT_EQ(ex.target, encode_digits(want)) << "example " << i;
  }
  EXPECT_EQ(*l1_seen.begin(), 1u);
  EXPECT_EQ(*l1_seen.rbegin(), 20u);
  EXPECT_EQ(l1_seen.size(), 20u);
  EXPECT_EQ(*l2_seen.begin(), 1u);
  EXPECT_EQ(*l2_seen.rbegin(), 38u);  // only with l1 = 1

  // Length 400: the rules hold; targets are checked against integers where both numbers are short.
  AlgorithmicDataset eval = AlgorithmicDataset::t2t_eval(AlgorithmicTask::Addition, 3, 2000);
  int checked = 0;
  size_t longest = 0;
  for (int64_t i = 0; i < eval.size(); ++i) {
    const AlgorithmicExample& ex = eval[i];
    ASSERT_LE(ex.input.size() - 1, 400u);
    longest = std::max(longest, ex.input.size() - 1);
    size_t l1 =
        static_cast<size_t>(std::find(ex.input.begin(), ex.input.end(), kAlgoSeparator) - ex.input.begin());
    size_t l2 = ex.input.size() - 2 - l1;
    ASSERT_TRUE(l1 >= 1 && l1 <= 200);
    std::vector<int> n1 = digits_of(ex.input, 0, l1), n2 = digits_of(ex.input, l1 + 1, l1 + 1 + l2);
    for (const auto* n : {&n1, &n2}) {
      if (n->size() > 1) {
        ASSERT_NE(n->back(), 0) << "leading zero in eval example " << i;
      }
    }
    if (l1 <= 38 && l2 <= 37) {
      ASSERT_EQ(ex.target, encode_digits(from_int(to_int(n1) + to_int(n2))));
      ++checked;
    }
  }
  EXPECT_GT(checked, 20);
  EXPECT_GE(longest, 350u);
  expect_error([] { AlgorithmicDataset(AlgorithmicTask::Addition, 1, 2, 0); },
               "max_length 2 is below the minimum 3");
}

TEST(AlgorithmicTasks, SameSeedSameDataDifferentSeedOrSplitDiffers) {
  auto all_ids = [](const AlgorithmicDataset& d) {
    Ids out;
    for (int64_t i = 0; i < d.size(); ++i) {
      out.insert(out.end(), d[i].input.begin(), d[i].input.end());
      out.insert(out.end(), d[i].target.begin(), d[i].target.end());
    }
    return out;
  };
  for (AlgorithmicTask task : {AlgorithmicTask::Copy, AlgorithmicTask::Reverse, AlgorithmicTask::Addition}) {
    AlgorithmicDataset a(task, 200, 40, 42), b(task, 200, 40, 42), c(task, 200, 40, 43),
        d(task, 200, 40, 42, 1);
    EXPECT_EQ(all_ids(a), all_ids(b));
    EXPECT_NE(all_ids(a), all_ids(c));
    EXPECT_NE(all_ids(a), all_ids(d));
    // Example i depends only on (seed, split, i): a smaller dataset is a prefix.
    AlgorithmicDataset prefix(task, 50, 40, 42);
    for (int64_t i = 0; i < 50; ++i) ASSERT_EQ(prefix[i].input, a[i].input);
    AlgorithmicExample ex = generate_algorithmic_example(task, 40, 42, 0, 137);
    EXPECT_EQ(ex.input, a[137].input);
    EXPECT_EQ(ex.target, a[137].target);
  }
  expect_error([] { AlgorithmicDataset(AlgorithmicTask::Copy, 3, 40, 1)[3]; },
               "index 3 out of range for 3 examples");
}

// -----------------------------------------------------------------------------------------------------------
// Batching, offsets, metrics.

TEST(AlgorithmicTasks, BatchPadsShiftsAndMasks) {
  std::vector<AlgorithmicExample> ex = {make_copy_example({3, 0, 7}), make_addition_example({5, 9}, {7}),
                                        make_copy_example({4})};
  Seq2SeqBatch batch = collate_seq2seq({&ex[0], &ex[1], &ex[2]});
  EXPECT_EQ(batch.inputs.shape(), (Shape{3, 5}));
  EXPECT_EQ(batch.inputs.dtype(), DType::Int64);
  EXPECT_EQ(batch.inputs.to_vector<int64_t>(), (Ids{5, 2, 9, 1, 0,    //
                                                    7, 11, 12, 9, 1,  //
                                                    6, 1, 0, 0, 0}));
  EXPECT_EQ(batch.input_padding.dtype(), DType::Bool);
  EXPECT_EQ(batch.input_padding.to_vector<bool>(), (std::vector<bool>{0, 0, 0, 0, 1,  //
                                                                      0, 0, 0, 0, 0,  //
                                                                      0, 0, 1, 1, 1}));
  EXPECT_EQ(batch.targets.shape(), (Shape{3, 4}));
  EXPECT_EQ(batch.targets.to_vector<int64_t>(), (Ids{5, 2, 9, 1,  //
                                                     4, 2, 3, 1,  //
                                                     6, 1, 0, 0}));
  EXPECT_EQ(batch.decoder_inputs.to_vector<int64_t>(), (Ids{0, 5, 2, 9,  //
                                                            0, 4, 2, 3,  //
                                                            0, 6, 0, 0}));
  EXPECT_EQ(batch.target_padding.to_vector<bool>(), (std::vector<bool>{0, 0, 0, 0,  //
                                                                       0, 0, 0, 0,  //
                                                                       0, 0, 1, 1}));
  EXPECT_EQ(batch.input_lengths, (Ids{4, 5, 2}));
  EXPECT_EQ(batch.target_lengths, (Ids{4, 4, 2}));

  // Another start token and fixed minimum shapes.
  BatchOptions opt;
  opt.start_token = 12;
  opt.min_input_length = 7;
  opt.min_target_length = 6;
  Seq2SeqBatch wide = collate_seq2seq({&ex[2]}, opt);
  EXPECT_EQ(wide.inputs.to_vector<int64_t>(), (Ids{6, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(wide.decoder_inputs.to_vector<int64_t>(), (Ids{12, 6, 0, 0, 0, 0}));
  EXPECT_EQ(wide.target_padding.to_vector<bool>(), (std::vector<bool>{0, 0, 1, 1, 1, 1}));

  // Through the dataset, by index.
  AlgorithmicDataset data(AlgorithmicTask::Reverse, 10, 40, 9);
  Seq2SeqBatch picked = data.batch({7, 2});
  int64_t t = picked.targets.size(1);
  Ids targets = picked.targets.to_vector<int64_t>();
  for (size_t j = 0; j < data[2].target.size(); ++j)
    EXPECT_EQ(targets[static_cast<size_t>(t) + j], data[2].target[j]);
  expect_error([] { collate_seq2seq({}); }, "collate_seq2seq: empty batch");
}

TEST(AlgorithmicTasks, RandomPositionOffsetsStayWithinMaxOffset) {
  std::vector<int64_t> lengths(20000, 390);
  Tensor offsets = random_position_offsets(lengths, 400, 5, 0);
  EXPECT_EQ(offsets.shape(), (Shape{20000}));
  EXPECT_EQ(offsets.dtype(), DType::Int64);
  std::vector<int> count(11, 0);
  for (int64_t o : offsets.to_vector<int64_t>()) {
    ASSERT_TRUE(o >= 0 && o <= 10) << o;
    ++count[static_cast<size_t>(o)];
  }
  for (int c : count) EXPECT_GT(c, 1500);  // ~1818 each, both ends included
  Ids mixed = random_position_offsets({5, 400, 41, 1}, 400, 8, 3).to_vector<int64_t>();
  EXPECT_LE(mixed[0], 395);
  EXPECT_EQ(mixed[1], 0);
  EXPECT_LE(mixed[2], 359);
  EXPECT_EQ(random_position_offsets(lengths, 400, 5, 0).to_vector<int64_t>(), offsets.to_vector<int64_t>());
  EXPECT_NE(random_position_offsets(lengths, 400, 5, 1).to_vector<int64_t>(), offsets.to_vector<int64_t>());
  EXPECT_NE(random_position_offsets(lengths, 400, 6, 0).to_vector<int64_t>(), offsets.to_vector<int64_t>());
  expect_error(
      [] {
        random_position_offsets({3, 401}, 400, 0);
      },
      "length 401 of row 1 does not fit in max_offset 400");
}

TEST(AlgorithmicTasks, PaddedAccuracyCountsNonPadTokensAndWholeSequences) {
  Tensor targets = tensor<int64_t>({5, 2, 9, 1,  //
                                    7, 1, 0, 0,  //
                                    4, 3, 1, 0},
                                   {3, 4});
  // Row 0 right; row 1 wrong at its EOS (padding predictions are ignored); row 2 right with junk in the
  // padding.
  Tensor pred = tensor<int64_t>({5, 2, 9, 1,  //
                                 7, 3, 5, 5,  //
                                 4, 3, 1, 9},
                                {3, 4});
  SequenceAccuracy acc = padded_accuracy(pred, targets);
  EXPECT_EQ(acc.tokens, 9);
  EXPECT_EQ(acc.tokens_correct, 8);
  EXPECT_EQ(acc.sequences, 3);
  EXPECT_EQ(acc.sequences_correct, 2);
  EXPECT_DOUBLE_EQ(acc.char_accuracy(), 8.0 / 9.0);
  EXPECT_DOUBLE_EQ(acc.sequence_accuracy(), 2.0 / 3.0);

  // Logits [B, T, V]: argmax gives the same ids.
  std::vector<float> logits(3 * 4 * kAlgoVocabSize, 0.0f);
  Ids p = pred.to_vector<int64_t>();
  for (size_t i = 0; i < p.size(); ++i) logits[i * kAlgoVocabSize + static_cast<size_t>(p[i])] = 2.5f;
  SequenceAccuracy from_logits = padded_accuracy(tensor(logits, {3, 4, kAlgoVocabSize}), targets);
  EXPECT_EQ(from_logits.tokens_correct, 8);
  EXPECT_EQ(from_logits.sequences_correct, 2);

  acc += from_logits;
  EXPECT_EQ(acc.tokens, 18);
  EXPECT_EQ(acc.sequences_correct, 4);
  EXPECT_EQ(SequenceAccuracy{}.char_accuracy(), 0.0);
  expect_error([&] { padded_accuracy(pred.narrow(1, 0, 3), targets); }, "do not match targets int64 [3, 4]");
}

// -----------------------------------------------------------------------------------------------------------
// bAbI-like generator. The replay below parses the sentences with its own rules (not the generator's tables).

namespace {

struct Fact {
  enum Kind { Move, Get, Drop } kind;
  std::string actor, place, object;
};

Fact parse_fact(const std::string& text) {
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '.') << text;
  std::istringstream in(text.substr(0, text.size() - 1));
  std::vector<std::string> w;
  for (std::string s; in >> s;) w.push_back(s);
  Fact f{Fact::Move, w.at(0), "", ""};
  size_t the = static_cast<size_t>(std::find(w.begin(), w.end(), "the") - w.begin());
  EXPECT_LT(the + 1, w.size()) << text;
  if (w.back() == "there") {
    f.kind = Fact::Get;
    f.object = w.at(the + 1);
  } else if (w.at(the - 1) == "to") {
    f.kind = Fact::Move;
    f.place = w.at(the + 1);
  } else {
    f.kind = Fact::Drop;
    f.object = w.at(the + 1);
  }
  return f;
}

struct ReplayStats {
  int questions = 0, held = 0, dropped = 0;
  std::set<std::string> actors, places, objects_asked;
};

// Replays the facts; checks the answer and the supporting facts of one question.
void check_question(const BabiQuestion& q, int task, ReplayStats& stats) {
  ++stats.questions;
  std::map<std::string, std::string> place_of;         // actor -> place
  std::map<std::string, int64_t> last_move;            // actor -> fact index
  std::map<std::string, std::string> holder, lies_at;  // object -> actor / place
  std::map<std::string, int64_t> last_touch;           // object -> fact index
  std::map<std::string, int64_t> move_before_drop;     // object -> the dropper's move index
  for (size_t i = 0; i < q.story.size(); ++i) {
    Fact f = parse_fact(q.story[i]);
    int64_t at = static_cast<int64_t>(i);
    stats.actors.insert(f.actor);
    if (f.kind == Fact::Move) {
      EXPECT_NE(place_of[f.actor], f.place) << "a move to the same place: " << q.story[i];
      place_of[f.actor] = f.place;
      last_move[f.actor] = at;
      stats.places.insert(f.place);
    } else if (f.kind == Fact::Get) {
      ASSERT_EQ(task, 2);
      ASSERT_EQ(holder.count(f.object), 0u) << "picked up while held: " << q.story[i];
      if (lies_at.count(f.object)) {
        ASSERT_EQ(lies_at[f.object], place_of[f.actor]) << "picked up elsewhere";
      }
      holder[f.object] = f.actor;
      lies_at.erase(f.object);
      last_touch[f.object] = at;
    } else {
      ASSERT_EQ(task, 2);
      ASSERT_EQ(holder[f.object], f.actor) << "dropped without holding: " << q.story[i];
      ASSERT_FALSE(place_of[f.actor].empty());
      holder.erase(f.object);
      lies_at[f.object] = place_of[f.actor];
      last_touch[f.object] = at;
      move_before_drop[f.object] = last_move[f.actor];
    }
  }
  ASSERT_TRUE(std::is_sorted(q.supporting.begin(), q.supporting.end()));
  for (int64_t s : q.supporting) ASSERT_TRUE(s >= 0 && s < static_cast<int64_t>(q.story.size()));
  const std::string prefix = "Where is ";
  ASSERT_EQ(q.question.rfind(prefix, 0), 0u) << q.question;
  std::string subject = q.question.substr(prefix.size(), q.question.size() - prefix.size() - 1);
  if (task == 1) {
    ASSERT_EQ(place_of.count(subject), 1u) << "asked about an actor who has not moved: " << subject;
    EXPECT_EQ(q.answer, place_of[subject]);
    ASSERT_EQ(q.supporting.size(), 1u);
    EXPECT_EQ(q.supporting[0], last_move[subject]);
    Fact f = parse_fact(q.story[static_cast<size_t>(q.supporting[0])]);
    EXPECT_EQ(f.actor, subject);
    EXPECT_EQ(f.place, q.answer);
    return;
  }
  ASSERT_EQ(subject.rfind("the ", 0), 0u) << q.question;
  std::string object = subject.substr(4);
  stats.objects_asked.insert(object);
  ASSERT_EQ(q.supporting.size(), 2u);
  std::string want_place;
  int64_t want_move;
  if (holder.count(object)) {
    ++stats.held;
    want_place = place_of[holder[object]];
    want_move = last_move[holder[object]];
  } else {
    ASSERT_EQ(lies_at.count(object), 1u) << "asked about an object nobody placed: " << object;
    ++stats.dropped;
    want_place = lies_at[object];
    want_move = move_before_drop[object];
  }
  EXPECT_EQ(q.answer, want_place);
  std::vector<int64_t> want = {last_touch[object], want_move};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(q.supporting, want);
  // The cited move is a move to the answer.
  Fact move = parse_fact(q.story[static_cast<size_t>(want_move)]);
  EXPECT_EQ(move.kind, Fact::Move);
  EXPECT_EQ(move.place, q.answer);
}

}  // namespace

TEST(BabiGenerator, Task1StoryShape) {
  BabiStory story = generate_babi_story(1, 7, 0);
  ASSERT_EQ(story.size(), 15u);
  for (size_t i = 0; i < story.size(); ++i) EXPECT_EQ(story[i].is_question, i % 3 == 2) << i;
  std::vector<BabiQuestion> qs = babi_questions(story);
  ASSERT_EQ(qs.size(), 5u);
  for (size_t k = 0; k < qs.size(); ++k) EXPECT_EQ(qs[k].story.size(), 2 * (k + 1));
  // File format: supporting ids are 1-based story lines (questions counted), "N text\tanswer\tids".
  std::string text = format_babi({story});
  std::istringstream lines(text);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    ASSERT_EQ(line.rfind(std::to_string(n) + " ", 0), 0u) << line;
    bool question = line.find('\t') != std::string::npos;
    EXPECT_EQ(question, n % 3 == 0) << line;
    if (question) {
      const BabiLine& l = story[static_cast<size_t>(n - 1)];
      EXPECT_EQ(line,
                std::to_string(n) + " " + l.text + "\t" + l.answer + "\t" + std::to_string(l.supporting[0]));
      // Line id s in the file is fact index s - 1 - (questions before it).
      int64_t s = l.supporting[0];
      EXPECT_EQ(qs[static_cast<size_t>(n / 3 - 1)].supporting[0], s - 1 - (s - 1) / 3);
    }
  }
  EXPECT_EQ(n, 15);
}

TEST(BabiGenerator, AnswersAndSupportingFactsAgreeWithAReplay) {
  for (int task : {1, 2}) {
    BabiDataset data = generate_babi(task, 1000, 21);
    ASSERT_EQ(data.questions.size(), 1000u);
    EXPECT_EQ(data.stories.size(), 200u);
    ReplayStats stats;
    for (const BabiQuestion& q : data.questions) {
      check_question(q, task, stats);
      if (testing::Test::HasFatalFailure()) return;
    }
    EXPECT_EQ(stats.actors.size(), 4u);
    EXPECT_EQ(stats.places.size(), 6u);
    if (task == 2) {
      EXPECT_EQ(stats.objects_asked.size(), 3u);
      EXPECT_GT(stats.held, 100);
      EXPECT_GT(stats.dropped, 100);
    }
  }
  EXPECT_EQ(generate_babi(2, 10, 21).summary(), "babi-like qa2: 10 questions in 2 stories");
  expect_error([] { generate_babi_story(3, 0, 0); }, "task 3 is not generated; tasks 1 and 2 are");
}

// The number of gtest failures check_question reports for q.
int replay_failures(const BabiQuestion& q, int task) {
  testing::TestPartResultArray results;
  {
    testing::ScopedFakeTestPartResultReporter reporter(
        testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
    ReplayStats stats;
    check_question(q, task, stats);
  }
  return results.size();
}

TEST(BabiGenerator, ReplayCatchesAWrongAnswerOrSupportingFact) {
  // The replay check itself can fail: corrupt one answer, then one supporting id.
  BabiQuestion q1 = generate_babi(1, 3, 4).questions[2];
  EXPECT_EQ(replay_failures(q1, 1), 0);
  BabiQuestion wrong = q1;
  wrong.answer = q1.answer == "kitchen" ? "office" : "kitchen";
  EXPECT_GE(replay_failures(wrong, 1), 1);
  wrong = q1;
  wrong.supporting[0] = (wrong.supporting[0] + 1) % static_cast<int64_t>(wrong.story.size());
  EXPECT_GE(replay_failures(wrong, 1), 1);

  BabiQuestion q2 = generate_babi(2, 3, 4).questions[2];
  EXPECT_EQ(replay_failures(q2, 2), 0);
  wrong = q2;
  wrong.supporting[0] = wrong.supporting[0] == 0 ? 1 : wrong.supporting[0] - 1;
  std::sort(wrong.supporting.begin(), wrong.supporting.end());
  EXPECT_GE(replay_failures(wrong, 2), 1);
}

TEST(BabiGenerator, DeterministicFromTheSeed) {
  BabiSplits a = babi_1k(2, 5), b = babi_1k(2, 5), c = babi_1k(2, 6);
  EXPECT_EQ(a.train.questions.size(), 1000u);
  EXPECT_EQ(a.test.questions.size(), 1000u);
  EXPECT_EQ(format_babi(a.train.stories), format_babi(b.train.stories));
  EXPECT_EQ(format_babi(a.test.stories), format_babi(b.test.stories));
  EXPECT_NE(format_babi(a.train.stories), format_babi(c.train.stories));
  EXPECT_NE(format_babi(a.train.stories), format_babi(a.test.stories));
  // A partial last story: 7 questions from 2 stories.
  BabiDataset seven = generate_babi(1, 7, 5);
  EXPECT_EQ(seven.stories.size(), 2u);
  EXPECT_EQ(seven.questions.size(), 7u);
}

TEST(BabiGenerator, VocabularyRoundTrip) {
  EXPECT_EQ(tokenize_babi("Where is Mary?"), (std::vector<std::string>{"where", "is", "mary", "?"}));
  EXPECT_EQ(tokenize_babi("  John picked up the milk there. "),
            (std::vector<std::string>{"john", "picked", "up", "the", "milk", "there", "."}));
  BabiVocab vocab = BabiVocab::for_babi();
  EXPECT_EQ(vocab.word(BabiVocab::kPad), "<pad>");
  EXPECT_EQ(vocab.word(BabiVocab::kSep), "<sep>");
  EXPECT_EQ(vocab.word(BabiVocab::kUnk), "<unk>");
  // 4 actors, 6 places, 3 objects; moved went back to journeyed travelled; got grabbed picked up took;
  // dropped discarded put down left; the there where is . ? (to counted once)
  EXPECT_EQ(vocab.size(), 3 + 4 + 6 + 3 + 6 + 5 + 5 + 6);
  for (int task : {1, 2}) {
    BabiDataset data = generate_babi(task, 200, 9);
    BabiVocab built = BabiVocab::build(data.questions);
    for (int64_t i = 0; i < built.size(); ++i) EXPECT_TRUE(vocab.contains(built.word(i))) << built.word(i);
    for (const BabiQuestion& q : data.questions) {
      std::vector<std::string> texts = q.story;
      texts.push_back(q.question);
      for (const std::string& s : texts) {
        Ids ids = vocab.encode(s);
        ASSERT_EQ(std::count(ids.begin(), ids.end(), BabiVocab::kUnk), 0) << s;
        std::string joined;
        for (const std::string& w : tokenize_babi(s)) joined += (joined.empty() ? "" : " ") + w;
        ASSERT_EQ(vocab.decode(ids), joined);
      }
    }
  }
  EXPECT_EQ(vocab.id("zebra"), BabiVocab::kUnk);
  EXPECT_EQ(vocab.encode("Mary saw a zebra.")[2], BabiVocab::kUnk);
  expect_error([&] { vocab.word(vocab.size()); }, "out of range");
}

TEST(BabiGenerator, EncodesAndBatches) {
  BabiVocab vocab = BabiVocab::for_babi();
  BabiDataset data = generate_babi(1, 2, 3);
  BabiEncoded e0 = encode_babi(data.questions[0], vocab), e1 = encode_babi(data.questions[1], vocab);
  ASSERT_EQ(e0.facts.size(), 2u);
  ASSERT_EQ(e1.facts.size(), 4u);
  EXPECT_EQ(vocab.decode(e0.facts[0]), vocab.decode(vocab.encode(data.questions[0].story[0])));
  EXPECT_EQ(std::count(e1.story.begin(), e1.story.end(), BabiVocab::kSep), 4);
  EXPECT_EQ(e1.story.back(), BabiVocab::kSep);
  EXPECT_EQ(vocab.word(e0.answer), data.questions[0].answer);
  EXPECT_EQ(e0.question.back(), vocab.id("?"));

  BabiBatch batch = collate_babi({&e0, &e1});
  int64_t s = static_cast<int64_t>(e1.story.size());
  EXPECT_EQ(batch.story.shape(), (Shape{2, s}));
  Ids story = batch.story.to_vector<int64_t>();
  std::vector<bool> story_pad = batch.story_padding.to_vector<bool>();
  for (int64_t j = 0; j < s; ++j) {
    bool real = j < static_cast<int64_t>(e0.story.size());
    EXPECT_EQ(story_pad[static_cast<size_t>(j)], !real);
    EXPECT_EQ(story[static_cast<size_t>(j)], real ? e0.story[static_cast<size_t>(j)] : BabiVocab::kPad);
    EXPECT_FALSE(story_pad[static_cast<size_t>(s + j)]);
  }
  EXPECT_EQ(batch.fact_padding.to_vector<bool>(), (std::vector<bool>{0, 0, 1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(batch.facts.size(0), 2);
  EXPECT_EQ(batch.facts.size(1), 4);
  Tensor fact = batch.facts.select(0, 1).select(0, 3);
  Ids want = e1.facts[3];
  want.resize(static_cast<size_t>(batch.facts.size(2)), BabiVocab::kPad);
  EXPECT_EQ(fact.to_vector<int64_t>(), want);
  EXPECT_EQ(batch.answers.to_vector<int64_t>(), (Ids{e0.answer, e1.answer}));
  EXPECT_EQ(batch.question.shape(), (Shape{2, 4}));  // "where is mary ?"
  EXPECT_EQ(batch.question_padding.to_vector<bool>(), (std::vector<bool>(8, false)));

  BabiQuestion bad = data.questions[0];
  bad.answer = "nowhere";
  expect_error([&] { encode_babi(bad, vocab); }, "the answer 'nowhere' is not one word of the vocabulary");
}
