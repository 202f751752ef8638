#pragma once
// Row-major GEMM on OpenBLAS for float and double under one name, for kernels templated on the element type.
// Callers run OpenBLAS single-threaded and split work over Loom's pool themselves (see cpu_linalg.cpp for why);
// single_threaded_blas() makes sure of that before a parallel region.
#include <cblas.h>

#include <cstdint>

namespace loom::cpu {

// c = alpha * op(a) @ op(b) + beta * c, with op(a) [m, k], op(b) [k, n], c [m, n]; sizes and leading dims fit int.
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, double beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              static_cast<float>(alpha), a, static_cast<int>(lda), b, static_cast<int>(ldb), static_cast<float>(beta),
              c, static_cast<int>(ldc));
}

inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

inline void single_threaded_blas() {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

}  // namespace loom::cpu
