#pragma once
// LOOM_CUDA_CHECK / LOOM_CUBLAS_CHECK: turn a failed CUDA runtime or cuBLAS call into a loom::Error that
// names the call, the error code's name and its description.
#include <cuda_runtime_api.h>

#include "loom/core/error.h"
#include "loom/cuda/cublas_loader.h"

#define LOOM_CUDA_CHECK(call)                                                                      \
  do {                                                                                             \
    cudaError_t loom_cuda_status_ = (call);                                                        \
    if (loom_cuda_status_ != cudaSuccess) {                                                        \
      LOOM_FAIL("CUDA error: ", #call, " failed with ", cudaGetErrorName(loom_cuda_status_), " (", \
                cudaGetErrorString(loom_cuda_status_), ")");                                       \
    }                                                                                              \
  } while (0)

#define LOOM_CUBLAS_CHECK(call)                                                                          \
  do {                                                                                                   \
    cublasStatus_t loom_cublas_status_ = (call);                                                         \
    if (loom_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                                  \
      const ::loom::cuda::CublasApi& loom_cublas_ = ::loom::cuda::cublas_api();                          \
      LOOM_FAIL("cuBLAS error: ", #call, " failed with ", loom_cublas_.status_name(loom_cublas_status_), \
                " (", loom_cublas_.status_string(loom_cublas_status_), ")");                             \
    }                                                                                                    \
  } while (0)

namespace loom::cuda {

// Makes `device` current for the lifetime of the guard and restores the previous device afterwards, so a call
// on cuda:1 does not leave a caller that works on cuda:0 pointing at the wrong GPU.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    LOOM_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device)
      LOOM_CUDA_CHECK(cudaSetDevice(device));
    else
      previous_ = -1;
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace loom::cuda
