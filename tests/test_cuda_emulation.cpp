// The CUDA emulation's own semantics (cuda/emulation/device.cpp), which every emulated suite relies on:
// barriers that wait for every live thread, threads that return releasing the barriers they leave, warp
// shuffles, the launch limits a GPU enforces, and the schedules that expose races. Only the emulated build
// (LOOM_CUDA=EMULATE) has an emulator; ctest runs this suite from it as cuda_emulation.test_cuda_emulation.
#include <gtest/gtest.h>

#ifdef LOOM_CUDA_EMULATION

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "loom/cuda/cuda_backend.h"
#include "loom/loom.h"
// After Loom's headers: it defines CUDA's keywords and threadIdx as macros.
#include "loom/cuda/emulation/device.h"

namespace {

using loom::emulation::Schedule;

constexpr Schedule kSchedules[] = {Schedule::in_order, Schedule::reversed, Schedule::shuffled};

// Restores the schedule the suite started with (the environment's), whatever a test set.
class Emulation : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = loom::emulation::current_schedule(); }
  void TearDown() override { loom::emulation::set_schedule(saved_); }
  Schedule saved_ = Schedule::in_order;
};

void launch(unsigned grid, unsigned block, const std::function<void()>& body, size_t shared_bytes = 0,
            const void* kernel = nullptr) {
  loom::emulation::pending_launch_error = 0;
  loom::emulation::run_grid(dim3(grid), dim3(block), shared_bytes, kernel, body);
}

// Each thread publishes its index, waits (or not) at the block's barrier, and reads its left neighbour's.
std::vector<int> neighbours(bool with_barrier) {
  constexpr unsigned kThreads = 256;
  std::vector<int> shared(kThreads, -1), seen(kThreads, -2);
  launch(1, kThreads, [&] {
    const int t = static_cast<int>(threadIdx.x);
    shared[t] = t;
    if (with_barrier) __syncthreads();
    seen[t] = shared[(t + kThreads - 1) % kThreads];
  });
  return seen;
}

TEST_F(Emulation, BarrierOrdersEveryThreadsWritesBeforeAnyRead) {
  for (Schedule s : kSchedules) {
    loom::emulation::set_schedule(s, 3);
    const std::vector<int> seen = neighbours(/*with_barrier=*/true);
    for (int t = 0; t < 256; ++t) ASSERT_EQ(seen[t], (t + 255) % 256) << "schedule " << static_cast<int>(s);
  }
}

// The race a missing barrier leaves: in order, every thread but 0 happens to read its neighbour's value;
// reversed and shuffled schedules make most of those reads stale, so the kernel's parity row would fail.
TEST_F(Emulation, SchedulesExposeAMissingBarrier) {
  auto stale = [](const std::vector<int>& seen) {
    int n = 0;
    for (int t = 0; t < 256; ++t) n += seen[t] != (t + 255) % 256;
    return n;
  };
  loom::emulation::set_schedule(Schedule::in_order);
  EXPECT_EQ(stale(neighbours(/*with_barrier=*/false)), 1);  // thread 0 reads thread 255, not yet run
  loom::emulation::set_schedule(Schedule::reversed);
  EXPECT_EQ(stale(neighbours(/*with_barrier=*/false)), 255);  // only thread 255's neighbour ran before it
  loom::emulation::set_schedule(Schedule::shuffled, 1);
  EXPECT_GT(stale(neighbours(/*with_barrier=*/false)), 64);
}

// A block that reads what the previous block of the same launch wrote: right only in order.
TEST_F(Emulation, SchedulesExposeBlocksThatDependOnEachOther) {
  constexpr unsigned kBlocks = 64;
  auto stale_reads = [&] {
    std::vector<int> written(kBlocks, -1), seen(kBlocks, -2);
    launch(kBlocks, 32, [&] {
      const int b = static_cast<int>(blockIdx.x);
      if (threadIdx.x == 0) {
        written[b] = b;
        seen[b] = b == 0 ? -1 : written[b - 1];
      }
    });
    int n = 0;
    for (int b = 0; b < static_cast<int>(kBlocks); ++b) n += seen[b] != b - 1;
    return n;
  };
  loom::emulation::set_schedule(Schedule::in_order);
  EXPECT_EQ(stale_reads(), 0);
  loom::emulation::set_schedule(Schedule::reversed);
  EXPECT_EQ(stale_reads(), static_cast<int>(kBlocks) - 1);
  loom::emulation::set_schedule(Schedule::shuffled, 5);
  EXPECT_GT(stale_reads(), 8);
}

