// Batched GEMM on OpenBLAS.
//
// Threading: OpenBLAS runs single-threaded and Loom's pool splits the work: whole batch entries when there are
// enough of them, otherwise row (or column) blocks of each product. Measured on this 2-core AVX-512 host
// (OpenBLAS 0.3.21, Haswell kernels), float32, min of interleaved runs, against a raw cblas_sgemm with OpenBLAS's
// own 2 threads:
//   square GEMM      256: 0.212 vs 0.216 ms   512: 1.56 vs 1.59 ms   1024: 11.9 vs 12.1 ms
//                   2048: 93.2 vs 93.9 ms    4096: 737 vs 742 ms    (Loom vs raw: within 2% at every size)
//   [64, 128x64 @ 64x128]: 0.79 ms with Loom splitting batches vs 2.09 ms looping cblas with OpenBLAS threads
//   (each small GEMM is too small for OpenBLAS to split well) and 1.59 ms single-threaded.
// OpenBLAS's pthreads workers also spin after each threaded call, stealing the cores from the Loom kernels that
// run next; keeping OpenBLAS at one thread avoids that.
#include <algorithm>
#include <climits>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/blas.h"
#include "loom/ops/cpu/cpu_backend.h"

namespace loom {
namespace {

// Multiply-adds below which a GEMM runs on the calling thread (waking the pool costs more than it saves).
constexpr int64_t kParallelMacs = int64_t{1} << 20;
// Row/column blocks are multiples of this, so every block keeps OpenBLAS's micro-kernel fully unrolled.
constexpr int64_t kSplitAlign = 64;

// How BLAS reads one [rows, cols] operand: row-major (NoTrans) with leading dimension ld, or as the transpose of
// a row-major [cols, rows] matrix. Strides of size-1 dims are irrelevant, so those dims take any legal ld.
struct Layout {
  CBLAS_TRANSPOSE trans;
  int64_t ld;
};

Layout blas_layout(const Tensor& t) {
  int64_t rows = t.size(1), cols = t.size(2), sr = t.stride(1), sc = t.stride(2);
  if ((cols == 1 || sc == 1) && (rows == 1 || sr >= std::max<int64_t>(cols, 1)))
    return {CblasNoTrans, rows == 1 ? std::max<int64_t>(cols, 1) : sr};
  if ((rows == 1 || sr == 1) && (cols == 1 || sc >= std::max<int64_t>(rows, 1)))
    return {CblasTrans, cols == 1 ? std::max<int64_t>(rows, 1) : sc};
  LOOM_FAIL("matmul: internal error: operand ", describe(t), " with strides ", t.strides(),
            " has no unit stride in its last two dims");
}

// Element offset of row r (or column c) of an operand read with layout l.
inline int64_t row_offset(const Layout& l, int64_t r) { return l.trans == CblasNoTrans ? r * l.ld : r; }
inline int64_t col_offset(const Layout& l, int64_t c) { return l.trans == CblasNoTrans ? c : c * l.ld; }

template <typename T>
void bmm_impl(const Tensor& a, const Tensor& b, const Tensor& out, double alpha, double beta) {
  int64_t batch = out.size(0), m = out.size(1), n = out.size(2), k = a.size(2);
  if (batch == 0 || m == 0 || n == 0) return;
  T* c = out.data<T>();
  if (k == 0) {  // out = beta * out; BLAS is not asked, as lda >= max(1, k) would be meaningless
    int64_t total = out.numel();
    for (int64_t i = 0; i < total; ++i) c[i] = beta == 0 ? T(0) : static_cast<T>(beta * c[i]);
    return;
  }
  LOOM_CHECK(std::max({m, n, k, a.stride(1), a.stride(2), b.stride(1), b.stride(2)}) <= INT_MAX,
             "matmul: a dim or stride exceeds BLAS's 32-bit index limit (shapes ", a.shape(), " and ", b.shape(), ")");
  Layout la = blas_layout(a), lb = blas_layout(b);
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  int64_t sa = a.stride(0), sb = b.stride(0), sc = m * n;

  // Work items: `parts` row blocks (or column blocks when n > m) of each batch entry.
  int threads = get_num_threads();
  int64_t macs = m * n * k;
  bool split_rows = m >= n;
  int64_t extent = split_rows ? m : n;
  int64_t parts = 1;
  if (batch < threads && batch * macs >= 2 * kParallelMacs) {
    parts = std::min<int64_t>((threads + batch - 1) / batch, (extent + kSplitAlign - 1) / kSplitAlign);
  }
  int64_t block = (extent + parts - 1) / parts;
  block = (block + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
  parts = (extent + block - 1) / block;

  cpu::single_threaded_blas();  // see the note at the top
  int64_t grain = std::max<int64_t>(1, kParallelMacs / std::max<int64_t>(1, macs / parts));
  parallel_for(0, batch * parts, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      int64_t i = t / parts, begin = t % parts * block, len = std::min(block, extent - begin);
      const T* ai = pa + i * sa;
      const T* bi = pb + i * sb;
      T* ci = c + i * sc;
      if (split_rows) {
        cpu::gemm(la.trans, lb.trans, len, n, k, alpha, ai + row_offset(la, begin), la.ld, bi, lb.ld, beta, ci + begin * n,
             n);
      } else {
        cpu::gemm(la.trans, lb.trans, m, len, k, alpha, ai, la.ld, bi + col_offset(lb, begin), lb.ld, beta, ci + begin, n);
      }
    }
  });
}

}  // namespace

void CpuBackend::bmm(const Tensor& a, const Tensor& b, const Tensor& out, double alpha, double beta) {
  LOOM_DISPATCH_FLOATING(out.dtype(), "matmul", [&] { bmm_impl<scalar_t>(a, b, out, alpha, beta); });
}

}  // namespace loom
