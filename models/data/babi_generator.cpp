// Generated bAbI-like data (not the released bAbI set): see babi_generator.h.
#include "loom/models/data/babi_generator.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>
#include <sstream>

#include "loom/models/data/algorithmic_tasks.h"
#include "loom/ops/factory.h"

namespace loom::data {
namespace {

constexpr std::array<const char*, 4> kActors = {"Mary", "John", "Daniel", "Sandra"};
constexpr std::array<const char*, 6> kPlaces = {"bathroom", "bedroom", "garden",
                                                "hallway",  "kitchen", "office"};
constexpr std::array<const char*, 5> kMoveVerbs = {"moved to", "went to", "went back to", "journeyed to",
                                                   "travelled to"};
constexpr std::array<const char*, 3> kObjects = {"apple", "football", "milk"};
constexpr std::array<const char*, 4> kGetVerbs = {"got", "grabbed", "picked up", "took"};
constexpr std::array<const char*, 4> kDropVerbs = {"dropped", "discarded", "put down", "left"};
constexpr int kBlocks = 5;
constexpr int kEventsPerBlock = 2;
constexpr int kMaxExtraEvents = 1000;  // task 2: a block with no answerable object after this many is a bug

template <size_t N>
int pick(TaskRng& rng, const std::array<const char*, N>& /*choices*/) {
  return static_cast<int>(rng.uniform_int(0, static_cast<int64_t>(N) - 1));
}

// The world, with the story line that last set each fact (1-based line numbers, 0 = none).
struct World {
  std::array<int, kActors.size()> place;           // -1: not known yet
  std::array<int64_t, kActors.size()> moved;       // the actor's last move line
  std::array<int, kObjects.size()> holder;         // actor holding the object, -1: none
  std::array<int, kObjects.size()> lies_at;        // place where it was dropped, -1: never dropped (or held)
  std::array<int64_t, kObjects.size()> touched;    // the object's last get/drop line
  std::array<int64_t, kObjects.size()> placed_by;  // for a dropped object: the dropper's move before the drop
  World() {
    place.fill(-1);
    moved.fill(0);
    holder.fill(-1);
    lies_at.fill(-1);
    touched.fill(0);
    placed_by.fill(0);
  }
};

class StoryWriter {
 public:
  StoryWriter(int task, uint64_t seed, uint64_t stream) : task_(task), rng_(seed, stream) {}

  BabiStory write() {
    for (int block = 0; block < kBlocks; ++block) {
      for (int e = 0; e < kEventsPerBlock; ++e) event();
      if (task_ == 1) {
        ask_about_actor();
      } else {
        int extra = 0;
        while (answerable_objects().empty()) {
          LOOM_CHECK(++extra <= kMaxExtraEvents, "babi generator: no object became answerable");
          event();
        }
        ask_about_object();
      }
    }
    return std::move(story_);
  }

 private:
  int64_t next_line() const { return static_cast<int64_t>(story_.size()) + 1; }
  void add_fact(std::string text) { story_.push_back(BabiLine{std::move(text), false, "", {}}); }

  void event() {
    if (task_ == 1) return move(pick(rng_, kActors));
    int actor = pick(rng_, kActors);
    int64_t kind = rng_.uniform_int(0, 3);  // 0, 1: move; 2: get; 3: drop (a move when impossible)
    if (kind == 2) {
      std::vector<int> free;
      for (int o = 0; o < static_cast<int>(kObjects.size()); ++o)
        if (world_.holder[o] < 0 && (world_.lies_at[o] < 0 || world_.lies_at[o] == world_.place[actor]))
          free.push_back(o);
      if (!free.empty()) return get(actor, free[static_cast<size_t>(rng_.uniform_int(0, ssize(free) - 1))]);
    } else if (kind == 3 && world_.place[actor] >= 0) {
      std::vector<int> held;
      for (int o = 0; o < static_cast<int>(kObjects.size()); ++o)
        if (world_.holder[o] == actor) held.push_back(o);
      if (!held.empty()) return drop(actor, held[static_cast<size_t>(rng_.uniform_int(0, ssize(held) - 1))]);
    }
    move(actor);
  }

