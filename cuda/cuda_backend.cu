// The CUDA backend's entry points (device discovery, one backend and one caching allocator per GPU) and its
// memory, factory, matrix-product and random kernels.
#include <climits>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "loom/core/philox.h"
#include "loom/cuda/caching_allocator.h"
#include "loom/cuda/cuda_backend.h"
#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"

namespace loom::cuda {
namespace {

void check_device(int index) {
  int n = device_count();
  LOOM_CHECK(n > 0, "cuda:", index, ": no CUDA device is visible (no GPU, or no driver)");
  LOOM_CHECK(index >= 0 && index < n, "cuda:", index, ": no such CUDA device (", n, " visible)");
}

// One T per visible GPU, created on first use and never destroyed: tensors and their storage may outlive any
// static destructor, and the CUDA runtime may be torn down before them. The list itself is never destroyed
// either, so the objects stay reachable and a leak checker does not report them at exit.
template <typename T>
T& per_device(int index) {
  check_device(index);
  static const std::vector<T*>* const all = [] {
    auto* v = new std::vector<T*>;
    for (int i = 0; i < device_count(); ++i) v->push_back(new T(i));
    return v;
  }();
  return *(*all)[index];
}

template <typename T>
struct Fill {
  T* out;
  T value;
  __device__ __forceinline__ void operator()(int64_t i) const { out[i] = value; }
  __device__ __forceinline__ void operator()(const Offsets<1>& o) const { out[o.v[0]] = value; }

  static constexpr int kWidest = sizeof(T);
  template <int V>
  bool aligned() const {
    return pack_aligned<V>(out);
  }
  template <int V>
  __device__ __forceinline__ void pack(int64_t i) const {
    Pack<T, V> x;
#pragma unroll
    for (int k = 0; k < V; ++k) x.v[k] = value;
    store_pack<V>(out, i, x);
  }
};

template <typename To, typename From>
struct ConvertOp {
  __device__ __forceinline__ To operator()(From v) const { return convert<To>(v); }
};

// Floating ranges compute start + i * step in double; integer ranges use the truncated start and step, as the
// CPU (and PyTorch) do.
template <typename T>
__global__ void arange_kernel(T* out, int64_t n, int64_t stride, double start, double step) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    if constexpr (std::is_floating_point_v<T>) {
      out[i * stride] = static_cast<T>(start + static_cast<double>(i) * step);
    } else {
      out[i * stride] = static_cast<T>(static_cast<T>(start) + static_cast<T>(i) * static_cast<T>(step));
    }
  }
}

// A [batch, rows, cols] operand seen by cuBLAS, which is column-major: a row-major matrix X is the
// column-major X^T with leading dimension = its row stride, and a transposed view is X itself under
// CUBLAS_OP_T.
struct GemmOperand {
  bool usable = false;
  cublasOperation_t op = CUBLAS_OP_N;
  int ld = 1;
  int64_t batch_stride = 0;
};

GemmOperand describe_for_gemm(const Tensor& x) {
  int64_t rows = x.size(1), cols = x.size(2), rs = x.stride(1), cs = x.stride(2);
  GemmOperand g;
  int64_t ld = 1;
  g.batch_stride = x.size(0) == 1 ? 0 : x.stride(0);
  // A dim of size 1 places no constraint on its stride; cuBLAS only needs ld >= the other extent.
  if (cs == 1 && (rows == 1 || rs >= std::max<int64_t>(cols, 1))) {
    g.usable = true;
    g.op = CUBLAS_OP_N;
    ld = rows == 1 ? std::max<int64_t>(cols, 1) : rs;
  } else if (rs == 1 && (cols == 1 || cs >= std::max<int64_t>(rows, 1))) {
    g.usable = true;
    g.op = CUBLAS_OP_T;
    ld = cols == 1 ? std::max<int64_t>(rows, 1) : cs;
  }
  g.usable = g.usable && ld <= INT_MAX;
  g.ld = static_cast<int>(ld);
  return g;
}

