#include "loom/cuda/caching_allocator.h"

#include <cuda_runtime_api.h>

#include <cstring>

#ifdef LOOM_CUDA_EMULATION
#include <sanitizer/asan_interface.h>
#endif

#include "loom/cuda/cuda_check.h"

namespace loom::cuda {
namespace {

constexpr size_t kRound = 512;                       // every block is a multiple of this
constexpr size_t kSmallRequest = size_t{1} << 20;    // requests up to this size use the small pool
constexpr size_t kSmallSegment = size_t{2} << 20;    // segment size of the small pool
constexpr size_t kMinLargeAlloc = size_t{10} << 20;  // large requests under this share a kLargeSegment
constexpr size_t kLargeSegment = size_t{20} << 20;
constexpr size_t kLargeRound = size_t{2} << 20;  // large segments are multiples of this

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

size_t segment_size(size_t size) {
  if (size <= kSmallRequest) return kSmallSegment;
  if (size < kMinLargeAlloc) return kLargeSegment;
  return round_up(size, kLargeRound);
}

// Under the CUDA emulation device memory is host memory, so it is checked as host memory is. A block handed
// out starts as 0xff bytes (NaN in either float type, -1 in the integer types), fresh or cached, so an op
// that reads what it never wrote (an output accumulated into without being zeroed) fails its parity test
// instead of reading a GPU's usually zeroed fresh memory. Under AddressSanitizer (LOOM_SANITIZE) only the
// bytes asked for are addressable: a kernel that reads or writes past its tensor, into the block's rounding
// or a neighbouring block of the segment, is reported, as compute-sanitizer's memcheck would. Elsewhere these
// do nothing.
void handed_out([[maybe_unused]] char* ptr, [[maybe_unused]] size_t nbytes, [[maybe_unused]] size_t size) {
#ifdef LOOM_CUDA_EMULATION
  ASAN_UNPOISON_MEMORY_REGION(ptr, nbytes);
  ASAN_POISON_MEMORY_REGION(ptr + nbytes, size - nbytes);
  std::memset(ptr, 0xff, nbytes);
#endif
}
void taken_back([[maybe_unused]] char* ptr, [[maybe_unused]] size_t size) {
#ifdef LOOM_CUDA_EMULATION
  ASAN_POISON_MEMORY_REGION(ptr, size);
#endif
}
void unchecked([[maybe_unused]] char* ptr, [[maybe_unused]] size_t size) {
#ifdef LOOM_CUDA_EMULATION
  ASAN_UNPOISON_MEMORY_REGION(ptr, size);
#endif
}

}  // namespace

void* CachingAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) {
    counter_.on_alloc(0);
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  Block* block = nullptr;
  // Sizes near SIZE_MAX cannot even be rounded; they are reported as out of memory like any other failure.
  if (nbytes <= (size_t{1} << 62)) {
    size_t size = round_up(nbytes, kRound);
    bool small = size <= kSmallRequest;
    Pool& pool = small ? small_free_ : large_free_;
    block = find_free(pool, size);
    if (block == nullptr) block = new_segment(segment_size(size), small);
    if (block != nullptr) {
      split(block, size, pool);
      block->allocated = true;
      live_.emplace(block->ptr, block);
    }
  }
  if (block == nullptr) {
    MemoryStats s = counter_.snapshot();
    LOOM_FAIL("CUDA out of memory allocating ", nbytes, " bytes on cuda:", device_, " (", s.current_bytes,
              " bytes in use, ", s.reserved_bytes, " reserved)");
  }
  counter_.on_alloc(nbytes);
  handed_out(block->ptr, nbytes, block->size);
  return block->ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes) {
  counter_.on_free(nbytes);
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  LOOM_CHECK(it != live_.end(), "CUDA allocator: freeing a pointer cuda:", device_, " did not allocate");
  Block* block = it->second;
  live_.erase(it);
  block->allocated = false;
  taken_back(block->ptr, block->size);
  Pool& pool = block->small ? small_free_ : large_free_;
  // Merge with free neighbours so the segment can serve larger requests (and be released by empty_cache).
  if (Block* prev = block->prev; prev != nullptr && !prev->allocated) {
    pool.erase(prev);
    prev->size += block->size;
    prev->next = block->next;
    if (block->next != nullptr) block->next->prev = prev;
    delete block;
    block = prev;
  }
  if (Block* next = block->next; next != nullptr && !next->allocated) {
    pool.erase(next);
    block->size += next->size;
    block->next = next->next;
    if (next->next != nullptr) next->next->prev = block;
    delete next;
  }
  pool.insert(block);
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_free_segments();
}

CachingAllocator::Block* CachingAllocator::find_free(Pool& pool, size_t size) {
  Block key;
  key.size = size;
  auto it = pool.lower_bound(&key);  // smallest free block that fits (lowest address among equals)
  if (it == pool.end()) return nullptr;
  Block* block = *it;
  pool.erase(it);
  return block;
}

CachingAllocator::Block* CachingAllocator::new_segment(size_t size, bool small) {
  DeviceGuard guard(device_);
  void* ptr = nullptr;
  cudaError_t status = cudaMalloc(&ptr, size);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so the retry and later calls do not see it
    if (status != cudaErrorMemoryAllocation) LOOM_CUDA_CHECK(status);
    // Out of memory: give every fully cached segment back and try once more.
    release_free_segments();
    status = cudaMalloc(&ptr, size);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      if (status != cudaErrorMemoryAllocation) LOOM_CUDA_CHECK(status);
      return nullptr;
    }
  }
  counter_.on_reserve(static_cast<int64_t>(size));
  taken_back(static_cast<char*>(ptr), size);
  Block* block = new Block;
  block->ptr = static_cast<char*>(ptr);
  block->size = size;
  block->small = small;
  return block;
}

void CachingAllocator::split(Block* block, size_t size, Pool& pool) {
  size_t remaining = block->size - size;
  // A small-pool remainder is always worth keeping; a large-pool one only when it could serve a large
  // request.
  bool worth = block->small ? remaining >= kRound : remaining > kSmallRequest;
  if (!worth) return;
  Block* rest = new Block;
  rest->ptr = block->ptr + size;
  rest->size = remaining;
  rest->small = block->small;
  rest->prev = block;
  rest->next = block->next;
  if (block->next != nullptr) block->next->prev = rest;
  block->next = rest;
  block->size = size;
  pool.insert(rest);
}

void CachingAllocator::release_free_segments() {
  DeviceGuard guard(device_);
  for (Pool* pool : {&small_free_, &large_free_}) {
    for (auto it = pool->begin(); it != pool->end();) {
      Block* block = *it;
      if (block->prev != nullptr || block->next != nullptr) {  // part of a segment still in use
        ++it;
        continue;
      }
      unchecked(block->ptr, block->size);
      LOOM_CUDA_CHECK(cudaFree(block->ptr));
      counter_.on_reserve(-static_cast<int64_t>(block->size));
      it = pool->erase(it);
      delete block;
    }
  }
}

}  // namespace loom::cuda