// group_allreduce's hazard (cuda/row_reduce.cuh) without its first barrier: each warp's lane 0 publishes a
// value, the block waits, every thread reads another warp's slot, and the next call begins with warp
// shuffles and publishes again. Resumed round-robin, in either direction, every thread reads before any lane
// gets past its second shuffle, so the race stays hidden; when a warp may run ahead alone (shuffled), it
// overwrites its slot before the warp behind it has read the previous value.
TEST_F(Emulation, ShuffledScheduleLetsAWarpRunAheadIntoTheNextPhase) {
  constexpr int kThreads = 256, kWarps = kThreads / 32, kCalls = 2;
  auto stale_reads = [&] {
    std::vector<int> slots(kWarps, -1), seen(kCalls * kThreads, -1);
    launch(1, kThreads, [&] {
      const int t = static_cast<int>(threadIdx.x), warp = t / 32, lane = t % 32;
      for (int call = 0; call < kCalls; ++call) {
        int v = call * 100 + warp;  // a butterfly sum over the warp, as group_allreduce begins
        for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
        if (lane == 0) slots[warp] = v / 32;
        __syncthreads();
        seen[call * kThreads + t] = slots[(warp + 1) % kWarps];
      }
    });
    int n = 0;
    for (int call = 0; call < kCalls; ++call)
      for (int t = 0; t < kThreads; ++t) n += seen[call * kThreads + t] != call * 100 + (t / 32 + 1) % kWarps;
    return n;
  };
  loom::emulation::set_schedule(Schedule::in_order);
  EXPECT_EQ(stale_reads(), 0);
  loom::emulation::set_schedule(Schedule::reversed);
  EXPECT_EQ(stale_reads(), 0);
  loom::emulation::set_schedule(Schedule::shuffled, 4);
  EXPECT_GT(stale_reads(), 0);
}

// Threads that return early no longer count at the barriers the others wait at, as on the GPU.
TEST_F(Emulation, ReturnedThreadsReleaseTheBarrier) {
  for (Schedule s : kSchedules) {
    loom::emulation::set_schedule(s, 9);
    std::vector<int> sum(96, 0);
    std::vector<int> shared(96, 0);
    launch(1, 96, [&] {
      const int t = static_cast<int>(threadIdx.x);
      if (t >= 40) return;  // a whole warp and part of another leave
      for (int round = 1; round <= 3; ++round) {
        shared[t] = round * t;
        __syncthreads();
        __syncwarp();
        sum[t] += shared[39 - t];
        __syncthreads();
      }
    });
    for (int t = 0; t < 40; ++t) ASSERT_EQ(sum[t], 6 * (39 - t)) << "schedule " << static_cast<int>(s);
    for (int t = 40; t < 96; ++t) ASSERT_EQ(sum[t], 0);
  }
}

