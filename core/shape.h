#pragma once
// Shape: a list of up to kMaxDims extents (or strides) stored inline, so that making a tensor or a view never
// touches the heap for its metadata.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "loom/core/error.h"

namespace loom {

inline constexpr int kMaxDims = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }  // NOLINT: implicit on purpose
  explicit Shape(size_t n, int64_t value = 0) { resize(n, value); }
  template <typename It>
  Shape(It first, It last) {
    assign(first, last);
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int64_t& operator[](size_t i) { return data_[i]; }
  int64_t operator[](size_t i) const { return data_[i]; }
  int64_t* data() { return data_; }
  const int64_t* data() const { return data_; }
  int64_t* begin() { return data_; }
  int64_t* end() { return data_ + size_; }
  const int64_t* begin() const { return data_; }
  const int64_t* end() const { return data_ + size_; }
  int64_t back() const { return data_[size_ - 1]; }
  int64_t& back() { return data_[size_ - 1]; }

  void push_back(int64_t v) {
    LOOM_CHECK(size_ < kMaxDims, "Shape: at most ", kMaxDims, " dimensions are supported");
    data_[size_++] = v;
  }
  void pop_back() { --size_; }
  void insert(size_t pos, int64_t v) {
    LOOM_CHECK(size_ < kMaxDims, "Shape: at most ", kMaxDims, " dimensions are supported");
    for (size_t i = size_; i > pos; --i) data_[i] = data_[i - 1];
    data_[pos] = v;
    ++size_;
  }
  void erase(size_t pos) {
    for (size_t i = pos; i + 1 < size_; ++i) data_[i] = data_[i + 1];
    --size_;
  }
  void resize(size_t n, int64_t value = 0) {
    LOOM_CHECK(n <= static_cast<size_t>(kMaxDims), "Shape: at most ", kMaxDims, " dimensions are supported, got ", n);
    for (size_t i = size_; i < n; ++i) data_[i] = value;
    size_ = static_cast<uint8_t>(n);
  }
  template <typename It>
  void assign(It first, It last) {
    size_ = 0;
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  std::vector<int64_t> vec() const { return std::vector<int64_t>(begin(), end()); }

  bool operator==(const Shape& o) const { return size_ == o.size_ && std::equal(begin(), end(), o.begin()); }
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  int64_t data_[kMaxDims] = {};
  uint8_t size_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Shape& s);  // prints [2, 3]
std::string shape_str(const Shape& s);
// "[1, 2, 3]": a list of sizes, dims or counts for an error message (any length; a Shape holds at most 8).
std::string list_str(const std::vector<int64_t>& v);

// Product of extents (1 for a scalar shape).
int64_t shape_numel(const Shape& shape);
// Row-major strides, in elements.
Shape contiguous_strides(const Shape& shape);
// Wraps a possibly negative dim into [0, ndim); `op` names the caller in the error message.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// Broadcast two shapes by NumPy rules; throws naming `op` and both shapes when they are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// True when `from` broadcasts to exactly `to` (NumPy rules, without changing `to`): the check before
// expand().
bool broadcasts_to(const Shape& from, const Shape& to);

}  // namespace loom
