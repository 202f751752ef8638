#pragma once
// Storage: one allocation on one device, shared by a tensor and all of its views.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "loom/core/allocator.h"
#include "loom/core/device.h"

namespace loom {

class Storage {
 public:
  // nbytes from the allocator serving `device`, or from `allocator` (pinned host memory, say).
  Storage(size_t nbytes, Device device);
  Storage(size_t nbytes, Device device, Allocator& allocator);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  const Allocator& allocator() const { return *allocator_; }
  // Bumped by every in-place write, so autograd can refuse a saved tensor that was modified after saving.
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  uint64_t version_ = 0;
};

}  // namespace loom
