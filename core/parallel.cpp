#include "loom/core/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "loom/core/error.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace loom {
namespace {

thread_local bool t_in_parallel = false;

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { resize(threads); }
  ~ThreadPool() { stop_workers(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    stop_workers();
    stopping_ = false;
    // A new worker starts at the current generation: earlier jobs are finished and must not be run again.
    for (int i = 1; i < threads; ++i)
      workers_.emplace_back([this, i, g = generation_.load()] { worker_loop(i, g); });
  }

  // Runs task(0..n_chunks-1); chunk 0 on the calling thread.
  void run(int n_chunks, const std::function<void(int)>& task) {
    std::unique_lock<std::mutex> job_lock(job_mutex_);  // one job at a time
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      n_chunks_ = n_chunks;
      pending_ = n_chunks - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_chunk(task, 0);
    spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_chunk(const std::function<void(int)>& task, int chunk) {
    bool was = t_in_parallel;
    t_in_parallel = true;
    try {
      task(chunk);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    t_in_parallel = was;
  }

  // Waiting on a condition variable costs a futex sleep and wake-up: 40-80 us on this VM before a worker
  // starts a job, more than a small op's arithmetic (a column sum of [128, 256] took 48 us on two
  // threads, 2.5 us on one below the grain). So both sides first poll for a short while, as OpenMP runtimes
  // and PyTorch's pool do: a worker for the next job, the caller for the workers' chunks. kSpin bounds the
  // CPU a poll can take from other work (OpenBLAS's own threads, another process) when no job follows.
  static constexpr auto kSpin = std::chrono::microseconds(50);
  template <typename Ready>
  static void spin_until(Ready ready) {
    if (ready()) return;
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    for (int i = 1;; ++i) {
      if (ready()) return;
      if (i % 64 == 0 && std::chrono::steady_clock::now() >= deadline) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }

  void worker_loop(int index, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* task;
      spin_until([&] {
        return stopping_.load(std::memory_order_acquire) ||
               generation_.load(std::memory_order_acquire) != seen;
      });
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (index >= n_chunks_) continue;
        task = task_;
      }
      run_chunk(*task, index);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* task_ = nullptr;
  int n_chunks_ = 0;
  // Written under mutex_; atomic so that the polls above may read them without it.
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::exception_ptr error_;
};

int default_threads() {
  return detail::threads_from_env(std::getenv("LOOM_NUM_THREADS"),
                                  static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

std::atomic<int> g_num_threads{default_threads()};

ThreadPool& pool() {
  static ThreadPool p(g_num_threads.load());
  return p;
}

}  // namespace

void set_num_threads(int n) {
  LOOM_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got ", n);
  LOOM_CHECK(!t_in_parallel, "set_num_threads: cannot be called from inside a parallel region");
  g_num_threads = n;
  pool().resize(n);
  openblas_set_num_threads(n);
}

int get_num_threads() { return g_num_threads.load(); }

bool in_parallel_region() { return t_in_parallel; }

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  int64_t range = end - begin;
  grain = std::max<int64_t>(grain, 1);
  int threads = get_num_threads();
  int64_t chunks = std::min<int64_t>(threads, (range + grain - 1) / grain);
  if (chunks <= 1 || t_in_parallel) {
    fn(begin, end);
    return;
  }
  int64_t per = (range + chunks - 1) / chunks;
  pool().run(static_cast<int>(chunks), [&](int c) {
    int64_t lo = begin + c * per, hi = std::min(end, lo + per);
    if (lo < hi) fn(lo, hi);
  });
}

namespace detail {

int threads_from_env(const char* value, int hardware) {
  if (value == nullptr || *value == '\0') return hardware;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  if (*end != '\0' || n < 1 || n > 4096) {
    // This runs before main, where an exception would end the program unexplained: say so and go on.
    std::fprintf(stderr,
                 "loom: ignoring LOOM_NUM_THREADS='%s' (expected a positive integer); using %d threads\n",
                 value, hardware);
    return hardware;
  }
  return static_cast<int>(n);
}

}  // namespace detail

}  // namespace loom
