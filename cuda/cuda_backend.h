#pragma once
// Entry points of the CUDA backend (built only when LOOM_WITH_CUDA is defined). Everything else of the
// backend is private to cuda/.
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

// The fused kernels scaled_dot_product_attention and lsh_attention may use on CUDA, process-wide, like
// PyTorch's torch.backends.cuda.enable_*_sdp switches: for comparing the kernels and for debugging.
//   TensorCores: for float32 dense and LSH attention, tensor-core kernels (3xTF32: float32's accuracy, as
//         PyTorch's memory-efficient attention computes float32) on GPUs from sm_80 for heads up to 128 wide;
//         else as Auto. Not yet Auto's first choice: they have run only in the CPU emulation of the backend,
//         and Auto adopts them once a GPU has run their parity rows;
//   Auto: register tiles for heads up to 128 wide, else shared-memory tiles (any head whose tiles fit the
//         device's shared memory), else the composed ops;
//   SharedTiles: never the register tiles;
//   Composed: the ops' composed defaults, which hold the score matrix ([L, S], or LSH's [N, W]).
enum class AttentionKernels { TensorCores, Auto, SharedTiles, Composed };
void set_attention_kernels(AttentionKernels kernels);
AttentionKernels attention_kernels();

}  // namespace loom::cuda
