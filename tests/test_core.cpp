// Core layer: shapes, views, storage sharing, allocator statistics, Philox and errors.
#include <gtest/gtest.h>

#include "loom/loom.h"

using namespace loom;

TEST(Shape, BroadcastFollowsNumpyRules) {
  EXPECT_EQ(broadcast_shapes({2, 1, 4}, {3, 1}, "add"), (Shape{2, 3, 4}));
  EXPECT_EQ(broadcast_shapes({}, {5}, "add"), (Shape{5}));
  EXPECT_EQ(broadcast_shapes({0, 1}, {1, 3}, "add"), (Shape{0, 3}));
  try {
    broadcast_shapes({2, 3}, {4, 3}, "add");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add: shapes [2, 3] and [4, 3] cannot be broadcast"), std::string::npos)
        << e.what();
  }
}

TEST(Shape, RejectsTooManyDims) { EXPECT_THROW(Shape(std::vector<int64_t>(9, 1)), Error); }

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::empty({2, 3});
  float* p = t.data<float>();
  for (int i = 0; i < 6; ++i) p[i] = static_cast<float>(i);
  Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_EQ(tt.strides(), (Shape{1, 3}));
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.storage().get(), t.storage().get());
  Tensor c = tt.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor row = t.select(0, 1);
  EXPECT_EQ(row.to_vector<float>(), (std::vector<float>{3, 4, 5}));
  Tensor col = t.narrow(1, 1, 2);
  EXPECT_EQ(col.to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  Tensor stepped = t.slice(1, 0, 3, 2);
  EXPECT_EQ(stepped.to_vector<float>(), (std::vector<float>{0, 2, 3, 5}));
}

TEST(Tensor, ViewAndReshape) {
  Tensor t = arange(24, kFloat32).view({2, 3, 4});
  EXPECT_EQ(t.view({6, -1}).shape(), (Shape{6, 4}));
  Tensor p = t.permute({2, 0, 1});
  EXPECT_THROW(p.view({24}), Error);
  Tensor r = p.reshape({24});
  EXPECT_TRUE(r.is_contiguous());
  EXPECT_EQ(r.to_vector<float>()[1], 4.0f);
  EXPECT_THROW(t.view({5, -1}), Error);
  EXPECT_EQ(t.flatten(1).shape(), (Shape{2, 12}));
}

TEST(Tensor, ExpandSqueezeUnsqueeze) {
  Tensor t = arange(3, kFloat32).view({3, 1});
  Tensor e = t.expand({2, 3, 4});
  EXPECT_EQ(e.strides(), (Shape{0, 1, 0}));
  EXPECT_EQ(e.contiguous().to_vector<float>()[5], 1.0f);
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(t.squeeze().shape(), (Shape{3}));
  EXPECT_EQ(t.squeeze(0).shape(), (Shape{3, 1}));
  EXPECT_THROW(t.expand({4, 2}), Error);
}

TEST(Allocator, StatsTrackLiveAndPeakBytes) {
  reset_peak_memory();
  MemoryStats before = memory_stats();
  {
    Tensor a = Tensor::empty({1024, 256});  // 1 MiB
    MemoryStats during = memory_stats();
    EXPECT_EQ(during.current_bytes - before.current_bytes, 1024 * 256 * 4);
    EXPECT_GE(during.peak_bytes, during.current_bytes);
  }
  MemoryStats after = memory_stats();
  EXPECT_EQ(after.current_bytes, before.current_bytes);
  EXPECT_GE(after.peak_bytes - before.current_bytes, 1024 * 256 * 4);
  reset_peak_memory();
  EXPECT_EQ(memory_stats().peak_bytes, after.current_bytes);
}

TEST(Philox, MatchesRandom123KnownAnswers) {
  // Known-answer vectors of philox4x32_10 from Random123's kat_vectors.
  Philox4x32 zero = philox4x32_10({{0, 0, 0, 0}}, 0, 0);
  EXPECT_EQ(zero.v[0], 0x6627e8d5u);
  EXPECT_EQ(zero.v[1], 0xe169c58du);
  EXPECT_EQ(zero.v[2], 0xbc57ac4cu);
  EXPECT_EQ(zero.v[3], 0x9b00dbd8u);
  Philox4x32 all_ones = philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
  EXPECT_EQ(all_ones.v[0], 0x408f276du);
  EXPECT_EQ(all_ones.v[1], 0x41c83b0eu);
  EXPECT_EQ(all_ones.v[2], 0xa20bc7c6u);
  EXPECT_EQ(all_ones.v[3], 0x6d5451fdu);
  Philox4x32 pi = philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(pi.v[0], 0xd16cfe09u);
  EXPECT_EQ(pi.v[1], 0x94fdccebu);
  EXPECT_EQ(pi.v[2], 0x5001e420u);
  EXPECT_EQ(pi.v[3], 0x24126ea1u);
}

TEST(Device, ParsesAndRejects) {
  EXPECT_EQ(Device("cpu"), kCPU);
  EXPECT_EQ(Device("cuda:1"), Device(DeviceType::CUDA, 1));
  EXPECT_THROW(Device("gpu"), Error);
  EXPECT_THROW(Device("cuda:x"), Error);
}

TEST(Allocator, LargeBlocksAreReusedAndCanBeReleased) {
  empty_cache();
  int64_t reserved0 = memory_stats().reserved_bytes;
  { Tensor a = Tensor::empty({1 << 20}); }  // 4 MiB, cached on free
  int64_t reserved1 = memory_stats().reserved_bytes;
  EXPECT_GE(reserved1 - reserved0, 4 << 20);
  { Tensor b = Tensor::empty({1 << 20}); }  // served from the cache: nothing new from the system
  EXPECT_EQ(memory_stats().reserved_bytes, reserved1);
  empty_cache();
  EXPECT_EQ(memory_stats().reserved_bytes, reserved0);
}

// The default thread count: LOOM_NUM_THREADS when it holds a positive integer; otherwise (unset, empty, junk,
// zero, negative, absurdly large) the hardware's count.
TEST(Threads, DefaultComesFromLoomNumThreads) {
  EXPECT_EQ(detail::threads_from_env(nullptr, 8), 8);
  EXPECT_EQ(detail::threads_from_env("", 8), 8);
  EXPECT_EQ(detail::threads_from_env("1", 8), 1);
  EXPECT_EQ(detail::threads_from_env("12", 8), 12);
  for (const char* bad : {"0", "-2", "two", "3x", "100000"})
    EXPECT_EQ(detail::threads_from_env(bad, 8), 8) << bad;
}