// Many shuffles in a row, each lane's value and mask changing, so a lane that runs ahead to the next shuffle
// must not overwrite what a slower lane has yet to read; a butterfly sum and a partial-width group included.
TEST_F(Emulation, WarpShufflesExchangeTheRightLanesValues) {
  for (Schedule s : kSchedules) {
    loom::emulation::set_schedule(s, 11);
    constexpr int kThreads = 64, kRounds = 50;
    std::vector<std::vector<double>> got(kThreads, std::vector<double>(kRounds));
    std::vector<float> total(kThreads), group_max(kThreads);
    launch(1, kThreads, [&] {
      const int t = static_cast<int>(threadIdx.x), lane = t % 32;
      for (int r = 0; r < kRounds; ++r) got[t][r] = __shfl_xor_sync(0xffffffffu, t * 1000.0 + r, 1 + r % 31);
      float x = static_cast<float>(lane);
      for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
      total[t] = x;
      float m = static_cast<float>(lane);
      for (int offset = 4; offset > 0; offset /= 2)
        m = std::max(m, __shfl_xor_sync(0xffffffffu, m, offset, 8));
      group_max[t] = m;
    });
    for (int t = 0; t < kThreads; ++t) {
      const int lane = t % 32;
      for (int r = 0; r < kRounds; ++r) {
        const int source = t - lane + (lane ^ (1 + r % 31));
        ASSERT_EQ(got[t][r], source * 1000.0 + r) << "thread " << t << " round " << r;
      }
      EXPECT_EQ(total[t], 31 * 32 / 2);
      EXPECT_EQ(group_max[t], static_cast<float>(lane - lane % 8 + 7));
    }
  }
}

// CUDA leaves undefined what a shuffle reads from a lane that has returned or does not exist; the emulation
// reads all-ones bits (NaN, or -1 here), so a kernel that uses such a value fails. A lane that took part in
// the shuffle and returned afterwards still gives its value.
TEST_F(Emulation, ShufflesFromReturnedOrMissingLanesReadAllOnes) {
  for (Schedule s : kSchedules) {
    loom::emulation::set_schedule(s, 13);
    std::vector<int> from_returned(32, 0), from_missing(48, 0), from_finished(32, 0);
    launch(1, 32, [&] {
      const int lane = static_cast<int>(threadIdx.x);
      if (lane >= 16) return;
      from_returned[lane] = __shfl_xor_sync(0xffffffffu, lane, 16);
    });
    launch(1, 48, [&] {  // the second warp has lanes 32..47 only
      const int t = static_cast<int>(threadIdx.x);
      from_missing[t] = __shfl_xor_sync(0xffffffffu, t, 16);
    });
    launch(1, 32, [&] {
      const int lane = static_cast<int>(threadIdx.x);
      const int v = __shfl_xor_sync(0xffffffffu, 100 + lane, 1);
      if (lane % 2 == 1) return;  // an odd lane may return before its even partner reads
      from_finished[lane] = v;
    });
    for (int lane = 0; lane < 16; ++lane) EXPECT_EQ(from_returned[lane], -1) << "lane " << lane;
    for (int t = 0; t < 32; ++t) EXPECT_EQ(from_missing[t], t ^ 16);
    for (int t = 32; t < 48; ++t) EXPECT_EQ(from_missing[t], -1) << "thread " << t;
    for (int lane = 0; lane < 32; lane += 2) EXPECT_EQ(from_finished[lane], 101 + lane);
  }
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 as the PTX ISA's fragment tables place A, B and D in a
// warp's lanes (g = lane / 4, t = lane % 4; written out here on their own, not taken from device.h): D = A B
// + C for a 16 x 8 A and an 8 x 8 B of small integers (exact in tf32 and in float, so the product is exact),
// in every schedule. Operand bits below tf32's 10 mantissa bits are ignored, as the tensor cores ignore them.
TEST_F(Emulation, TensorCoreMmaFollowsThePtxFragmentLayout) {
  float a[16][8], b[8][8];
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 8; ++k) a[r][k] = static_cast<float>((r * 8 + k) % 13 - 6);
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 8; ++n) b[k][n] = static_cast<float>((k * 5 + n * 3) % 11 - 5);
  auto bits = [](float x, uint32_t low) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u | low;  // set bits tf32 drops: they must not change the product
  };
  for (Schedule s : kSchedules) {
    loom::emulation::set_schedule(s, 17);
    float d[16][8] = {};
    launch(1, 32, [&] {
      const int lane = static_cast<int>(threadIdx.x), g = lane / 4, t = lane % 4;
      const uint32_t fa[4] = {bits(a[g][t], 0x1fffu), bits(a[g + 8][t], 0), bits(a[g][t + 4], 0x0fffu),
                              bits(a[g + 8][t + 4], 0)};
      const uint32_t fb[2] = {bits(b[t][g], 0x1000u), bits(b[t + 4][g], 0)};
      float acc[4] = {1, 2, 3, 4};  // C
      loom::emulation::mma_m16n8k8_tf32(acc, fa, fb);
      for (int i = 0; i < 4; ++i) d[g + 8 * (i / 2)][2 * t + i % 2] = acc[i];
    });
    for (int r = 0; r < 16; ++r)
      for (int n = 0; n < 8; ++n) {
        float want = static_cast<float>(1 + n % 2 + (r >= 8 ? 2 : 0));  // C's entry as placed above
        for (int k = 0; k < 8; ++k) want += a[r][k] * b[k][n];
        EXPECT_EQ(d[r][n], want) << "row " << r << ", column " << n << ", schedule " << static_cast<int>(s);
      }
  }
}

