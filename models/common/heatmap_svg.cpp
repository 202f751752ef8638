#include "loom/models/common/heatmap_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "loom/core/error.h"

namespace loom::train {
namespace {

constexpr int kCell = 22, kLabelWidth = 120, kTop = 40, kRowGap = 26, kScaleHeight = 34;
// Tokens are written in full up to this many characters (a bAbI fact is one token of ~30); longer ones are cut
// with "...".
constexpr size_t kMaxTokenChars = 40;

std::string shown(const std::string& token) {
  return token.size() <= kMaxTokenChars ? token : token.substr(0, kMaxTokenChars - 3) + "...";
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(static_cast<unsigned char>(c) < 0x20 ? ' ' : c);
    }
  }
  return out;
}

// White at 0, dark blue at 1.
std::string colour(double t) {
  t = std::clamp(t, 0.0, 1.0);
  auto mix = [t](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * t)); };
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", mix(255, 8), mix(255, 48), mix(255, 107));
  return buf;
}

}  // namespace

void write_heatmap_svg(const std::string& path, const Heatmap& map) {
  LOOM_CHECK(map.values.size() == map.tokens.size() && map.values.size() == map.row_labels.size(),
             "write_heatmap_svg: ", map.row_labels.size(), " row labels, ", map.tokens.size(),
             " token rows and ", map.values.size(), " value rows must agree");
  LOOM_CHECK(map.max_value > map.min_value, "write_heatmap_svg: the scale [", map.min_value, ", ",
             map.max_value, "] is empty");
  size_t columns = 1;
  for (size_t r = 0; r < map.values.size(); ++r) {
    LOOM_CHECK(map.values[r].size() == map.tokens[r].size(), "write_heatmap_svg: row ", r, " has ",
               map.tokens[r].size(), " tokens and ", map.values[r].size(), " values");
    columns = std::max(columns, map.values[r].size());
  }
  // Wide enough for the title (14 px monospace: ~8.5 px a character) and the scale's caption as well as the
  // cells.
  const int width =
      std::max(kLabelWidth + static_cast<int>(columns) * kCell + 20,
               20 + 9 * static_cast<int>(std::max(map.title.size(), map.value_label.size() + 30)));
  // Tokens longer than two characters are written slanted (60 degrees) under their cells, so neighbours do not
  // overlap; the rows leave room for the longest (11 px monospace: ~6.6 px a character, ~5.7 px of it downwards).
  size_t longest = 1;
  for (const auto& row : map.tokens)
    for (const auto& t : row) longest = std::max(longest, shown(t).size());
  const bool slanted = longest > 2;
  const int token_height = slanted ? 16 + static_cast<int>(longest) * 6 : 18;
  const int row_height = kCell + token_height + kRowGap;
  const int height = kTop + static_cast<int>(map.values.size()) * row_height + kScaleHeight + 10;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"monospace\" font-size=\"11\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"10\" y=\"22\" font-size=\"14\">" << escape(map.title) << "</text>\n";
  const double span = map.max_value - map.min_value;
  for (size_t r = 0; r < map.values.size(); ++r) {
    const int y = kTop + static_cast<int>(r) * row_height;
    svg << "<text x=\"10\" y=\"" << y + kCell / 2 + 4 << "\">" << escape(map.row_labels[r]) << "</text>\n";
    for (size_t c = 0; c < map.values[r].size(); ++c) {
      const int x = kLabelWidth + static_cast<int>(c) * kCell;
      const double v = map.values[r][c];
      const double t = (v - map.min_value) / span;
      svg << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << kCell << "\" height=\"" << kCell
          << "\" fill=\"" << colour(t) << "\" stroke=\"#ccc\"><title>" << escape(map.tokens[r][c]) << ": "
          << v << "</title></rect>\n";
      char value[16];
      std::snprintf(value, sizeof value, "%.1f", v);
      svg << "<text x=\"" << x + kCell / 2 << "\" y=\"" << y + kCell / 2 + 4
          << "\" text-anchor=\"middle\" font-size=\"8\" fill=\"" << (t > 0.55 ? "white" : "black") << "\">"
          << value << "</text>\n";
      const int tx = x + kCell / 2 + (slanted ? 4 : 0), ty = y + kCell + 13;
      svg << "<text x=\"" << tx << "\" y=\"" << ty << "\"";
      if (slanted)
        svg << " text-anchor=\"end\" transform=\"rotate(-60 " << tx << " " << ty << ")\"";
      else
        svg << " text-anchor=\"middle\"";
      svg << ">" << escape(shown(map.tokens[r][c])) << "</text>\n";
    }
  }
  // The colour scale.
  const int sy = kTop + static_cast<int>(map.values.size()) * row_height;
  for (int i = 0; i < 10; ++i)
    svg << "<rect x=\"" << kLabelWidth + i * 16 << "\" y=\"" << sy << "\" width=\"16\" height=\"12\" fill=\""
        << colour(i / 9.0) << "\"/>\n";
  svg << "<text x=\"" << kLabelWidth - 6 << "\" y=\"" << sy + 10 << "\" text-anchor=\"end\">" << map.min_value
      << "</text>\n<text x=\"" << kLabelWidth + 166 << "\" y=\"" << sy + 10 << "\">" << map.max_value << " "
      << escape(map.value_label) << "</text>\n</svg>\n";

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    LOOM_CHECK(out.good(), "write_heatmap_svg: cannot write '", tmp, "'");
    out << svg.str();
    LOOM_CHECK(out.good(), "write_heatmap_svg: writing '", tmp, "' failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  LOOM_CHECK(!ec, "write_heatmap_svg: cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

}  // namespace loom::train
