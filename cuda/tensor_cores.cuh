#pragma once
// Float32 products on the tensor cores at float32's accuracy ("3xTF32", CUTLASS's OpMultiplyAddFastF32, the
// arithmetic PyTorch's memory-efficient attention uses for float32 on sm_80 and later): each operand x is
// split into big = tf32(x) (its top 10 mantissa bits) and small = tf32(x - big) (the next 11), and a b is
// taken as a_big b_small + a_small b_big + a_big b_big. The dropped a_small b_small is about 2^-22 of a b,
// so the result is as close to a float32 product as float32 accumulation itself, where one tf32 product
// alone (2^-11) would not be.
//
// The instruction is mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: a warp multiplies a 16 x 8 A by an
// 8 x 8 B into a 16 x 8 accumulator, each lane holding the fragments the PTX ISA assigns it (g = lane / 4,
// t = lane % 4):
//   a[i] = A(g + 8 (i % 2), t + 4 (i / 2)),  b[i] = B(t + 4 i, g),  d[i] = D(g + 8 (i / 2), 2 t + i % 2).
// Under LOOM_CUDA=EMULATE (whose build defines LOOM_CUDA_EMULATION) the instruction is cuda/emulation's
// mma_m16n8k8_tf32, written from the same table: inline PTX is the one thing the emulation cannot compile.
// There mma_3xtf32's three instructions are one call (mma_m16n8k8_3xtf32, the same bits with one warp
// exchange instead of three), which makes the emulated tensor-core kernels affordable in every test run.
#include <cuda_runtime.h>

#include <cstdint>

#include "loom/cuda/cuda_backend.h"

namespace loom::cuda::tensor_cores {

constexpr int kMmaRows = 16;  // M
constexpr int kMmaCols = 8;   // N
constexpr int kMmaDepth = 8;  // K

// x rounded to tf32 (to nearest, ties away from zero, as cvt.rna.tf32.f32), as a float's bits.
__device__ __forceinline__ uint32_t to_tf32(float x) {
#if defined(LOOM_CUDA_EMULATION)
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u) return bits;  // inf and NaN stay as they are
  return (bits + 0x1000u) & 0xffffe000u;
#else
  uint32_t out;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(out) : "f"(x));
  return out;
#endif
}

// An operand split for 3xTF32.
struct Split {
  uint32_t big, small;
};
__device__ __forceinline__ Split split(float x) {
  const uint32_t big = to_tf32(x);
  return {big, to_tf32(x - __uint_as_float(big))};
}

// d += A B for one 16 x 8 x 8 step, every lane of the warp together.
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(LOOM_CUDA_EMULATION)
  ::loom::emulation::mma_m16n8k8_tf32(d, a, b);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // no tf32 tensor cores before sm_80; the host side never launches these kernels there
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// d += A B at float32 accuracy: the two small cross products first, while d is small, then the big one.
__device__ __forceinline__ void mma_3xtf32(float (&d)[4], const Split (&a)[4], const Split (&b)[2]) {
  const uint32_t a_big[4] = {a[0].big, a[1].big, a[2].big, a[3].big};
  const uint32_t a_small[4] = {a[0].small, a[1].small, a[2].small, a[3].small};
  const uint32_t b_big[2] = {b[0].big, b[1].big};
  const uint32_t b_small[2] = {b[0].small, b[1].small};
#if defined(LOOM_CUDA_EMULATION)
  ::loom::emulation::mma_m16n8k8_3xtf32(d, a_big, a_small, b_big, b_small);  // the same three, one exchange
#else
  mma_tf32(d, a_small, b_big);
  mma_tf32(d, a_big, b_small);
  mma_tf32(d, a_big, b_big);
#endif
}

// Whether Auto may put float32 attention on the current device's tensor cores (cuda_backend.h's
// tensor_cores_enabled: sm_80 or later, and the self-check passed).
inline bool current_device_enables_tensor_cores() {
  int device = 0;
  return cudaGetDevice(&device) == cudaSuccess && tensor_cores_enabled(device);
}

}  // namespace loom::cuda::tensor_cores
