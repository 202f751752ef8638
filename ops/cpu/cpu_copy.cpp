// Copies, dtype conversion and fill on the CPU.
#include <algorithm>
#include <cstring>

#include "loom/core/parallel.h"

#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/strided.h"

namespace loom {
namespace {

constexpr int64_t kGrain = 1 << 16;

// memcpy split over the thread pool: one core cannot saturate DRAM bandwidth on its own, two nearly can.
void parallel_memcpy(void* dst, const void* src, size_t nbytes) {
  constexpr int64_t kChunk = 256 << 10;  // bytes per work item, far above the pool's wake-up cost
  int64_t chunks = (static_cast<int64_t>(nbytes) + kChunk - 1) / kChunk;
  parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    size_t begin = static_cast<size_t>(lo * kChunk);
    size_t end = std::min(nbytes, static_cast<size_t>(hi * kChunk));
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin, end - begin);
  });
}

template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  if (src.numel() == 0) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    parallel_memcpy(dst.data_ptr(), src.data_ptr(), dst.nbytes());
    return;
  }
  cpu::StridedLoop loop({dst, src});
  LOOM_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using To = scalar_t;
    LOOM_DISPATCH_ALL(src.dtype(), "copy", [&] {
      using From = scalar_t;
      cpu::for_each_run(loop, kGrain, [](char** p, const int64_t* st, int64_t n) {
        To* out = reinterpret_cast<To*>(p[0]);
        const From* in = reinterpret_cast<const From*>(p[1]);
        if (st[0] == 1 && st[1] == 1) {
          for (int64_t i = 0; i < n; ++i) out[i] = convert<To>(in[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) out[i * st[0]] = convert<To>(in[i * st[1]]);
        }
      });
    });
  });
}

void CpuBackend::copy_across_devices(const Tensor& src, const Tensor& dst) {
  // Both on the host: a plain contiguous copy.
  parallel_memcpy(dst.data_ptr(), src.data_ptr(), dst.nbytes());
}

void CpuBackend::fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  cpu::StridedLoop loop({dst});
  LOOM_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    scalar_t v = convert<scalar_t>(value);
    cpu::for_each_run(loop, kGrain, [v](char** p, const int64_t* st, int64_t n) {
      scalar_t* out = reinterpret_cast<scalar_t*>(p[0]);
      if (st[0] == 1) {
        for (int64_t i = 0; i < n; ++i) out[i] = v;
      } else {
        for (int64_t i = 0; i < n; ++i) out[i * st[0]] = v;
      }
    });
  });
}

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace loom