// --- Philox draws ------------------------------------------------------------------------------------------
// The mapping of ops/cpu/cpu_random.cpp, element for element (i is the row-major index): one thread per
// Philox counter, writing the 4 (float32 uniform, dropout) or 2 (float64 uniform, normal) elements it covers.
// The arithmetic is spelled with round-to-nearest intrinsics, which nvcc never fuses into FMAs. Dropout
// matches the CPU bit for bit, and so does float32 uniform: the CPU's multiply-add (fused or not, as its
// compiler chooses) differs at most in a double's last bit, which rounding to float32 discards except in
// vanishingly rare ties (and which is exact for ranges like [0, 1)). float64 uniform may differ in that last
// bit, and normal draws in the last bits of the device's log, sin and cos.

__global__ void uniform_float_kernel(float* out, int64_t n, PhiloxState state, double low, double range) {
  int64_t counters = (n + 3) / 4;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < counters;
       c += int64_t{gridDim.x} * blockDim.x) {
    Philox4x32 b = philox_block(state.seed, state.offset + static_cast<uint64_t>(c));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      int64_t i = 4 * c + k;
      if (i < n)
        out[i] =
            static_cast<float>(__dadd_rn(low, __dmul_rn(range, static_cast<double>(philox_uniform(b.v[k])))));
    }
  }
}

__global__ void uniform_double_kernel(double* out, int64_t n, PhiloxState state, double low, double range) {
  int64_t counters = (n + 1) / 2;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < counters;
       c += int64_t{gridDim.x} * blockDim.x) {
    Philox4x32 b = philox_block(state.seed, state.offset + static_cast<uint64_t>(c));
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      int64_t i = 2 * c + k;
      double u = __dsub_rn(1.0, philox_uniform_double(b.v[2 * k], b.v[2 * k + 1]));
      if (i < n) out[i] = __dadd_rn(low, __dmul_rn(range, u));
    }
  }
}

// Box-Muller in double: elements 2c and 2c + 1 are the cosine and sine outputs of counter c.
template <typename T>
__global__ void normal_kernel(T* out, int64_t n, PhiloxState state, double mean, double std) {
  constexpr double kTwoPi = 2.0 * 3.14159265358979323846;
  int64_t counters = (n + 1) / 2;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < counters;
       c += int64_t{gridDim.x} * blockDim.x) {
    Philox4x32 b = philox_block(state.seed, state.offset + static_cast<uint64_t>(c));
    double r = sqrt(__dmul_rn(-2.0, log(philox_uniform_double(b.v[0], b.v[1]))));
    double theta = __dmul_rn(kTwoPi, philox_uniform_double(b.v[2], b.v[3]));
    double sr = __dmul_rn(std, r);
    out[2 * c] = static_cast<T>(__dadd_rn(mean, __dmul_rn(sr, cos(theta))));
    if (2 * c + 1 < n) out[2 * c + 1] = static_cast<T>(__dadd_rn(mean, __dmul_rn(sr, sin(theta))));
  }
}

// keep iff (w >> 8) >= threshold, which is exactly philox_uniform(w) >= p.
template <typename T>
__global__ void dropout_kernel(const T* in, T* out, int64_t n, PhiloxState state, uint32_t threshold,
                               T scale) {
  int64_t counters = (n + 3) / 4;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < counters;
       c += int64_t{gridDim.x} * blockDim.x) {
    Philox4x32 b = philox_block(state.seed, state.offset + static_cast<uint64_t>(c));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      int64_t i = 4 * c + k;
      if (i < n) out[i] = (b.v[k] >> 8) >= threshold ? in[i] * scale : T(0);
    }
  }
}

// Runs gen(contiguous tensor) on out itself, or on a contiguous buffer copied into out afterwards, so that
// element i is out's row-major index either way (as on the CPU).
template <typename Gen>
void generate_into(CudaBackend& backend, const Tensor& out, Gen gen) {
  Tensor target = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.options());
  gen(target);
  LOOM_CUDA_CHECK_LAUNCH();
  if (!target.is_same(out)) backend.copy(target, out);
}

}  // namespace

void synchronize(int index) {
  check_device(index);
  DeviceGuard guard(index);
  LOOM_CUDA_CHECK(cudaDeviceSynchronize());
}

