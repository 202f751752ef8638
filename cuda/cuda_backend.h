#pragma once
// Entry points of the CUDA backend (built only when LOOM_WITH_CUDA is defined). Everything else of the backend is
// private to cuda/.
#include "loom/core/allocator.h"
#include "loom/ops/backend.h"

namespace loom::cuda {

// Number of visible GPUs (0 when the driver or devices are absent; never throws).
int device_count();
// The backend and caching allocator of GPU `index`; throw a loom::Error naming the device when it is absent.
Backend& backend(int index);
Allocator& device_allocator(int index);
// Blocks until GPU `index` has finished every queued kernel; throws a loom::Error if one of them failed.
void synchronize(int index);

}  // namespace loom::cuda
