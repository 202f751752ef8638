#include "support/golden.h"

#include <algorithm>
#include <filesystem>

#include "loom/nn/safetensors.h"

namespace loom::test {
namespace {

// Places `t` at `index` of `list`, growing it; the index sets must come out dense (checked by the caller).
void put(std::vector<Tensor>& list, size_t index, const Tensor& t) {
  if (list.size() <= index) list.resize(index + 1);
  list[index] = t;
}

std::map<std::string, GoldenCase> load_all() {
  std::map<std::string, GoldenCase> cases;
  for (const std::string& file : golden_files()) {
    for (const auto& [key, tensor] : load_safetensors(file)) {
      size_t slash = key.rfind('/');
      LOOM_CHECK(slash != std::string::npos, file, ": golden key '", key,
                 "' is not <case>/in<i> or <case>/out<j>");
      std::string name = key.substr(0, slash);
      std::string slot = key.substr(slash + 1);
      bool input = slot.rfind("in", 0) == 0;
      bool output = slot.rfind("out", 0) == 0;
      std::string digits = slot.substr(input ? 2 : 3);
      LOOM_CHECK(
          (input || output) && !digits.empty() &&
              std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }),
          file, ": golden key '", key, "' is not <case>/in<i> or <case>/out<j>");
      GoldenCase& c = cases[name];
      LOOM_CHECK(c.file.empty() || c.file == file, "golden case '", name, "' appears in ", c.file, " and ",
                 file);
      c.name = name;
      c.file = file;
      put(input ? c.inputs : c.outputs, std::stoul(digits), tensor);
    }
  }
  for (const auto& [name, c] : cases) {
    for (const auto* list : {&c.inputs, &c.outputs}) {
      for (const Tensor& t : *list)
        LOOM_CHECK(t.defined(), c.file, ": golden case '", name, "' skips an index");
    }
  }
  return cases;
}

}  // namespace

std::vector<std::string> golden_files() {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(LOOM_TEST_DATA_DIR) + "/golden")) {
    if (entry.path().extension() == ".safetensors" && entry.path().filename() != "format.safetensors") {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

const std::map<std::string, GoldenCase>& golden_cases() {
  static const std::map<std::string, GoldenCase> cases = load_all();
  return cases;
}

}  // namespace loom::test