int device_count() {
  // cudaGetDeviceCount fails without a driver or a GPU; that means no devices, never an exception.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

std::string describe_device(int index) {
  check_device(index);
  cudaDeviceProp prop{};
  LOOM_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  char head[512];
  std::snprintf(head, sizeof head, "%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
                prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / double(1 << 30));
  const char* kernels = "";
  switch (attention_kernels()) {
    case AttentionKernels::Auto:
      kernels = tensor_cores_enabled(index) ? "the tensor cores (3xTF32; self-check passed)"
                : prop.major >= 8           ? "FMA register tiles (the tensor-core self-check failed)"
                                            : "FMA register tiles (no tf32 tensor cores)";
      break;
    case AttentionKernels::RegisterTiles:
      kernels = "FMA register tiles (pinned)";
      break;
    case AttentionKernels::SharedTiles:
      kernels = "shared-memory tiles (pinned)";
      break;
    case AttentionKernels::Composed:
      kernels = "the composed ops (pinned)";
      break;
  }
  return std::string(head) + "; float32 attention on " + kernels;
}

Backend& backend(int index) { return per_device<CudaBackend>(index); }
Allocator& device_allocator(int index) { return per_device<CachingAllocator>(index); }

cublasHandle_t CudaBackend::cublas() {
  std::call_once(cublas_once_, [this] { LOOM_CUBLAS_CHECK(cublas_api().create(&cublas_)); });
  return cublas_;
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  if (dst.numel() == 0) return;
  DeviceGuard guard(device_);
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice));
    return;
  }
  LOOM_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using To = scalar_t;
    LOOM_DISPATCH_ALL(src.dtype(), "copy", [&] {
      using From = scalar_t;
      launch_elementwise<2>({dst, src},
                            Map1<To, From, ConvertOp<To, From>>{ptr<To>(dst), ptr<From>(src), {}});
    });
  });
}

void CudaBackend::copy_across_devices(const Tensor& src, const Tensor& dst) {
  size_t nbytes = dst.nbytes();
  if (nbytes == 0) return;
  DeviceGuard guard(device_);
  // Synchronous copies: a host source may be freed as soon as this returns, and a host destination is read
  // next.
  if (src.device().is_cpu()) {
    LOOM_CUDA_CHECK(cudaMemcpy(dst.data_ptr(), src.data_ptr(), nbytes, cudaMemcpyHostToDevice));
  } else if (dst.device().is_cpu()) {
    LOOM_CUDA_CHECK(cudaMemcpy(dst.data_ptr(), src.data_ptr(), nbytes, cudaMemcpyDeviceToHost));
  } else if (src.device() == dst.device()) {
    LOOM_CUDA_CHECK(cudaMemcpy(dst.data_ptr(), src.data_ptr(), nbytes, cudaMemcpyDeviceToDevice));
  } else {
    LOOM_CUDA_CHECK(
        cudaMemcpyPeer(dst.data_ptr(), dst.device().index, src.data_ptr(), src.device().index, nbytes));
  }
}

void CudaBackend::fill(const Tensor& dst, double value) {
  DeviceGuard guard(device_);
  LOOM_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    launch_elementwise<1>({dst}, Fill<scalar_t>{ptr<scalar_t>(dst), convert<scalar_t>(value)});
  });
}

