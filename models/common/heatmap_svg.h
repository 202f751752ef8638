#pragma once
// A heat map as a standalone SVG file: one row of cells per series, one column per token, the token written
// under its column (slanted when longer than two characters, cut with "..." beyond 40) and the value in each
// cell. The Universal Transformer driver draws its ponder maps with it
// (the paper's figures 3 and 5: per-position ponder time), and any per-token quantity fits.
#include <string>
#include <vector>

namespace loom::train {

struct Heatmap {
  std::string title;
  std::vector<std::string> row_labels;           // one per row
  std::vector<std::vector<std::string>> tokens;  // per row, the token of each column
  std::vector<std::vector<double>> values;       // per row, one value per token (rows may differ in length)
  double min_value = 0, max_value = 1;           // the colour scale's ends (values are clamped)
  std::string value_label = "value";             // the scale's caption, e.g. "ponder time (steps)"
};

// Renders the map (white -> dark blue over [min_value, max_value]); throws loom::Error when a row's tokens
// and values differ in length, the scale is empty, or the file cannot be written (written to a temporary
// name, then renamed).
void write_heatmap_svg(const std::string& path, const Heatmap& map);

}  // namespace loom::train