  static int64_t ssize(const std::vector<int>& v) { return static_cast<int64_t>(v.size()); }

  void move(int actor) {
    // A new place: uniform over the places other than the current one.
    int place = static_cast<int>(rng_.uniform_int(0, world_.place[actor] < 0 ? 5 : 4));
    if (world_.place[actor] >= 0 && place >= world_.place[actor]) ++place;
    int verb = pick(rng_, kMoveVerbs);
    world_.place[actor] = place;
    world_.moved[actor] = next_line();
    add_fact(detail::concat(kActors[actor], " ", kMoveVerbs[verb], " the ", kPlaces[place], "."));
  }

  void get(int actor, int object) {
    int verb = pick(rng_, kGetVerbs);
    world_.holder[object] = actor;
    world_.lies_at[object] = -1;
    world_.touched[object] = next_line();
    add_fact(detail::concat(kActors[actor], " ", kGetVerbs[verb], " the ", kObjects[object], " there."));
  }

  void drop(int actor, int object) {
    int verb = pick(rng_, kDropVerbs);
    world_.holder[object] = -1;
    world_.lies_at[object] = world_.place[actor];
    world_.touched[object] = next_line();
    world_.placed_by[object] = world_.moved[actor];
    add_fact(detail::concat(kActors[actor], " ", kDropVerbs[verb], " the ", kObjects[object], "."));
  }

  void ask(std::string question, int place, std::vector<int64_t> supporting) {
    std::sort(supporting.begin(), supporting.end());
    story_.push_back(BabiLine{std::move(question), true, kPlaces[place], std::move(supporting)});
  }

  void ask_about_actor() {
    std::vector<int> moved;
    for (int a = 0; a < static_cast<int>(kActors.size()); ++a)
      if (world_.place[a] >= 0) moved.push_back(a);
    int actor = moved[static_cast<size_t>(rng_.uniform_int(0, ssize(moved) - 1))];
    ask(detail::concat("Where is ", kActors[actor], "?"), world_.place[actor], {world_.moved[actor]});
  }

  // Objects whose place the story determines: held by an actor who has moved, or dropped.
  std::vector<int> answerable_objects() const {
    std::vector<int> out;
    for (int o = 0; o < static_cast<int>(kObjects.size()); ++o)
      if ((world_.holder[o] >= 0 && world_.place[world_.holder[o]] >= 0) || world_.lies_at[o] >= 0)
        out.push_back(o);
    return out;
  }

  void ask_about_object() {
    std::vector<int> candidates = answerable_objects();
    int o = candidates[static_cast<size_t>(rng_.uniform_int(0, ssize(candidates) - 1))];
    std::string q = detail::concat("Where is the ", kObjects[o], "?");
    if (world_.holder[o] >= 0) {
      int actor = world_.holder[o];
      ask(q, world_.place[actor], {world_.touched[o], world_.moved[actor]});
    } else {
      ask(q, world_.lies_at[o], {world_.touched[o], world_.placed_by[o]});
    }
  }

