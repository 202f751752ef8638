#include "loom/core/allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>

#include "loom/core/error.h"
#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#include "loom/cuda/pinned_allocator.h"
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

// Host memory, 64-byte aligned for AVX-512 loads. Small blocks come straight from the C library, which recycles
// them well. Large blocks (>= 1 MiB) are cached by rounded size: glibc serves them with mmap and returns them to
// the system on free, so every fresh large tensor would otherwise pay a page fault per 4 KiB on first touch,
// which costs as much as the arithmetic of a bandwidth-bound op. Statistics count bytes held by tensors
// (current/peak) and bytes held from the system (reserved = live + cached).
class CpuAllocator final : public Allocator {
 public:
  static constexpr size_t kLargeBlock = size_t{1} << 20;
  static constexpr size_t kLargeRound = size_t{2} << 20;

  CpuAllocator() {
    if (const char* env = std::getenv("LOOM_CPU_CACHE_MB")) cache_limit_ = std::strtoull(env, nullptr, 10) << 20;
  }
  ~CpuAllocator() override { empty_cache(); }

  void* allocate(size_t nbytes) override {
    if (nbytes == 0) {
      counter_.on_alloc(0);
      return nullptr;
    }
    size_t rounded = round(nbytes);
    void* p = nullptr;
    if (rounded >= kLargeBlock) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = cache_.find(rounded);
      if (it != cache_.end()) {
        p = it->second;
        cache_.erase(it);
        cached_bytes_ -= rounded;
      }
    }
    if (p == nullptr) {
      p = std::aligned_alloc(64, rounded);
      if (p == nullptr) {
        empty_cache();
        p = std::aligned_alloc(64, rounded);
      }
      LOOM_CHECK(p != nullptr, "CPU allocator: out of memory allocating ", nbytes, " bytes (",
                 counter_.snapshot().current_bytes, " bytes in use)");
      counter_.on_reserve(static_cast<int64_t>(rounded));
    }
    counter_.on_alloc(nbytes);
    return p;
  }

  void deallocate(void* ptr, size_t nbytes) override {
    counter_.on_free(nbytes);
    if (ptr == nullptr) return;
    size_t rounded = round(nbytes);
    if (rounded >= kLargeBlock) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + rounded <= cache_limit_) {
        cache_.emplace(rounded, ptr);
        cached_bytes_ += rounded;
        return;
      }
    }
    std::free(ptr);
    counter_.on_reserve(-static_cast<int64_t>(rounded));
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, ptr] : cache_) {
      std::free(ptr);
      counter_.on_reserve(-static_cast<int64_t>(size));
    }
    cache_.clear();
    cached_bytes_ = 0;
  }

  MemoryStats stats() const override { return counter_.snapshot(); }
  void reset_peak() override { counter_.reset_peak(); }

 private:
  static size_t round(size_t nbytes) {
    size_t r = (nbytes + 63) / 64 * 64;
    return r >= kLargeBlock ? (r + kLargeRound - 1) / kLargeRound * kLargeRound : r;
  }

  MemoryCounter counter_;
  std::mutex mutex_;
  std::multimap<size_t, void*> cache_;
  size_t cached_bytes_ = 0;
  size_t cache_limit_ = size_t{2} << 30;  // 2 GiB unless LOOM_CPU_CACHE_MB says otherwise
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
void empty_cache(Device device) { allocator_for(device).empty_cache(); }

Allocator& pinned_host_allocator() {
#ifdef LOOM_WITH_CUDA
  return cuda::pinned_allocator();
#else
  LOOM_FAIL(
      "pin_memory: this build of Loom has no CUDA backend (configure with -DLOOM_CUDA=ON); pinned host "
      "memory only serves copies to a GPU");
#endif
}

MemoryStats pinned_memory_stats() {
#ifdef LOOM_WITH_CUDA
  if (cuda::device_count() > 0) return cuda::pinned_allocator().stats();
#endif
  return {};
}

void empty_pinned_cache() {
#ifdef LOOM_WITH_CUDA
  if (cuda::device_count() > 0) cuda::pinned_allocator().empty_cache();
#endif
}

}  // namespace loom