void CudaBackend::arange(double start, double step, const Tensor& out) {
  int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_NUMERIC(out.dtype(), "arange", [&] {
    arange_kernel<<<blocks_for(n), kThreads>>>(ptr<scalar_t>(out), n, out.stride(0), start, step);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::bmm(const Tensor& a_in, const Tensor& b_in, const Tensor& out, double alpha, double beta) {
  int64_t batch = out.size(0), m = out.size(1), n = out.size(2), k = a_in.size(2);
  if (batch == 0 || m == 0 || n == 0) return;
  DeviceGuard guard(device_);
  std::lock_guard<std::mutex> lock(cublas_mutex_);  // a cuBLAS handle serves one host thread at a time
  cublasHandle_t handle = cublas();
  if (k == 0) {  // an empty sum: out = beta * out
    if (beta == 0) {
      fill(out, 0.0);
      return;
    }
    LOOM_CHECK(out.numel() <= INT_MAX, "matmul: output of ", out.numel(),
               " elements is too large for cuBLAS");
    int count = static_cast<int>(out.numel());
    LOOM_DISPATCH_FLOATING(out.dtype(), "matmul", [&] {
      if constexpr (std::is_same_v<scalar_t, float>) {
        float s = static_cast<float>(beta);
        LOOM_CUBLAS_CHECK(cublas_api().sscal(handle, count, &s, ptr<float>(out), 1));
      } else {
        LOOM_CUBLAS_CHECK(cublas_api().dscal(handle, count, &beta, ptr<double>(out), 1));
      }
    });
    return;
  }
  LOOM_CHECK(batch <= INT_MAX && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX, "matmul: sizes [", batch, ", ",
             m, ", ", k, "] x [", batch, ", ", k, ", ", n, "] exceed cuBLAS's 32-bit limits");
  // Layouts cuBLAS cannot express (no unit stride in the matrix dims) are copied to contiguous first.
  Tensor a = a_in, b = b_in;
  GemmOperand ga = describe_for_gemm(a), gb = describe_for_gemm(b);
  if (!ga.usable) {
    a = a.contiguous();
    ga = describe_for_gemm(a);
  }
  if (!gb.usable) {
    b = b.contiguous();
    gb = describe_for_gemm(b);
  }
  // Row-major C = A B is column-major C^T = B^T A^T, so B comes first and the roles of m and n swap.
  int mi = static_cast<int>(n), ni = static_cast<int>(m), ki = static_cast<int>(k),
      bi = static_cast<int>(batch);
  LOOM_DISPATCH_FLOATING(out.dtype(), "matmul", [&] {
    if constexpr (std::is_same_v<scalar_t, float>) {
      float al = static_cast<float>(alpha), be = static_cast<float>(beta);
      LOOM_CUBLAS_CHECK(cublas_api().sgemm_strided_batched(
          handle, gb.op, ga.op, mi, ni, ki, &al, ptr<float>(b), gb.ld, gb.batch_stride, ptr<float>(a), ga.ld,
          ga.batch_stride, &be, ptr<float>(out), mi, m * n, bi));
    } else {
      LOOM_CUBLAS_CHECK(cublas_api().dgemm_strided_batched(
          handle, gb.op, ga.op, mi, ni, ki, &alpha, ptr<double>(b), gb.ld, gb.batch_stride, ptr<double>(a),
          ga.ld, ga.batch_stride, &beta, ptr<double>(out), mi, m * n, bi));
    }
  });
}

void CudaBackend::uniform(const Tensor& out, double low, double high, PhiloxState state) {
  int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(device_);
  generate_into(*this, out, [&](const Tensor& t) {
    if (t.dtype() == DType::Float32) {
      uniform_float_kernel<<<blocks_for((n + 3) / 4), kThreads>>>(ptr<float>(t), n, state, low, high - low);
      return;
    }
    LOOM_CHECK(t.dtype() == DType::Float64, "uniform: expected a floating dtype, got ",
               dtype_name(t.dtype()));
    uniform_double_kernel<<<blocks_for((n + 1) / 2), kThreads>>>(ptr<double>(t), n, state, low, high - low);
  });
}

void CudaBackend::normal(const Tensor& out, double mean, double std, PhiloxState state) {
  int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(device_);
  generate_into(*this, out, [&](const Tensor& t) {
    LOOM_DISPATCH_FLOATING(t.dtype(), "normal", [&] {
      normal_kernel<<<blocks_for((n + 1) / 2), kThreads>>>(ptr<scalar_t>(t), n, state, mean, std);
    });
  });
}

void CudaBackend::dropout(const Tensor& in, double p, PhiloxState state, const Tensor& out) {
  int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(device_);
  Tensor src = in.contiguous();
  uint32_t threshold = dropout_threshold(p);
  generate_into(*this, out, [&](const Tensor& t) {
    LOOM_DISPATCH_FLOATING(t.dtype(), "dropout", [&] {
      using T = scalar_t;
      T scale = dropout_scale<T>(p);
      dropout_kernel<<<blocks_for((n + 3) / 4), kThreads>>>(ptr<T>(src), ptr<T>(t), n, state, threshold,
                                                            scale);
    });
  });
}

}  // namespace loom::cuda
