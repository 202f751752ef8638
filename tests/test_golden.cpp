// Loom's CPU results against PyTorch's on the golden cases in tests/golden/ (one test per op-table row).
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "loom/loom.h"
#include "loom/nn/safetensors.h"
#include "support/golden.h"
#include "support/op_table.h"

using namespace loom;
using namespace loom::test;

namespace {

std::vector<std::string> golden_rows() {
  std::vector<std::string> names;
  for (const OpCase& op : op_table()) {
    if (op.golden) names.push_back(op.name);
  }
  return names;
}

std::string describe_all(const std::vector<Tensor>& tensors) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < tensors.size(); ++i) os << (i ? ", " : "") << describe(tensors[i]);
  os << ']';
  return os.str();
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, MatchesPyTorch) {
  const OpCase& op = *find_op(GetParam());
  auto it = golden_cases().find(op.name);
  ASSERT_NE(it, golden_cases().end())
      << "no golden case '" << op.name << "': rerun /usr/bin/python3 tests/golden/make_golden.py";
  const GoldenCase& gc = it->second;
  std::vector<Tensor> got;
  try {
    got = op.run(gc.inputs, kCPU);
  } catch (const Error& e) {
    FAIL() << op.name << ": " << (is_missing_kernel(e) ? "kernel missing: " : "threw: ") << e.what()
           << "\n  inputs " << describe_all(gc.inputs);
  }
  ASSERT_EQ(got.size(), gc.outputs.size())
      << op.name << ": Loom returned " << got.size() << " outputs, PyTorch " << gc.outputs.size();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(got[i].device().is_cpu()) << op.name << " out" << i << " is on " << got[i].device();
    Comparison c = compare(got[i], gc.outputs[i], op.tol);
    EXPECT_TRUE(c.ok) << op.name << " out" << i << ": " << c.message << "\n  inputs "
                      << describe_all(gc.inputs);
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, Golden, ::testing::ValuesIn(golden_rows()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace

TEST(GoldenFiles, EveryCaseHasARowAndEveryGoldenRowHasACase) {
  std::set<std::string> rows;
  for (const std::string& name : golden_rows()) rows.insert(name);
  for (const auto& [name, gc] : golden_cases()) {
    EXPECT_TRUE(rows.count(name)) << gc.file << ": case '" << name << "' has no golden row in op_table.cpp";
  }
  for (const std::string& name : rows) {
    EXPECT_TRUE(golden_cases().count(name)) << "op_table.cpp row '" << name << "' has no golden case";
  }
}

// The parity test builds inputs with the table's generators: they must describe the same tensors as the
// files.
TEST(GoldenFiles, TableGeneratorsMatchTheStoredInputs) {
  for (const auto& [name, gc] : golden_cases()) {
    const OpCase* op = find_op(name);
    if (op == nullptr) continue;  // reported above
    std::vector<Tensor> made = make_inputs(*op, kCPU);
    ASSERT_EQ(made.size(), gc.inputs.size()) << name;
    for (size_t i = 0; i < made.size(); ++i) {
      EXPECT_EQ(made[i].dtype(), gc.inputs[i].dtype()) << name << " in" << i;
      EXPECT_EQ(made[i].shape(), gc.inputs[i].shape()) << name << " in" << i;
    }
  }
}

TEST(GoldenFiles, RecordTheirGenerator) {
  std::vector<std::string> files = golden_files();
  EXPECT_GE(files.size(), 5u);
  for (const std::string& file : files) {
    SafetensorsContents c = load_safetensors_with_metadata(file);
    EXPECT_FALSE(c.metadata["torch_version"].empty()) << file;
    EXPECT_EQ(c.metadata["command"], "/usr/bin/python3 tests/golden/make_golden.py") << file;
  }
}