// The emulation runs tensor_cores::mma_3xtf32's three instructions as one call with one warp exchange
// (mma_m16n8k8_3xtf32); on a GPU they are three mma.sync. Both must give the same bits, for operands with
// every mantissa bit in use, in every schedule, with the fault off and on.
TEST_F(Emulation, FusedThreeTf32MmaEqualsItsThreeInstructions) {
  struct Fault {  // off again however this returns
    explicit Fault(bool on) { loom::emulation::set_mma_fault(on); }
    ~Fault() { loom::emulation::set_mma_fault(false); }
  };
  auto word = [](uint32_t seed, float scale) {  // a float32 in about [-2, 2] scale, full mantissa
    const uint32_t h = seed * 2654435761u ^ (seed >> 7) * 40503u;
    const float x = (static_cast<float>(h % 1000003u) / 250000.0f - 2.0f) * scale;
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
  };
  for (const bool fault_on : {false, true})
    for (Schedule s : kSchedules) {
      const Fault fault(fault_on);
      loom::emulation::set_schedule(s, 29);
      float fused[32][4], separate[32][4];
      launch(1, 32, [&] {
        const uint32_t lane = threadIdx.x;
        uint32_t a_big[4], a_small[4], b_big[2], b_small[2];
        for (uint32_t i = 0; i < 4; ++i) {
          a_big[i] = word(lane * 16 + i, 1.0f);
          a_small[i] = word(lane * 16 + 4 + i, 0x1p-11f);  // about as much smaller as a split's small half
        }
        for (uint32_t i = 0; i < 2; ++i) {
          b_big[i] = word(lane * 16 + 8 + i, 1.0f);
          b_small[i] = word(lane * 16 + 10 + i, 0x1p-11f);
        }
        float d[4] = {0.5f, -1.25f, 3.0f, 0.1f};
        float e[4] = {0.5f, -1.25f, 3.0f, 0.1f};
        loom::emulation::mma_m16n8k8_3xtf32(d, a_big, a_small, b_big, b_small);
        loom::emulation::mma_m16n8k8_tf32(e, a_small, b_big);
        loom::emulation::mma_m16n8k8_tf32(e, a_big, b_small);
        loom::emulation::mma_m16n8k8_tf32(e, a_big, b_big);
        std::copy(d, d + 4, fused[lane]);
        std::copy(e, e + 4, separate[lane]);
      });
      for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < 4; ++i) {
          ASSERT_TRUE(std::isfinite(fused[lane][i]));
          EXPECT_EQ(fused[lane][i], separate[lane][i]) << "lane " << lane << ", register " << i << ", fault "
                                                       << fault_on << ", schedule " << static_cast<int>(s);
        }
    }
}

// The backend's tensor-core self-check (cuda/tensor_core_check.cu), which Auto needs before it puts float32
// attention on the tensor cores, notices an instruction that places its fragments otherwise than the kernels
// assume: here the emulated instruction reading two of A's registers swapped.
TEST_F(Emulation, TensorCoreSelfCheckCatchesAWrongFragmentLayout) {
  struct Fault {  // off again however this returns
    Fault() { loom::emulation::set_mma_fault(true); }
    ~Fault() { loom::emulation::set_mma_fault(false); }
  };
  const double right = loom::cuda::tensor_core_self_check(0);
  double wrong = 0;
  {
    const Fault fault;
    wrong = loom::cuda::tensor_core_self_check(0);
  }
  EXPECT_LT(right, 1e-6) << "the right layout's worst error";
  EXPECT_GT(wrong, 1e-2) << "the wrong layout's worst error";
  EXPECT_EQ(loom::cuda::tensor_core_self_check(0), right);  // the same bits once the fault is gone
}

