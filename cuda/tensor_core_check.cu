// The tensor-core self-check behind cuda_backend.h's tensor_core_self_check and tensor_cores_enabled.
//
// Why: the tensor-core attention kernels rely on one thing no CPU run can confirm, that
// mma.sync.m16n8k8.tf32 places its fragments as the PTX ISA's table says (tensor_cores.cuh). The CUDA
// emulation runs the kernels with the instruction written from that table. If the hardware placed them
// otherwise, every product would be wrong, silently. So before Auto puts float32 attention on the tensor
// cores of a device, one block multiplies a known 64 x 16 A by a 16 x 16 B there. It goes through the
// kernels' own path: operand tiles at their pitches, mma_tiles.cuh's warp_gemm with B taken both ways the
// kernels take it (k-major as V and dO, n-major as K), and the accumulator layout of Lane::row and
// Lane::col. The host compares the result with float64. Measured in the emulation: 8e-8 (3xTF32), 3e-4 with
// the big x big tf32 product alone, 1.1 with two of A's fragment registers swapped.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "loom/cuda/cuda_backend.h"
#include "loom/cuda/cuda_check.h"
#include "loom/cuda/mma_tiles.cuh"

namespace loom::cuda {
namespace {

using namespace mma_tiles;

constexpr int kDepth = 2 * kMmaDepth;  // two mma steps, so the k loop runs
constexpr int kCols = 2 * kMmaCols;    // two accumulator tiles, so the n loop runs
constexpr int kTilesWide = kCols / kMmaCols;
constexpr int kAPitch = pitch_of(kDepth);  // A as the kernels hold Q: [row][k]
constexpr int kKMajorPitch = pitch_of(kCols);
constexpr int kNMajorPitch = pitch_of(kDepth);
// Worst error allowed, relative to the sum of |a_k b_k| over the product's terms: 3xTF32 with float32
// accumulation over 16 terms stays near 1e-7, 1xTF32 near 3e-4.
constexpr double kTolerance = 1e-5;

// c[0] = A B with B k-major (B(k, n) at [k][n]), c[1] = A B with B n-major (at [n][k]); c is [2][64][16].
__global__ void __launch_bounds__(kBlockThreads) self_check_kernel(const float* a, const float* b, float* c) {
  __shared__ float sa[kRows * kAPitch];
  __shared__ float sb_k[kDepth * kKMajorPitch];
  __shared__ float sb_n[kCols * kNMajorPitch];
  for (int e = threadIdx.x; e < kRows * kDepth; e += kBlockThreads)
    sa[e / kDepth * kAPitch + e % kDepth] = a[e];
  for (int e = threadIdx.x; e < kDepth * kCols; e += kBlockThreads) {
    const int k = e / kCols, n = e % kCols;
    sb_k[k * kKMajorPitch + n] = b[e];
    sb_n[n * kNMajorPitch + k] = b[e];
  }
  __syncthreads();
  const Lane l;
  float by_k[kTilesWide][4], by_n[kTilesWide][4];
  zero(by_k);
  zero(by_n);
  warp_gemm<true>(by_k, l, sa, kAPitch, l.first_row(), sb_k, kKMajorPitch, kDepth, kTilesWide);
  warp_gemm<false>(by_n, l, sa, kAPitch, l.first_row(), sb_n, kNMajorPitch, kDepth, kTilesWide);
#pragma unroll
  for (int nt = 0; nt < kTilesWide; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int at = (l.first_row() + l.row(i)) * kCols + kMmaCols * nt + l.col(i);
      c[at] = by_k[nt][i];
      c[kRows * kCols + at] = by_n[nt][i];
    }
}

// Operands with all 24 bits of a float's significand in use (so the bits tf32 drops matter), both signs, no
// two alike: a fixed integer hash into [-1, 1).
float operand(uint32_t i) {
  uint32_t x = i * 2654435761u + 0x9e3779b9u;
  x ^= x >> 15;
  x *= 0x2c1b3c6du;
  x ^= x >> 12;
  return static_cast<float>(static_cast<double>(x >> 8) / double{1 << 23} - 1.0);
}

struct DeviceFree {
  void operator()(float* p) const { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<float, DeviceFree>;

DeviceBuffer device_buffer(size_t count) {
  void* p = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(&p, count * sizeof(float)));
  return DeviceBuffer(static_cast<float*>(p));
}

// Whether GPU `index` (checked to exist, for the error `what` names) has tf32 tensor cores (sm_80 on).
bool has_tf32(const char* what, int index) {
  LOOM_CHECK(index >= 0 && index < device_count(), what, ": no CUDA device cuda:", index, " (",
             device_count(), " visible)");
  int major = 0;
  LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index));
  return major >= 8;
}

}  // namespace

double tensor_core_self_check(int index) {
  if (!has_tf32("tensor_core_self_check", index)) return std::numeric_limits<double>::infinity();
  DeviceGuard guard(index);
  std::vector<float> a(kRows * kDepth), b(kDepth * kCols), c(2 * kRows * kCols);
  for (size_t i = 0; i < a.size(); ++i) a[i] = operand(static_cast<uint32_t>(i));
  for (size_t i = 0; i < b.size(); ++i) b[i] = operand(static_cast<uint32_t>(a.size() + i));
  const DeviceBuffer da = device_buffer(a.size()), db = device_buffer(b.size()), dc = device_buffer(c.size());
  LOOM_CUDA_CHECK(cudaMemcpy(da.get(), a.data(), a.size() * sizeof(float), cudaMemcpyHostToDevice));
  LOOM_CUDA_CHECK(cudaMemcpy(db.get(), b.data(), b.size() * sizeof(float), cudaMemcpyHostToDevice));
  self_check_kernel<<<1, kBlockThreads>>>(da.get(), db.get(), dc.get());
  LOOM_CUDA_CHECK(cudaGetLastError());
  LOOM_CUDA_CHECK(cudaMemcpy(c.data(), dc.get(), c.size() * sizeof(float), cudaMemcpyDeviceToHost));
  double worst = 0;
  for (int layout = 0; layout < 2; ++layout)
    for (int r = 0; r < kRows; ++r)
      for (int n = 0; n < kCols; ++n) {
        double exact = 0, magnitude = 0;
        for (int k = 0; k < kDepth; ++k) {
          const double term = double{a[r * kDepth + k]} * double{b[k * kCols + n]};
          exact += term;
          magnitude += std::abs(term);
        }
        const double error = std::abs(c[(layout * kRows + r) * kCols + n] - exact) / magnitude;
        // NaN (a lane that never wrote) counts as the worst error there is.
        worst = std::isnan(error) ? std::numeric_limits<double>::infinity() : std::max(worst, error);
      }
  return worst;
}

bool tensor_cores_enabled(int index) {
  static std::mutex mutex;
  static std::map<int, bool> verdicts;  // per device, for the life of the process
  std::lock_guard<std::mutex> lock(mutex);
  if (const auto known = verdicts.find(index); known != verdicts.end()) return known->second;
  bool enabled = false;
  if (has_tf32("tensor_cores_enabled", index)) {
    const double error = tensor_core_self_check(index);
    enabled = error <= kTolerance;
    if (!enabled)
      std::fprintf(stderr,
                   "loom: warning: cuda:%d: the tensor-core self-check's worst error is %.3g (at most %.0e "
                   "expected), so float32 attention stays on the FMA kernels there. This is a Loom bug; "
                   "please report it with the GPU's name.\n",
                   index, error, kTolerance);
  }
  verdicts[index] = enabled;
  return enabled;
}

}  // namespace loom::cuda
