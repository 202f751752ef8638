#include "support/driver_fixture.h"

#include <fstream>

namespace loom::test {

std::filesystem::path scratch_dir(const std::string& prefix, const std::string& name) {
  std::filesystem::path p = std::filesystem::temp_directory_path() / (prefix + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
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

}  // namespace loom::test
