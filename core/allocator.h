#pragma once
// Per-device allocators. Every byte a tensor owns goes through one of these, so memory claims (reversible layers,
// LSH attention) can be proven from inside the process with memory_stats().
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "loom/core/device.h"

namespace loom {

struct MemoryStats {
  int64_t current_bytes = 0;    // bytes held by live tensors
  int64_t peak_bytes = 0;       // high-water mark of current_bytes since the last reset_peak_memory()
  int64_t reserved_bytes = 0;   // bytes obtained from the system (>= current on caching allocators)
  int64_t num_allocs = 0;       // allocate() calls
  int64_t num_frees = 0;        // deallocate() calls
};

// Thread-safe live/peak counter shared by the allocators.
class MemoryCounter {
 public:
  void on_alloc(size_t nbytes);
  void on_free(size_t nbytes);
  void on_reserve(int64_t delta) { reserved_.fetch_add(delta, std::memory_order_relaxed); }
  void reset_peak() { peak_.store(current_.load(std::memory_order_relaxed), std::memory_order_relaxed); }
  MemoryStats snapshot() const;

 private:
  std::atomic<int64_t> current_{0}, peak_{0}, reserved_{0}, allocs_{0}, frees_{0};
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns memory for nbytes (64-byte aligned on the CPU); nbytes may be 0. Throws loom::Error when out of memory.
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual MemoryStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns cached blocks to the system (no-op for allocators that cache nothing).
  virtual void empty_cache() {}
  // True for page-locked host memory (Tensor::pin_memory).
  virtual bool pinned() const { return false; }
};

// The allocator serving `device`. CUDA devices throw a clear error when Loom was built without CUDA or no GPU exists.
Allocator& allocator_for(Device device);

MemoryStats memory_stats(Device device = Device());
void reset_peak_memory(Device device = Device());
// Returns the blocks a device's allocator keeps for reuse to the system (torch.cuda.empty_cache).
void empty_cache(Device device = Device());

// Page-locked ("pinned") host memory, which a GPU reads and writes by DMA, so copies between it and the
// device run at the link's full speed (Tensor::pin_memory). Throws a loom::Error naming the reason when Loom
// has no CUDA backend or no GPU is visible: pinning needs the driver.
Allocator& pinned_host_allocator();
// Its statistics (all zero when there is no GPU); its cache is released by empty_pinned_cache().
MemoryStats pinned_memory_stats();
void empty_pinned_cache();

}  // namespace loom
