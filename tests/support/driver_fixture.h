#pragma once
// What the driver tests share: a fresh scratch directory and a small training text.
#include <filesystem>
#include <string>
#include <vector>

namespace loom::test {

// An empty directory <tmp>/<prefix><name>_<process id>, removed first if it exists and again when the process
// exits normally.
std::filesystem::path scratch_dir(const std::string& prefix, const std::string& name);

// Writes <dir>/corpus.txt, a repetitive but not trivial text (1,200 lines): enough structure for a tiny model
// to learn within a few dozen steps. Returns its path.
std::string write_small_corpus(const std::filesystem::path& dir);

// The lines of `file` that contain `needle`, e.g. the "\"test\"" lines of a run's metrics.jsonl.
std::vector<std::string> lines_with(const std::filesystem::path& file, const std::string& needle);

// The number after "key": in one JSON line; NaN and a test failure when the key is missing.
double json_field(const std::string& json_line, const std::string& key);

// Both checkpoint files hold the same tensors, bit for bit (a resumed run against an uninterrupted one), and
// at least min_tensors of them. Wrap the call in ASSERT_NO_FATAL_FAILURE to stop the test on a mismatch.
void expect_identical_checkpoints(const std::filesystem::path& a, const std::filesystem::path& b,
                                  size_t min_tensors);

}  // namespace loom::test
