#include "loom/core/allocator.h"

#include <cstdlib>
#include <new>

#include "loom/core/error.h"
#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#endif

namespace loom {

void MemoryCounter::on_alloc(size_t nbytes) {
  allocs_.fetch_add(1, std::memory_order_relaxed);
  int64_t now = current_.fetch_add(static_cast<int64_t>(nbytes), std::memory_order_relaxed) + static_cast<int64_t>(nbytes);
  int64_t peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void MemoryCounter::on_free(size_t nbytes) {
  frees_.fetch_add(1, std::memory_order_relaxed);
  current_.fetch_sub(static_cast<int64_t>(nbytes), std::memory_order_relaxed);
}

MemoryStats MemoryCounter::snapshot() const {
  MemoryStats s;
  s.current_bytes = current_.load(std::memory_order_relaxed);
  s.peak_bytes = peak_.load(std::memory_order_relaxed);
  s.reserved_bytes = reserved_.load(std::memory_order_relaxed);
  s.num_allocs = allocs_.load(std::memory_order_relaxed);
  s.num_frees = frees_.load(std::memory_order_relaxed);
  return s;
}

namespace {

// Host memory straight from the C library, 64-byte aligned for AVX-512 loads. glibc already recycles freed
// blocks, so a cache of our own would only hide memory from the statistics.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    size_t rounded = (nbytes + 63) / 64 * 64;
    void* p = rounded == 0 ? nullptr : std::aligned_alloc(64, rounded);
    LOOM_CHECK(rounded == 0 || p != nullptr, "CPU allocator: out of memory allocating ", nbytes, " bytes (",
               counter_.snapshot().current_bytes, " bytes in use)");
    counter_.on_alloc(nbytes);
    counter_.on_reserve(static_cast<int64_t>(nbytes));
    return p;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    std::free(ptr);
    counter_.on_free(nbytes);
    counter_.on_reserve(-static_cast<int64_t>(nbytes));
  }
  MemoryStats stats() const override { return counter_.snapshot(); }
  void reset_peak() override { counter_.reset_peak(); }

 private:
  MemoryCounter counter_;
};

}  // namespace

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) {
    static CpuAllocator cpu;
    return cpu;
  }
#ifdef LOOM_WITH_CUDA
  return cuda::device_allocator(device.index);
#else
  LOOM_FAIL("device ", device, ": this build of Loom has no CUDA backend (configure with -DLOOM_CUDA=ON)");
#endif
}

MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }

}  // namespace loom
