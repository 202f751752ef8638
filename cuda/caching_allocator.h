#pragma once
// A caching allocator for one GPU, after PyTorch's: cudaMalloc and cudaFree synchronise the device and cost
// tens of microseconds, so freed blocks are kept and handed out again. Requests are rounded to 512 bytes;
// those up to 1 MiB are carved from 2 MiB segments (the small pool), larger ones from segments of their own
// size rounded to 2 MiB (20 MiB for requests under 10 MiB) in the large pool. A cached block is reused
// best-fit and split when the remainder is worth keeping; freed neighbours within a segment merge again. All
// work runs on the default stream, so a block freed by one op can be reused by the next without any stream
// bookkeeping.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <unordered_map>

#include "loom/core/allocator.h"

namespace loom::cuda {

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}
  // Cached segments are deliberately not released at exit: the CUDA runtime may already be gone by then.
  ~CachingAllocator() override = default;

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  MemoryStats stats() const override { return counter_.snapshot(); }
  void reset_peak() override { counter_.reset_peak(); }
  void empty_cache() override;

 private:
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;
    bool small = false;  // which pool the block belongs to
    bool allocated = false;
    Block* prev = nullptr;  // neighbours within the same cudaMalloc segment
    Block* next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
    }
  };
  using Pool = std::set<Block*, BySizeThenAddress>;

  Block* find_free(Pool& pool, size_t size);
  Block* new_segment(size_t size, bool small);  // nullptr when the GPU is out of memory
  void split(Block* block, size_t size, Pool& pool);
  void release_free_segments();  // caller holds mutex_

  int device_;
  mutable std::mutex mutex_;
  Pool small_free_, large_free_;
  std::unordered_map<void*, Block*> live_;
  MemoryCounter counter_;
};

}  // namespace loom::cuda
