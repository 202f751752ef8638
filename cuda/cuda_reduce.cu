// Reductions on the GPU. The input is viewed with the reduced dims last and made contiguous in the dtype the
// reduction computes in, so each output element reduces one contiguous row: short rows get a warp each, long
// rows a block. Partial results combine through warp shuffles and shared memory in a fixed order (no
// atomics), so every run gives bit-identical results.
#include <cmath>
#include <limits>
#include <vector>

#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"
#include "loom/cuda/row_reduce.cuh"

namespace loom::cuda {
namespace {

template <int kGroup, ReduceOp kOp, typename T>
__device__ T reduce_row(const T* x, int64_t n, int lane, double param) {
  using A = Accumulator<T>;
  auto value = [x](int64_t j) { return static_cast<A>(x[j]); };
  if constexpr (kOp == ReduceOp::Sum) {
    return static_cast<T>(row_allreduce<kGroup>(n, lane, A(0), value, Plus{}));
  } else if constexpr (kOp == ReduceOp::Mean) {  // 0 / 0 = NaN for an empty row, as in PyTorch
    return static_cast<T>(row_allreduce<kGroup>(n, lane, A(0), value, Plus{}) / static_cast<A>(n));
  } else if constexpr (kOp == ReduceOp::Prod) {
    return static_cast<T>(row_allreduce<kGroup>(n, lane, A(1), value, Times{}));
  } else if constexpr (kOp == ReduceOp::Max) {
    return row_allreduce<kGroup>(
        n, lane, lowest<T>(), [x](int64_t j) { return x[j]; }, MaxNan{});
  } else if constexpr (kOp == ReduceOp::Min) {
    return row_allreduce<kGroup>(
        n, lane, highest<T>(), [x](int64_t j) { return x[j]; }, MinNan{});
  } else if constexpr (kOp == ReduceOp::LogSumExp) {
    A m = row_allreduce<kGroup>(n, lane, lowest<A>(), value, MaxNan{});
    if (isinf(m)) return static_cast<T>(m);  // all -inf (or empty) gives -inf; any +inf gives +inf
    A s = row_allreduce<kGroup>(
        n, lane, A(0), [x, m](int64_t j) { return exp(static_cast<A>(x[j]) - m); }, Plus{});
    return static_cast<T>(m + log(s));
  } else if constexpr (kOp == ReduceOp::Var) {
    // Two passes (mean, then squared deviations): stable without Welford's divisions.
    A mean = row_allreduce<kGroup>(n, lane, A(0), value, Plus{}) / static_cast<A>(n);
    auto deviation2 = [x, mean](int64_t j) {
      A d = static_cast<A>(x[j]) - mean;
      return d * d;
    };
    A ss = row_allreduce<kGroup>(n, lane, A(0), deviation2, Plus{});
    return static_cast<T>(ss / static_cast<A>(fmax(0.0, static_cast<double>(n) - param)));
  } else if constexpr (kOp == ReduceOp::Any) {
    return row_allreduce<kGroup>(
               n, lane, 0, [x](int64_t j) { return x[j] ? 1 : 0; }, Or{}) != 0;
  } else {
    static_assert(kOp == ReduceOp::All);
    return row_allreduce<kGroup>(
               n, lane, 1, [x](int64_t j) { return x[j] ? 1 : 0; }, And{}) != 0;
  }
}

template <int kGroup, ReduceOp kOp, typename T>
__global__ void __launch_bounds__(kThreads)
    reduce_rows_kernel(const T* in, T* out, int64_t rows, int64_t n, double param) {
  constexpr int kRowsPerBlock = kThreads / kGroup;
  const int lane = threadIdx.x % kGroup;
  // Every thread of a group walks the same rows, so the block-wide barriers in group_allreduce are uniform.
  for (int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / kGroup; row < rows;
       row += int64_t{gridDim.x} * kRowsPerBlock) {
    T r = reduce_row<kGroup, kOp, T>(in + row * n, n, lane, param);
    if (lane == 0) out[row] = r;
  }
}

template <ReduceOp kOp, typename T>
void launch_reduce(const T* in, T* out, int64_t rows, int64_t n, double param) {
  if (n <= kWarpRowLimit) {
    constexpr int kRowsPerBlock = kThreads / 32;
    int64_t blocks = std::min<int64_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock, kMaxBlocks);
    reduce_rows_kernel<32, kOp, T><<<static_cast<unsigned>(blocks), kThreads>>>(in, out, rows, n, param);
  } else {
    int64_t blocks = std::min<int64_t>(rows, kMaxBlocks);
    reduce_rows_kernel<kThreads, kOp, T>
        <<<static_cast<unsigned>(blocks), kThreads>>>(in, out, rows, n, param);
  }
  LOOM_CUDA_CHECK_LAUNCH();
}

template <typename T>
void dispatch_reduce(ReduceOp op, const Tensor& in, const Tensor& out, int64_t rows, int64_t n,
                     double param) {
  const T* x = ptr<T>(in);
  T* y = ptr<T>(out);
  if constexpr (std::is_same_v<T, bool>) {
    // On bool, max is any and min is all.
    if (op == ReduceOp::Any || op == ReduceOp::Max) return launch_reduce<ReduceOp::Any>(x, y, rows, n, param);
    if (op == ReduceOp::All || op == ReduceOp::Min) return launch_reduce<ReduceOp::All>(x, y, rows, n, param);
  } else {
    switch (op) {
      case ReduceOp::Sum:
        return launch_reduce<ReduceOp::Sum>(x, y, rows, n, param);
      case ReduceOp::Prod:
        return launch_reduce<ReduceOp::Prod>(x, y, rows, n, param);
      case ReduceOp::Max:
        return launch_reduce<ReduceOp::Max>(x, y, rows, n, param);
      case ReduceOp::Min:
        return launch_reduce<ReduceOp::Min>(x, y, rows, n, param);
      default:
        break;
    }
    if constexpr (std::is_floating_point_v<T>) {
      switch (op) {
        case ReduceOp::Mean:
          return launch_reduce<ReduceOp::Mean>(x, y, rows, n, param);
        case ReduceOp::LogSumExp:
          return launch_reduce<ReduceOp::LogSumExp>(x, y, rows, n, param);
        case ReduceOp::Var:
          return launch_reduce<ReduceOp::Var>(x, y, rows, n, param);
        default:
          break;
      }
    }
  }
  LOOM_FAIL(reduce_op_name(op), ": not supported for dtype ", dtype_name(in.dtype()));
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& in, const Shape& dims, const Tensor& out, double param) {
  int64_t rows = out.numel();
  if (rows == 0) return;
  DeviceGuard guard(device_);
  // Any/All test != 0 on bool; everything else computes in the output's dtype (sum of int32 gives int64).
  DType compute = (op == ReduceOp::Any || op == ReduceOp::All) ? DType::Bool : out.dtype();
  std::vector<bool> reduced(in.dim(), false);
  for (int64_t d : dims) reduced[d] = true;
  std::vector<int64_t> perm;
  int64_t n = 1;
  for (int64_t d = 0; d < in.dim(); ++d)
    if (!reduced[d]) perm.push_back(d);
  for (int64_t d = 0; d < in.dim(); ++d)
    if (reduced[d]) {
      perm.push_back(d);
      n *= in.size(d);
    }
  Tensor rows_last = in.permute(perm);
  Tensor work = rows_last;
  if (!rows_last.is_contiguous() || in.dtype() != compute) {
    work = Tensor::empty(rows_last.shape(), {compute, in.device()});
    copy(rows_last, work);
  }
  // out has the kept dims in order, exactly the row order of work.
  Tensor result = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.options());
  LOOM_DISPATCH_ALL(compute, reduce_op_name(op),
                    [&] { dispatch_reduce<scalar_t>(op, work, result, rows, n, param); });
  if (!result.is_same(out)) copy(result, out);
}

}  // namespace loom::cuda
