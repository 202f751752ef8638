#include "support/driver_fixture.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <system_error>

#include "loom/loom.h"

namespace loom::test {

namespace {

// The scratch directories this process made, removed when it exits normally.
struct ScratchDirs {
  std::vector<std::filesystem::path> made;
  ~ScratchDirs() {
    for (const auto& p : made) {
      std::error_code ignored;
      std::filesystem::remove_all(p, ignored);
    }
  }
};
ScratchDirs scratch_dirs;

}  // namespace

std::filesystem::path scratch_dir(const std::string& prefix, const std::string& name) {
  // The process id keeps two runs of one suite apart: ctest runs the emulated test_models_cuda under two
  // schedules at once, and with one directory each run's drivers deleted the other's checkpoints.
  std::filesystem::path p =
      std::filesystem::temp_directory_path() / (prefix + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  scratch_dirs.made.push_back(p);
  return p;
}

std::string write_small_corpus(const std::filesystem::path& dir) {
  std::string path = (dir / "corpus.txt").string();
  std::ofstream out(path);
  const char* lines[] = {"in the beginning was the word, and the word was with the loom.\n",
                         "and the loom wove the thread, and the thread held the cloth.\n",
                         "the cloth was good, and the weaver rested on the seventh day.\n"};
  for (int i = 0; i < 400; ++i) out << lines[(i * 7) % 3];
  return path;
}

std::vector<std::string> lines_with(const std::filesystem::path& file, const std::string& needle) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

double json_field(const std::string& json_line, const std::string& key) {
  const size_t at = json_line.find("\"" + key + "\":");
  if (at == std::string::npos) {
    ADD_FAILURE() << key << " missing in " << json_line;
    return NAN;
  }
  return std::stod(json_line.substr(at + key.size() + 3));
}

void expect_identical_checkpoints(const std::filesystem::path& a, const std::filesystem::path& b,
                                  size_t min_tensors) {
  auto first = load_safetensors(a.string());
  auto second = load_safetensors(b.string());
  ASSERT_EQ(first.size(), second.size());
  ASSERT_GT(first.size(), min_tensors);
  for (const auto& [name, t] : first) {
    ASSERT_TRUE(second.count(name)) << name;
    EXPECT_TRUE(allclose(t, second.at(name), 0, 0)) << name << " differs after resuming";
  }
}

}  // namespace loom::test
