#pragma once
// Template bodies of strided.h.
#include <algorithm>

#include "loom/core/parallel.h"

namespace loom::cpu {

template <typename Fn>
void for_each_run(const StridedLoop& loop, int64_t grain_elems, Fn&& fn) {
  int64_t inner = loop.inner_size();
  int64_t outer = loop.outer_size();
  if (outer == 0 || inner == 0) return;
  int64_t st[StridedLoop::kMaxOperands];
  for (int k = 0; k < loop.n_operands; ++k) st[k] = loop.inner_stride(k);
  int64_t grain_rows = std::max<int64_t>(1, grain_elems / std::max<int64_t>(inner, 1));
  if (outer == 1 && inner > grain_elems) {
    // One long run: split the run itself.
    parallel_for(0, inner, grain_elems, [&](int64_t lo, int64_t hi) {
      char* ptrs[StridedLoop::kMaxOperands];
      for (int k = 0; k < loop.n_operands; ++k) ptrs[k] = loop.base[k] + lo * st[k] * loop.elem_size[k];
      fn(ptrs, st, hi - lo);
    });
    return;
  }
  parallel_for(0, outer, grain_rows, [&](int64_t lo, int64_t hi) {
    char* ptrs[StridedLoop::kMaxOperands];
    for (int64_t row = lo; row < hi; ++row) {
      for (int k = 0; k < loop.n_operands; ++k) ptrs[k] = loop.row_ptr(k, row);
      fn(ptrs, st, inner);
    }
  });
}

}  // namespace loom::cpu
