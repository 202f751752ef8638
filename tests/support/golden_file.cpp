#include "support/golden_file.h"

#include <map>
#include <mutex>

#include "loom/core/error.h"

namespace loom::test {

const SafetensorsContents& golden_file(const std::string& relative) {
  static std::mutex mutex;
  static std::map<std::string, SafetensorsContents> files;  // map nodes stay put: references remain valid
  std::lock_guard<std::mutex> lock(mutex);
  auto it = files.find(relative);
  if (it == files.end()) {
    const std::string path = std::string(LOOM_TEST_DATA_DIR) + "/golden/" + relative;
    it = files.emplace(relative, load_safetensors_with_metadata(path)).first;
  }
  return it->second;
}

Tensor golden_tensor(const std::string& relative, const std::string& key) {
  const SafetensorsContents& file = golden_file(relative);
  auto it = file.tensors.find(key);
  if (it == file.tensors.end()) throw Error("golden tensor '" + key + "' missing from " + relative);
  return it->second;
}

bool has_golden_tensor(const std::string& relative, const std::string& key) {
  return golden_file(relative).tensors.count(key) > 0;
}

std::string golden_setting(const std::string& relative, const std::string& name, const std::string& key) {
  const SafetensorsContents& file = golden_file(relative);
  auto entry = file.metadata.find(name);
  if (entry == file.metadata.end()) throw Error("golden case " + name + " missing from " + relative);
  const std::string s = " " + entry->second + " ";
  size_t at = s.find(" " + key + "=");
  if (at == std::string::npos) throw Error("golden case " + name + " has no setting " + key);
  at += key.size() + 2;
  return s.substr(at, s.find(' ', at) - at);
}

}  // namespace loom::test
