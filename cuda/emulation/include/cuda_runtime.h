#pragma once
// The emulation's cuda_runtime.h: the runtime API (device-side names come from cuda/emulation/device.h, which
// the build includes before every translated kernel file).
#include "cuda_runtime_api.h"

// The typed overload kernels are passed to, as in CUDA's cuda_runtime.h.
template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