  int task_;
  TaskRng rng_;
  World world_;
  BabiStory story_;
};

}  // namespace

BabiStory generate_babi_story(int task, uint64_t seed, uint64_t stream) {
  LOOM_CHECK(task == 1 || task == 2, "babi generator: task ", task, " is not generated; tasks 1 and 2 are");
  return StoryWriter(task, seed, stream).write();
}

std::vector<BabiQuestion> babi_questions(const BabiStory& story) {
  std::vector<BabiQuestion> out;
  std::vector<std::string> facts;
  std::vector<int64_t> fact_index(story.size() + 1, -1);  // 1-based line -> index into facts
  for (size_t i = 0; i < story.size(); ++i) {
    const BabiLine& line = story[i];
    if (!line.is_question) {
      fact_index[i + 1] = static_cast<int64_t>(facts.size());
      facts.push_back(line.text);
      continue;
    }
    BabiQuestion q{facts, line.text, line.answer, {}};
    for (int64_t s : line.supporting) {
      LOOM_CHECK(s >= 1 && s <= static_cast<int64_t>(i) && fact_index[static_cast<size_t>(s)] >= 0,
                 "babi_questions: question on line ", i + 1, " cites line ", s,
                 ", which is not an earlier fact");
      q.supporting.push_back(fact_index[static_cast<size_t>(s)]);
    }
    out.push_back(std::move(q));
  }
  return out;
}

std::string format_babi(const std::vector<BabiStory>& stories) {
  std::ostringstream os;
  for (const BabiStory& story : stories)
    for (size_t i = 0; i < story.size(); ++i) {
      const BabiLine& line = story[i];
      os << i + 1 << ' ' << line.text;
      if (line.is_question) {
        os << '\t' << line.answer << '\t';
        for (size_t k = 0; k < line.supporting.size(); ++k) os << (k ? " " : "") << line.supporting[k];
      }
      os << '\n';
    }
  return os.str();
}

std::string BabiDataset::summary() const {
  return detail::concat("babi-like qa", task, ": ", questions.size(), " questions in ", stories.size(),
                        " stories");
}

BabiDataset generate_babi(int task, int64_t num_questions, uint64_t seed, uint64_t split) {
  LOOM_CHECK(num_questions >= 0, "generate_babi: negative number of questions ", num_questions);
  LOOM_CHECK(split < (uint64_t{1} << 24), "generate_babi: split ", split, " out of range");
  BabiDataset data;
  data.task = task;
  for (uint64_t i = 0; static_cast<int64_t>(data.questions.size()) < num_questions; ++i) {
    data.stories.push_back(generate_babi_story(task, seed, (split << 40) | i));
    for (BabiQuestion& q : babi_questions(data.stories.back()))
      if (static_cast<int64_t>(data.questions.size()) < num_questions) data.questions.push_back(std::move(q));
  }
  return data;
}

BabiSplits babi_1k(int task, uint64_t seed, int64_t train_questions, int64_t test_questions) {
  return {generate_babi(task, train_questions, seed, 0), generate_babi(task, test_questions, seed, 1)};
}

std::vector<std::string> tokenize_babi(const std::string& text) {
  std::vector<std::string> tokens;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) tokens.push_back(std::move(word));
    word.clear();
  };
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isspace(u)) {
      flush();
    } else if (std::ispunct(u)) {
      flush();
      tokens.emplace_back(1, c);
    } else {
      word.push_back(static_cast<char>(std::tolower(u)));
    }
  }
  flush();
  return tokens;
}

BabiVocab::BabiVocab(std::vector<std::string> words) {
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  words_ = {"<pad>", "<sep>", "<unk>"};
  for (std::string& w : words) {
    LOOM_CHECK(!w.empty(), "BabiVocab: empty word");
    if (w == "<pad>" || w == "<sep>" || w == "<unk>") continue;
    words_.push_back(std::move(w));
  }
  for (size_t i = 0; i < words_.size(); ++i) ids_[words_[i]] = static_cast<int64_t>(i);
}

BabiVocab BabiVocab::for_babi() {
  std::vector<std::string> words;
  auto add = [&](const std::string& text) {
    for (std::string& w : tokenize_babi(text)) words.push_back(std::move(w));
  };
  for (const char* a : kActors) add(a);
  for (const char* p : kPlaces) add(p);
  for (const char* v : kMoveVerbs) add(v);
  for (const char* o : kObjects) add(o);
  for (const char* v : kGetVerbs) add(v);
  for (const char* v : kDropVerbs) add(v);
  add("the there. Where is?");
  return BabiVocab(std::move(words));
}

BabiVocab BabiVocab::build(const std::vector<BabiQuestion>& questions) {
  std::vector<std::string> words;
  auto add = [&](const std::string& text) {
    for (std::string& w : tokenize_babi(text)) words.push_back(std::move(w));
  };
  for (const BabiQuestion& q : questions) {
    for (const std::string& s : q.story) add(s);
    add(q.question);
    add(q.answer);
  }
  return BabiVocab(std::move(words));
}

int64_t BabiVocab::id(const std::string& word) const {
  auto it = ids_.find(word);
  return it == ids_.end() ? kUnk : it->second;
}

