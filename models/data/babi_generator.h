#pragma once
// GENERATED bAbI-LIKE DATA, NOT the released Facebook bAbI set (tasks_1-20_v1-2, which is not available
// offline). A small world simulation in the spirit of bAbI tasks 1 and 2 (Weston et al. 2015), with bAbI's
// vocabulary and file format, for the Universal Transformer's bAbI experiments; results on it compare with
// the paper's table only qualitatively (error %, a task "fails" above 5%), never digit for digit.
//
// Task 1 (single supporting fact): actors Mary, John, Daniel, Sandra move between bathroom, bedroom, garden,
// hallway, kitchen, office. A story is 5 blocks of (2 moves, 1 question "Where is ACTOR?") about an actor who
// has moved so far, picked uniformly; the answer is that actor's latest place, supported by that move. A move
// always changes the actor's place.
// Task 2 (two supporting facts): the same moves plus "ACTOR got/grabbed/picked up/took the OBJ there." and
// "ACTOR dropped/discarded/put down/left the OBJ." over apple, football, milk, and "Where is the OBJ?". An
// actor picks up only an object nobody holds that lies where the actor is (or was never put anywhere), and
// drops only after having moved, so every object's place is determined. A block is 2 events, then more events
// while no object's place is known, then a question about an object whose place is known, picked uniformly;
// the answer is that place, supported by the object's last get/drop and its carrier's move that placed it.
//
// Everything is drawn from TaskRng (models/data/algorithmic_tasks.h): story i of split s under a seed uses
// stream (s << 40) | i, so the data is identical on every platform.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::data {

// One numbered line of a story, as in bAbI's files.
struct BabiLine {
  std::string text;  // "Mary moved to the bathroom." or "Where is Mary?"
  bool is_question = false;
  std::string answer;               // questions only
  std::vector<int64_t> supporting;  // questions only: 1-based line numbers of the story, ascending
};
using BabiStory = std::vector<BabiLine>;

// One question with the facts before it.
struct BabiQuestion {
  std::vector<std::string>
      story;  // the story's facts up to the question, in order (earlier questions left out)
  std::string question;
  std::string answer;
  std::vector<int64_t> supporting;  // 0-based indices into story, ascending
};

// Story `stream` of task 1 or 2 under `seed`.
BabiStory generate_babi_story(int task, uint64_t seed, uint64_t stream);
// The story's questions, each with the facts before it.
std::vector<BabiQuestion> babi_questions(const BabiStory& story);
// bAbI's text format: "N text" for facts, "N question\tanswer\tids" for questions, lines numbered from 1 in
// each story.
std::string format_babi(const std::vector<BabiStory>& stories);

struct BabiDataset {
  int task = 1;
  std::vector<BabiStory> stories;
  std::vector<BabiQuestion> questions;
  // "babi-like qa1: 1000 questions in 200 stories".
  std::string summary() const;
};

// Stories of split `split` (0, 1, ...) until num_questions questions (the last story may contribute only its
// first few).
BabiDataset generate_babi(int task, int64_t num_questions, uint64_t seed, uint64_t split = 0);

struct BabiSplits {
  BabiDataset train, test;
};
// bAbI's 1K setting: 1,000 train questions (split 0) and 1,000 test questions (split 1).
BabiSplits babi_1k(int task, uint64_t seed, int64_t train_questions = 1000, int64_t test_questions = 1000);

// Lower-cases ASCII letters, splits on whitespace and makes each punctuation character its own token:
// "Where is Mary?" -> {"where", "is", "mary", "?"}.
std::vector<std::string> tokenize_babi(const std::string& text);

// Word ids: PAD 0, the sentence separator "<sep>" 1, "<unk>" 2, then the words sorted. Unlike data::TextVocab
// (word_vocab.h, frequency-ranked, built on a training split) it has a sentence separator and can hold the
// generator's whole fixed lexicon, so ids do not depend on which stories were drawn.
class BabiVocab {
 public:
  static constexpr int64_t kPad = 0, kSep = 1, kUnk = 2;
  explicit BabiVocab(std::vector<std::string> words);
  // Every word the generator can write in tasks 1 and 2, so ids do not depend on the sample drawn.
  static BabiVocab for_babi();
  // The words of these questions (stories, questions and answers).
  static BabiVocab build(const std::vector<BabiQuestion>& questions);

  int64_t size() const { return static_cast<int64_t>(words_.size()); }
  // kUnk for a word not in the vocabulary.
  int64_t id(const std::string& word) const;
  bool contains(const std::string& word) const { return ids_.count(word) != 0; }
  const std::string& word(int64_t id) const;
  std::vector<int64_t> encode(const std::string& text) const;
  // Words joined by single spaces (the tokens of the text encode() was given, when no word was unknown).
  std::string decode(const std::vector<int64_t>& ids) const;

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, int64_t> ids_;
};

// A question in ids.
struct BabiEncoded {
  std::vector<std::vector<int64_t>> facts;  // one id list per story fact
  std::vector<int64_t> story;               // the facts flattened, each followed by <sep>
  std::vector<int64_t> question;
  int64_t answer = 0;               // the answer word's id (an unknown answer is an error)
  std::vector<int64_t> supporting;  // as BabiQuestion::supporting
};
BabiEncoded encode_babi(const BabiQuestion& question, const BabiVocab& vocab);

// A padded batch; masks are true at padding (loom's convention). facts is the UT paper's fact-level layout
// (each fact a row of word ids, for a sum of position-masked word embeddings per fact); story is the flat
// one.
struct BabiBatch {
  Tensor story, story_padding;        // int64 [B, S] (PAD 0), bool [B, S]
  Tensor facts, fact_padding;         // int64 [B, F, W] (PAD 0), bool [B, F] (true = no fact in that slot)
  Tensor question, question_padding;  // int64 [B, Q], bool [B, Q]
  Tensor answers;                     // int64 [B]
};
BabiBatch collate_babi(const std::vector<const BabiEncoded*>& examples);

}  // namespace loom::data
