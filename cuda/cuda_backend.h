#pragma once
// Entry points of the CUDA backend (built only when LOOM_WITH_CUDA is defined). Everything else of the
// backend is private to cuda/.
#include <string>

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
// PyTorch's torch.backends.cuda.enable_*_sdp switches: for comparing the kernels and for debugging. Each
// setting takes the first family on this list that takes the problem, from its own place down:
//   Auto: tensor-core kernels for float32 dense and LSH attention with heads up to 128 wide (3xTF32:
//         float32's accuracy, as PyTorch's memory-efficient attention computes float32), on GPUs from sm_80
//         whose tensor-core self-check passed (tensor_cores_enabled); else as RegisterTiles;
//   RegisterTiles: FMA register tiles for heads up to 128 wide; else as SharedTiles;
//   SharedTiles: shared-memory tiles, for any head whose tiles fit the device's shared memory; else the
//         composed ops;
//   Composed: the ops' composed defaults, which hold the score matrix ([L, S], or LSH's [N, W]).
enum class AttentionKernels { Auto, RegisterTiles, SharedTiles, Composed };
void set_attention_kernels(AttentionKernels kernels);
AttentionKernels attention_kernels();

// The tensor-core self-check: one 64 x 16 x 16 float32 product on GPU `index` through the tensor-core
// attention kernels' own fragment loaders and 3xTF32 instruction sequence (cuda/tensor_core_check.cu),
// against float64 on the host. Returns the worst error relative to the sum of the terms' magnitudes: about
// 1e-7 when the instruction places its fragments as Loom expects, of order 1 when it does not;
// +infinity on a GPU without tf32 tensor cores (before sm_80). Runs every time it is called.
double tensor_core_self_check(int index);
// Whether Auto runs float32 attention on GPU `index`'s tensor cores: sm_80 or later and a self-check within
// 1e-5, run once per device and process (a failure is reported once on stderr: it would be a Loom bug).
bool tensor_cores_enabled(int index);

// One line for a log: GPU `index`'s name, compute capability, SM count and memory, and the kernels its
// float32 attention runs on under the current setting (the tensor cores once their self-check has passed,
// which this runs if it has not yet). Throws, naming the device, where there is no such GPU.
std::string describe_device(int index);

}  // namespace loom::cuda
