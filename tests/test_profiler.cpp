// autograd::Profiler: what it records for forward ops and backward entries, nesting, and its misuse errors.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using test::error_of;

namespace {

std::map<std::string, autograd::ProfileEntry> by_name(const autograd::Profiler& p) {
  std::map<std::string, autograd::ProfileEntry> m;
  for (const autograd::ProfileEntry& e : p.entries()) m[e.name] = e;
  return m;
}

}  // namespace

TEST(Profiler, CountsForwardOpsAndBackwardEntries) {
  Tensor x = randn({64, 32}).to(kFloat64).requires_grad_();
  Tensor w = randn({16, 32}).to(kFloat64).requires_grad_();
  autograd::Profiler prof;
  Tensor y = exp(x);
  Tensor z = sum(linear(y, w) * 2.0);
  z.backward();
  prof.stop();
  auto m = by_name(prof);
  ASSERT_TRUE(m.count("exp") && m.count("linear") && m.count("mul") && m.count("sum")) << prof.table();
  EXPECT_EQ(m["exp"].calls, 1);
  EXPECT_EQ(m["linear"].calls, 1);
  ASSERT_TRUE(m.count("backward: exp") && m.count("backward: linear") && m.count("backward: sum")) << prof.table();
  EXPECT_EQ(m["backward: exp"].calls, 1);
  for (const auto& [name, e] : m) {
    EXPECT_GE(e.total_ms, 0.0) << name;
    EXPECT_GE(e.self_ms, -1e-9) << name;
    EXPECT_LE(e.self_ms, e.total_ms + 1e-9) << name;
  }
  // Sorted by self time, descending.
  const std::vector<autograd::ProfileEntry> all = prof.entries();
  for (size_t i = 1; i < all.size(); ++i) EXPECT_GE(all[i - 1].self_ms, all[i].self_ms);
  const std::string table = prof.table();
  EXPECT_NE(table.find("backward: linear"), std::string::npos) << table;
  EXPECT_NE(table.find("ms self time in all"), std::string::npos) << table;
}

TEST(Profiler, NestedOpsSubtractFromTheEnclosingSelfTime) {
  // Scopes nest (an op's forward calling other ops, a backward entry running ops): the enclosing scope's
  // total includes the nested ones, its self time does not. Sleeps make both parts measurable.
  autograd::Profiler prof;
  {
    autograd::ProfileScope outer("outer");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    {
      autograd::ProfileScope inner("inner");
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  }
  prof.stop();
  auto m = by_name(prof);
  ASSERT_TRUE(m.count("outer") && m.count("inner")) << prof.table();
  EXPECT_GE(m["inner"].total_ms, 29.0);
  EXPECT_GE(m["outer"].total_ms, m["inner"].total_ms + 19.0);
  EXPECT_NEAR(m["outer"].self_ms, m["outer"].total_ms - m["inner"].total_ms, 1e-6);
  EXPECT_LT(m["outer"].self_ms, m["outer"].total_ms - 29.0);
}

TEST(Profiler, RecordsOnlyWhileAliveAndOneAtATime) {
  Tensor x = randn({4});
  exp(x);  // before: not recorded
  std::map<std::string, autograd::ProfileEntry> m;
  {
    autograd::Profiler prof;
    EXPECT_NE(error_of([] { autograd::Profiler second; }).find("another Profiler is already recording"),
              std::string::npos);
    neg(x);
    prof.stop();
    exp(x);  // after stop: not recorded
    m = by_name(prof);
  }
  EXPECT_EQ(m.count("exp"), 0u);
  ASSERT_EQ(m.count("neg"), 1u);
  EXPECT_EQ(m["neg"].calls, 1);
  // A new Profiler starts empty.
  autograd::Profiler again;
  EXPECT_TRUE(again.entries().empty());
  sqrt(abs(x));
  EXPECT_EQ(by_name(again).count("sqrt"), 1u);
}
