// CUDA against CPU for every row of the op table: same inputs, results within the row's tolerance. Every
// kernel of the backend interface has a CUDA implementation (or a default composed of ops), so a row that
// finds one missing fails; a coverage table is printed at the end.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>

#include "loom/loom.h"
#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#endif
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

// Runs the row on both devices and compares; `outcome` gets the coverage table's verdict.
void expect_parity(const OpCase& op, std::string& outcome) {
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

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, CudaMatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << no_cuda_reason();
  const OpCase& op = *find_op(GetParam());
  expect_parity(op, outcomes()[op.name]);
}

INSTANTIATE_TEST_SUITE_P(Ops, Parity, ::testing::ValuesIn([] {
                           std::vector<std::string> names;
                           for (const OpCase& op : op_table()) names.push_back(op.name);
                           return names;
                         }()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

#ifdef LOOM_WITH_CUDA
}  // namespace

namespace loom::cuda {
void PrintTo(AttentionKernels kernels, std::ostream* os) {  // gtest prints the parameter with it
  *os << (kernels == AttentionKernels::Auto            ? "Auto"
          : kernels == AttentionKernels::RegisterTiles ? "RegisterTiles"
          : kernels == AttentionKernels::SharedTiles   ? "SharedTiles"
                                                       : "Composed");
}
}  // namespace loom::cuda

namespace {

// The dense and LSH attention rows again with the fastest kernels switched off, one family at a time
// (cuda::set_attention_kernels). Above, under Auto, the float32 rows with heads up to 128 wide run on the
// tensor cores and the float64 rows on the register tiles; pinned to RegisterTiles the float32 rows run on
// the register tiles too, pinned to SharedTiles every row runs on the shared-memory tiles (which wider heads,
// and devices with less shared memory, take), and pinned to Composed on the composed ops: every family is
// checked on the same edge cases.
using PinnedKernels = std::tuple<std::string, cuda::AttentionKernels>;
class AttentionKernelParity : public ::testing::TestWithParam<PinnedKernels> {};

const char* kernels_name(cuda::AttentionKernels kernels) {
  return kernels == cuda::AttentionKernels::RegisterTiles ? "register_tiles"
         : kernels == cuda::AttentionKernels::SharedTiles ? "shared_tiles"
                                                          : "composed";
}

TEST_P(AttentionKernelParity, CudaMatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << no_cuda_reason();
  const auto& [name, kernels] = GetParam();
  struct Pin {
    explicit Pin(cuda::AttentionKernels k) { cuda::set_attention_kernels(k); }
    ~Pin() { cuda::set_attention_kernels(cuda::AttentionKernels::Auto); }
  } pin(kernels);
  ASSERT_EQ(cuda::attention_kernels(), kernels);
  expect_parity(*find_op(name), outcomes()[name + "@" + kernels_name(kernels)]);
}

INSTANTIATE_TEST_SUITE_P(Pinned, AttentionKernelParity, ::testing::ValuesIn([] {
                           std::vector<PinnedKernels> rows;
                           for (const OpCase& op : op_table()) {
                             const std::string_view name(op.name);
                             if (!name.starts_with("attention_grad") &&
                                 !name.starts_with("lsh_attention_grad"))
                               continue;
                             rows.emplace_back(op.name, cuda::AttentionKernels::RegisterTiles);
                             rows.emplace_back(op.name, cuda::AttentionKernels::SharedTiles);
                             rows.emplace_back(op.name, cuda::AttentionKernels::Composed);
                           }
                           return rows;
                         }()),
                         [](const ::testing::TestParamInfo<PinnedKernels>& info) {
                           return std::get<0>(info.param) + "_" + kernels_name(std::get<1>(info.param));
                         });
#endif

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
