#include "loom/cuda/pinned_allocator.h"

#include <cuda_runtime_api.h>

#include "loom/cuda/cuda_backend.h"
#include "loom/cuda/cuda_check.h"

namespace loom::cuda {
namespace {

constexpr size_t kMinBlock = size_t{4} << 10;

size_t block_size(size_t nbytes) {
  size_t size = kMinBlock;
  while (size < nbytes) size *= 2;
  return size;
}

}  // namespace

void* PinnedHostAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) {
    counter_.on_alloc(0);
    return nullptr;
  }
  LOOM_CHECK(nbytes <= (size_t{1} << 62), "pinned host memory: cannot allocate ", nbytes, " bytes");
  const size_t size = block_size(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  if (auto it = free_.find(size); it != free_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
  } else {
    cudaError_t status = cudaHostAlloc(&ptr, size, cudaHostAllocDefault);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      release_cached();  // give the cache back and try once more
      status = cudaHostAlloc(&ptr, size, cudaHostAllocDefault);
    }
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      const MemoryStats s = counter_.snapshot();
      LOOM_FAIL("pinned host memory: cudaHostAlloc of ", size, " bytes failed with ",
                cudaGetErrorName(status), " (", s.current_bytes, " bytes pinned and in use, ",
                s.reserved_bytes, " reserved)");
    }
    counter_.on_reserve(static_cast<int64_t>(size));
  }
  live_.emplace(ptr, size);
  counter_.on_alloc(nbytes);
  return ptr;
}

void PinnedHostAllocator::deallocate(void* ptr, size_t nbytes) {
  counter_.on_free(nbytes);
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  LOOM_CHECK(it != live_.end(), "pinned host memory: freeing a pointer this allocator did not hand out");
  free_[it->second].push_back(ptr);
  live_.erase(it);
}

void PinnedHostAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached();
}

void PinnedHostAllocator::release_cached() {
  for (auto& [size, blocks] : free_) {
    for (void* ptr : blocks) {
      LOOM_CUDA_CHECK(cudaFreeHost(ptr));
      counter_.on_reserve(-static_cast<int64_t>(size));
    }
    blocks.clear();
  }
}

PinnedHostAllocator& pinned_allocator() {
  LOOM_CHECK(
      device_count() > 0,
      "pin_memory: pinned host memory needs a CUDA device, and none is visible (no GPU, or no driver)");
  static PinnedHostAllocator* const allocator = new PinnedHostAllocator();  // never destroyed: see the header
  return *allocator;
}

}  // namespace loom::cuda
