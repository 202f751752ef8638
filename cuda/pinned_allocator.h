#pragma once
// Page-locked host memory for host<->device copies (PyTorch's CachingHostAllocator, simplified): the GPU
// reads and writes it by DMA, so a copy from or to it runs at the link's full speed instead of being staged
// through a driver buffer. cudaHostAlloc and cudaFreeHost are slow (they map pages for the device), so freed
// blocks are cached by size (requests rounded up to a power of two, at least 4 KiB) and handed out again.
// Copies are synchronous (CudaBackend::copy_across_devices), so a freed block is never still in use by a
// transfer.
#include <cstddef>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "loom/core/allocator.h"

namespace loom::cuda {

class PinnedHostAllocator final : public Allocator {
 public:
  // Cached blocks are deliberately not released at exit: the CUDA runtime may already be gone by then.
  ~PinnedHostAllocator() override = default;

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  MemoryStats stats() const override { return counter_.snapshot(); }
  void reset_peak() override { counter_.reset_peak(); }
  void empty_cache() override;
  bool pinned() const override { return true; }

 private:
  void release_cached();  // caller holds mutex_

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // by block size
  std::unordered_map<void*, size_t> live_;     // block sizes of the pointers handed out
  MemoryCounter counter_;
};

// The process's pinned host allocator; throws a loom::Error when no GPU is visible (pinning needs the
// driver).
PinnedHostAllocator& pinned_allocator();

}  // namespace loom::cuda
