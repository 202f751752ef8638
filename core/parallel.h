#pragma once
// Loom's one thread pool. Workers sleep on a condition variable between jobs (they never spin), so they do not
// fight OpenBLAS or the caller for the cores.
#include <cstdint>
#include <functional>

namespace loom {

// Threads used by Loom's CPU kernels and by OpenBLAS (default: the environment variable LOOM_NUM_THREADS, as
// OMP_NUM_THREADS, else the number of hardware threads).
void set_num_threads(int n);
int get_num_threads();

namespace detail {
// The default thread count from LOOM_NUM_THREADS's value (null or empty: unset): a positive integer up to
// 4096 is taken; anything else is reported on stderr and `hardware` is used.
int threads_from_env(const char* value, int hardware);
}  // namespace detail

// Runs fn(chunk_begin, chunk_end) over [begin, end) split into at most get_num_threads() contiguous chunks of at
// least `grain` iterations; runs inline when the range is small or when called from inside a parallel region.
void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// True on a pool worker or inside parallel_for's inline chunk (nested parallelism runs serially).
bool in_parallel_region();

}  // namespace loom
