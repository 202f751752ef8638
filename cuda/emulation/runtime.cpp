// The host side of the CUDA emulation (LOOM_CUDA=EMULATE): the runtime calls Loom makes, on one emulated
// device whose memory is host memory, and the cuBLAS calls, on the host's BLAS (column-major, as cuBLAS).
// Kernels run when they are launched (device.cpp), so copies and synchronisation have nothing to wait for.
#include <cblas.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "cublas_v2.h"
#include "cuda_runtime_api.h"
#include "loom/cuda/cublas_loader.h"
#include "loom/cuda/emulation/device.h"
#include "loom/ops/cpu/blas.h"

namespace {
int current_device = 0;
// Device allocations are 256-byte aligned, as cudaMalloc's.
void* aligned(size_t bytes) { return std::aligned_alloc(256, (bytes + 255) / 256 * 256); }
}  // namespace

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    default:
      return "emulated CUDA error";
  }
}
cudaError_t cudaGetLastError() {
  const int e = loom::emulation::pending_launch_error;
  loom::emulation::pending_launch_error = 0;
  return static_cast<cudaError_t>(e);
}
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = current_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  current_device = device;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 12000;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  std::snprintf(prop->name, sizeof prop->name, "%s", "Loom's CUDA emulation on the CPU");
  prop->totalGlobalMem = loom::emulation::kDeviceMemoryBytes;
  prop->major = 9;  // as cudaDeviceGetAttribute's compute capability
  prop->minor = 0;
  prop->multiProcessorCount = 1;  // blocks run one after another
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(loom::emulation::kDefaultSharedBytes);
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(loom::emulation::kOptInSharedBytes);
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;  // an H100's
      return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return loom::emulation::set_max_dynamic_shared(func, value) ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  // A request beyond the device's memory fails as on a GPU, without asking the host allocator (which, under
  // AddressSanitizer, aborts on an impossible size instead of failing).
  if (bytes > loom::emulation::kDeviceMemoryBytes) {
    *ptr = nullptr;
    return cudaErrorMemoryAllocation;
  }
  *ptr = aligned(bytes);
  return *ptr != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned) { return cudaMalloc(ptr, bytes); }
cudaError_t cudaFreeHost(void* ptr) { return cudaFree(ptr); }
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes > 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemcpyPeer(void* dst, int, const void* src, int, size_t bytes) {
  return cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
}

// ---- cuBLAS
// -------------------------------------------------------------------------------------------------

namespace {
CBLAS_TRANSPOSE transpose(cublasOperation_t op) { return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }
}  // namespace

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  static int token;
  *handle = reinterpret_cast<cublasHandle_t>(&token);
  return CUBLAS_STATUS_SUCCESS;
}
namespace {
template <typename T>
cublasStatus_t gemm_strided_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, T alpha,
                                    const T* A, int lda, long long sa, const T* B, int ldb, long long sb,
                                    T beta, T* C, int ldc, long long sc, int batch) {
  // OpenBLAS on one thread, as Loom's CPU kernels run it: after a threaded call its workers spin on
  // sched_yield, and between the emulated kernels that follow they did so for most of a run (emulated
  // test_reversible: 98 s of CPU in 56 s before, 57 s in 57 s after), taking the core ctest -j2 gives another
  // suite.
  loom::cpu::single_threaded_blas();
  for (int i = 0; i < batch; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm(CblasColMajor, transpose(ta), transpose(tb), m, n, k, alpha, A + i * sa, lda, B + i * sb,
                  ldb, beta, C + i * sc, ldc);
    } else {
      cblas_dgemm(CblasColMajor, transpose(ta), transpose(tb), m, n, k, alpha, A + i * sa, lda, B + i * sb,
                  ldb, beta, C + i * sc, ldc);
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                                         int n, int k, const float* alpha, const float* A, int lda,
                                         long long sa, const float* B, int ldb, long long sb,
                                         const float* beta, float* C, int ldc, long long sc, int batch) {
  return gemm_strided_batched(ta, tb, m, n, k, *alpha, A, lda, sa, B, ldb, sb, *beta, C, ldc, sc, batch);
}
cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                                         int n, int k, const double* alpha, const double* A, int lda,
                                         long long sa, const double* B, int ldb, long long sb,
                                         const double* beta, double* C, int ldc, long long sc, int batch) {
  return gemm_strided_batched(ta, tb, m, n, k, *alpha, A, lda, sa, B, ldb, sb, *beta, C, ldc, sc, batch);
}
cublasStatus_t cublasSscal_v2(cublasHandle_t, int n, const float* alpha, float* x, int incx) {
  loom::cpu::single_threaded_blas();
  cblas_sscal(n, *alpha, x, incx);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDscal_v2(cublasHandle_t, int n, const double* alpha, double* x, int incx) {
  loom::cpu::single_threaded_blas();
  cblas_dscal(n, *alpha, x, incx);
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusName(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE";
}
const char* cublasGetStatusString(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? "success" : "invalid value";
}

// The emulation's stand-in for cublas_loader.cpp: the functions above instead of a dlopen'ed cuBLAS.
namespace loom::cuda {
const CublasApi& cublas_api() {
  static const CublasApi api{
      cublasCreate_v2, cublasSgemmStridedBatched, cublasDgemmStridedBatched, cublasSscal_v2,
      cublasDscal_v2,  cublasGetStatusName,       cublasGetStatusString};
  return api;
}
}  // namespace loom::cuda