TEST_F(Emulation, RefusesWhatAGpuRefuses) {
  int runs = 0;
  launch(1, 2048, [&] { ++runs; });                     // more than 1024 threads a block
  EXPECT_EQ(loom::emulation::pending_launch_error, 9);  // cudaErrorInvalidConfiguration
  EXPECT_EQ(runs, 0);

  static const int kernel_id = 0;  // any address names a kernel
  launch(
      1, 32, [&] { ++runs; }, 64 * 1024, &kernel_id);   // above 48 KiB without an opt-in
  EXPECT_EQ(loom::emulation::pending_launch_error, 1);  // cudaErrorInvalidValue
  EXPECT_EQ(runs, 0);
  EXPECT_FALSE(loom::emulation::set_max_dynamic_shared(&kernel_id, 228 * 1024));  // beyond an H100's 227 KiB
  ASSERT_TRUE(loom::emulation::set_max_dynamic_shared(&kernel_id, 64 * 1024));
  launch(
      1, 32,
      [&] {
        ++runs;
        if (threadIdx.x == 0) {
          EXPECT_EQ(loom::emulation::dynamic_shared()[64 * 1024 - 1], 0xff);
        }
      },
      64 * 1024, &kernel_id);
  EXPECT_EQ(loom::emulation::pending_launch_error, 0);
  EXPECT_EQ(runs, 32);
}

// Built with LOOM_SANITIZE, only the bytes a tensor asked for are addressable (cuda/caching_allocator.cpp):
// a kernel that reads past its tensor, into the block's rounding, or a block after it went back to the cache,
// is stopped by AddressSanitizer as compute-sanitizer's memcheck would stop it on a GPU.
TEST_F(Emulation, SanitizerStopsAKernelReadingPastItsTensor) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto read_in_kernel = [](const float* p, int64_t i) {
    volatile float sink = 0;
    launch(1, 32, [&] {
      if (threadIdx.x == 0) sink = p[i];
    });
    return static_cast<float>(sink);
  };
  loom::Tensor t = loom::ones({3}, loom::kCUDA);
  const auto* p = static_cast<const float*>(t.data_ptr());
  EXPECT_EQ(read_in_kernel(p, 2), 1.0f);  // the last element is fine
  EXPECT_DEATH(read_in_kernel(p, 3), "use-after-poison");
  t = loom::Tensor();  // the block goes back to the cache
  EXPECT_DEATH(read_in_kernel(p, 0), "use-after-poison");
#else
  GTEST_SKIP() << "built without AddressSanitizer (configure with -DLOOM_SANITIZE=ON)";
#endif
}

TEST_F(Emulation, SchedulesByName) {
  loom::emulation::set_schedule(std::string("reversed"));
  EXPECT_EQ(loom::emulation::current_schedule(), Schedule::reversed);
  loom::emulation::set_schedule(std::string("shuffled:42"));
  EXPECT_EQ(loom::emulation::current_schedule(), Schedule::shuffled);
  loom::emulation::set_schedule(std::string("in-order"));
  EXPECT_EQ(loom::emulation::current_schedule(), Schedule::in_order);
  for (const char* bad : {"backwards", "shuffled:", "shuffled:x1", "shuffled:99999999999999999999999", ""}) {
    try {
      loom::emulation::set_schedule(std::string(bad));
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("in-order, reversed, shuffled"), std::string::npos) << e.what();
    }
  }
}

}  // namespace

#else

TEST(Emulation, RunsInTheEmulatedBuild) {
  GTEST_SKIP() << "built without LOOM_CUDA=EMULATE: ctest runs this suite from the emulated build "
                  "(cuda_emulation.test_cuda_emulation)";
}

#endif