const std::string& BabiVocab::word(int64_t id) const {
  LOOM_CHECK(id >= 0 && id < size(), "BabiVocab::word: id ", id, " out of range for ", size(), " words");
  return words_[static_cast<size_t>(id)];
}

std::vector<int64_t> BabiVocab::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const std::string& w : tokenize_babi(text)) ids.push_back(id(w));
  return ids;
}

std::string BabiVocab::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out.push_back(' ');
    out += word(ids[i]);
  }
  return out;
}

BabiEncoded encode_babi(const BabiQuestion& question, const BabiVocab& vocab) {
  BabiEncoded enc;
  for (const std::string& fact : question.story) {
    enc.facts.push_back(vocab.encode(fact));
    enc.story.insert(enc.story.end(), enc.facts.back().begin(), enc.facts.back().end());
    enc.story.push_back(BabiVocab::kSep);
  }
  enc.question = vocab.encode(question.question);
  std::vector<std::string> answer = tokenize_babi(question.answer);
  LOOM_CHECK(answer.size() == 1 && vocab.contains(answer[0]), "encode_babi: the answer '", question.answer,
             "' is not one word of the vocabulary (", vocab.size(), " words)");
  enc.answer = vocab.id(answer[0]);
  enc.supporting = question.supporting;
  return enc;
}

BabiBatch collate_babi(const std::vector<const BabiEncoded*>& examples) {
  LOOM_CHECK(!examples.empty(), "collate_babi: empty batch");
  int64_t b = static_cast<int64_t>(examples.size());
  // At least one position everywhere, so a question with no facts still gives a well-formed (all-padding)
  // row.
  int64_t s = 1, f = 1, w = 1, q = 1;
  for (const BabiEncoded* ex : examples) {
    LOOM_CHECK(ex != nullptr, "collate_babi: null example");
    s = std::max(s, static_cast<int64_t>(ex->story.size()));
    f = std::max(f, static_cast<int64_t>(ex->facts.size()));
    for (const auto& fact : ex->facts) w = std::max(w, static_cast<int64_t>(fact.size()));
    q = std::max(q, static_cast<int64_t>(ex->question.size()));
  }
  std::vector<int64_t> story(static_cast<size_t>(b * s), BabiVocab::kPad),
      facts(static_cast<size_t>(b * f * w), BabiVocab::kPad),
      question(static_cast<size_t>(b * q), BabiVocab::kPad), answers;
  std::vector<bool> story_padding(static_cast<size_t>(b * s), true),
      fact_padding(static_cast<size_t>(b * f), true), question_padding(static_cast<size_t>(b * q), true);
  for (int64_t i = 0; i < b; ++i) {
    const BabiEncoded& ex = *examples[static_cast<size_t>(i)];
    for (size_t j = 0; j < ex.story.size(); ++j) {
      story[static_cast<size_t>(i * s) + j] = ex.story[j];
      story_padding[static_cast<size_t>(i * s) + j] = false;
    }
    for (size_t k = 0; k < ex.facts.size(); ++k) {
      fact_padding[static_cast<size_t>(i * f) + k] = false;
      for (size_t j = 0; j < ex.facts[k].size(); ++j)
        facts[static_cast<size_t>((i * f + static_cast<int64_t>(k)) * w) + j] = ex.facts[k][j];
    }
    for (size_t j = 0; j < ex.question.size(); ++j) {
      question[static_cast<size_t>(i * q) + j] = ex.question[j];
      question_padding[static_cast<size_t>(i * q) + j] = false;
    }
    answers.push_back(ex.answer);
  }
  BabiBatch batch;
  batch.story = tensor(story, {b, s});
  batch.story_padding = tensor(story_padding, {b, s});
  batch.facts = tensor(facts, {b, f, w});
  batch.fact_padding = tensor(fact_padding, {b, f});
  batch.question = tensor(question, {b, q});
  batch.question_padding = tensor(question_padding, {b, q});
  batch.answers = tensor(answers);
  return batch;
}

}  // namespace loom::data
