// CUDA against CPU for every row of the op table: same inputs, results within the row's tolerance. Every
// kernel of the backend interface has a CUDA implementation (or a default composed of ops), so a row that
// finds one missing fails; a coverage table is printed at the end.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "loom/loom.h"
#include "support/op_table.h"

using namespace loom;
using namespace loom::test;

namespace {

// Outcome per row, for the coverage table.
std::map<std::string, std::string>& outcomes() {
  static std::map<std::string, std::string> m;
  return m;
}

const char* no_cuda_reason() {
#ifdef LOOM_WITH_CUDA
  return "no CUDA device (no GPU visible)";
#else
  return "no CUDA device (built without CUDA)";
#endif
}

// Runs the row on `device` with the default generator reseeded, so ops drawing from it see the same stream.
std::vector<Tensor> run_on(const OpCase& op, Device device) {
  manual_seed(1234);
  return op.run(make_inputs(op, device), device);
}

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, CudaMatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << no_cuda_reason();
  const OpCase& op = *find_op(GetParam());
  std::string& outcome = outcomes()[op.name];
  std::vector<Tensor> cpu;
  try {
    cpu = run_on(op, kCPU);
  } catch (const Error& e) {
    if (!is_missing_kernel(e)) {
      outcome = "FAIL: CPU threw";
      FAIL() << op.name << ": CPU threw: " << e.what();
    }
    outcome = "skip: CPU kernel missing";
    GTEST_SKIP() << op.name << ": CPU kernel missing (" << e.what() << ")";
  }
  std::vector<Tensor> cuda;
  try {
    cuda = run_on(op, kCUDA);
  } catch (const Error& e) {
    outcome = is_missing_kernel(e) ? "FAIL: CUDA kernel missing" : "FAIL: CUDA threw";
    FAIL() << op.name << ": CUDA threw: " << e.what();
  }
  outcome = "FAIL";
  ASSERT_EQ(cuda.size(), cpu.size()) << op.name;
  bool ok = true;
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_TRUE(cuda[i].device().is_cuda()) << op.name << " out" << i << " is on " << cuda[i].device();
    Comparison c = compare(cuda[i], cpu[i], op.tol);
    EXPECT_TRUE(c.ok) << op.name << " out" << i << " (CUDA vs CPU): " << c.message;
    ok = ok && c.ok && cuda[i].device().is_cuda();
  }
  if (ok) outcome = "pass";
}

INSTANTIATE_TEST_SUITE_P(Ops, Parity, ::testing::ValuesIn([] {
                           std::vector<std::string> names;
                           for (const OpCase& op : op_table()) names.push_back(op.name);
                           return names;
                         }()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Without a GPU the rows still have to make sense: every row (parity-only ones included) runs on the CPU.
TEST(OpTable, EveryRowRunsOnCpu) {
  std::vector<std::string> missing;
  for (const OpCase& op : op_table()) {
    try {
      for (const Tensor& out : run_on(op, kCPU))
        EXPECT_TRUE(out.defined() && out.device().is_cpu()) << op.name;
    } catch (const Error& e) {
      if (!is_missing_kernel(e)) ADD_FAILURE() << op.name << ": " << e.what();
      missing.push_back(op.name);
    }
  }
  if (!missing.empty()) {
    std::string names;
    for (const std::string& n : missing) names += " " + n;
    GTEST_SKIP() << missing.size() << " rows need CPU kernels that are missing:" << names;
  }
}

// Prints which ops ran, passed or were skipped once the whole binary has run (ctest runs one test per
// process, where the table has a single line).
class CoverageTable : public ::testing::Environment {
 public:
  void TearDown() override {
    if (outcomes().empty()) return;
    std::map<std::string, int> totals;
    std::printf("\nCUDA op coverage (%zu ops run):\n", outcomes().size());
    for (const auto& [name, outcome] : outcomes()) {
      std::printf("  %-36s %s\n", name.c_str(), outcome.c_str());
      ++totals[outcome];
    }
    for (const auto& [outcome, n] : totals) std::printf("  total %-30s %d\n", outcome.c_str(), n);
  }
};

[[maybe_unused]] const auto* const kCoverage = ::testing::AddGlobalTestEnvironment(new CoverageTable);

}  // namespace
