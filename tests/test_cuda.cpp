// CUDA backend: the caching allocator, host<->device transfers, and every CUDA kernel against the CPU kernel
// on the same inputs (including broadcast and transposed views). Without a GPU (or without CUDA in the build)
// the GPU suites skip with the reason; CudaAvailability runs everywhere and checks that the absence is
// reported well.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/ops/backend.h"
#include "support/expect.h"

#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cublas_loader.h"
#include "loom/cuda/cuda_backend.h"
#endif

using namespace loom;
using test::expect_error;

namespace {

std::string no_cuda_reason() {
#ifdef LOOM_WITH_CUDA
  return "Loom was built with CUDA, but no GPU is visible (no device, or no driver)";
#else
  return "Loom was built without CUDA (configure with -DLOOM_CUDA=ON)";
#endif
}

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << no_cuda_reason();
  }
};

// Host data from a fixed seed: uniform in [lo, hi) for floating dtypes, integers in [lo, hi) for integral
// ones, and true with probability 1/2 for bool.
Tensor host_random(const Shape& shape, DType dtype, double lo, double hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = u(gen);
  if (dtype == kBool) {
    std::vector<bool> b(v.size());
    for (size_t i = 0; i < v.size(); ++i) b[i] = v[i] < (lo + hi) / 2;
    return tensor(b, shape);
  }
  if (is_integral(dtype))
    for (double& x : v) x = std::floor(x);
  return tensor(v, shape).to(dtype);
}

// What an op receives: a view of a host tensor. The GPU side copies the base tensor (keeping its contiguous
// layout) and takes the same view, so both backends see identical geometry.
struct Input {
  Tensor base;
  std::function<Tensor(const Tensor&)> view = [](const Tensor& t) { return t; };
  Tensor on(Device device) const { return view(base.to(device)); }
};

Input transposed(const Tensor& base) {
  return {base, [](const Tensor& t) { return t.transpose(0, 1); }};
}

// Elementwise |cuda - cpu| <= atol + rtol * |cpu|; NaNs must match NaNs and infinities must match exactly.
// Not test::expect_close: it also asserts the result is on the GPU and lists the first bad elements.
void expect_close(const Tensor& gpu, const Tensor& cpu, double rtol, double atol, const std::string& what) {
  ASSERT_TRUE(gpu.device().is_cuda()) << what;
  ASSERT_EQ(gpu.shape(), cpu.shape()) << what;
  ASSERT_EQ(gpu.dtype(), cpu.dtype()) << what;
  std::vector<double> g = gpu.to_vector<double>(), c = cpu.to_vector<double>();
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    bool ok = (std::isnan(g[i]) && std::isnan(c[i])) || g[i] == c[i] ||
              (std::isfinite(c[i]) && std::fabs(g[i] - c[i]) <= atol + rtol * std::fabs(c[i]));
    if (!ok && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << ": cuda " << g[i] << " vs cpu " << c[i];
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " elements differ";
}

double tolerance(DType dtype) { return dtype == kFloat32 ? 2e-5 : 1e-10; }

void check_unary(UnaryOp op, const Input& in, UnaryParams params = {}) {
  Tensor c_in = in.on(kCPU), g_in = in.on(kCUDA);
  Tensor c_out = Tensor::empty(c_in.shape(), c_in.dtype());
  Tensor g_out = Tensor::empty(c_in.shape(), {c_in.dtype(), kCUDA});
  cpu_backend().unary(op, params, c_in, c_out);
  backend_for(kCUDA).unary(op, params, g_in, g_out);
  double tol = tolerance(c_in.dtype());
  expect_close(g_out, c_out, tol, tol,
               std::string(unary_op_name(op)) + " on " + dtype_name(c_in.dtype()) + shape_str(c_in.shape()));
}

void check_binary(BinaryOp op, const Input& a, const Input& b) {
  Tensor ca = a.on(kCPU), cb = b.on(kCPU), ga = a.on(kCUDA), gb = b.on(kCUDA);
  Shape shape = broadcast_shapes(ca.shape(), cb.shape(), "test");
  DType out_dtype = is_comparison(op) ? kBool : ca.dtype();
  Tensor c_out = Tensor::empty(shape, out_dtype), g_out = Tensor::empty(shape, {out_dtype, kCUDA});
  cpu_backend().binary(op, ca.expand(shape), cb.expand(shape), c_out);
  backend_for(kCUDA).binary(op, ga.expand(shape), gb.expand(shape), g_out);
  double tol = tolerance(ca.dtype());
  expect_close(g_out, c_out, tol, tol,
               std::string(binary_op_name(op)) + " on " + dtype_name(ca.dtype()) + shape_str(ca.shape()) +
                   " and " + shape_str(cb.shape()));
}

// Runs a public op on the CPU and on the GPU with the same input and compares.
void check_op(const std::string& what, const Input& in, double tol,
              const std::function<Tensor(const Tensor&)>& op) {
  Tensor c = op(in.on(kCPU)), g = op(in.on(kCUDA));
  expect_close(g, c, tol, tol, what + " of " + dtype_name(in.base.dtype()) + shape_str(in.on(kCPU).shape()));
}

void check_bmm(const Input& a, const Input& b, double alpha, double beta) {
  Tensor ca = a.on(kCPU), cb = b.on(kCPU), ga = a.on(kCUDA), gb = b.on(kCUDA);
  Shape shape{ca.size(0), ca.size(1), cb.size(2)};
  Tensor c_out = host_random(shape, ca.dtype(), -1, 1, 99);  // read when beta != 0
  Tensor g_out = c_out.to(kCUDA);
  // The CPU kernel takes operands with a unit stride in a matrix dim only (the op layer copies others); the
  // CUDA kernel copies such an operand itself, which the last case below checks.
  cpu_backend().bmm(ca.contiguous(), cb.contiguous(), c_out, alpha, beta);
  backend_for(kCUDA).bmm(ga, gb, g_out, alpha, beta);
  double tol = ca.dtype() == kFloat32 ? 1e-4 : 1e-10;
  expect_close(g_out, c_out, tol, tol,
               "bmm of " + shape_str(ca.shape()) + " (strides " + shape_str(ca.strides()) + ") and " +
                   shape_str(cb.shape()) + " (strides " + shape_str(cb.strides()) + ")");
}

}  // namespace

// --- runs everywhere: absence of CUDA is reported, never a crash -------------------------------------------

// cuBLAS is opened with dlopen on first use (cuda/cublas_loader.cpp). Loading it and resolving every entry
// point Loom calls needs no GPU, so a wrong soname or symbol name fails here, in CI, instead of at the first
// matrix product on a GPU. (In the emulated build the entry points are the emulation's own.)
TEST(CudaAvailability, CublasLoadsWithEveryEntryPoint) {
#ifdef LOOM_WITH_CUDA
  const loom::cuda::CublasApi& api = loom::cuda::cublas_api();
  for (const void* entry :
       {reinterpret_cast<const void*>(api.create), reinterpret_cast<const void*>(api.sgemm_strided_batched),
        reinterpret_cast<const void*>(api.dgemm_strided_batched), reinterpret_cast<const void*>(api.sscal),
        reinterpret_cast<const void*>(api.dscal), reinterpret_cast<const void*>(api.status_name),
        reinterpret_cast<const void*>(api.status_string)})
    EXPECT_NE(entry, nullptr);
  // Calls that need no device: the library answers.
  EXPECT_STREQ(api.status_name(CUBLAS_STATUS_SUCCESS), "CUBLAS_STATUS_SUCCESS");
  EXPECT_STREQ(api.status_name(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE");
#else
  GTEST_SKIP() << "Loom was built without CUDA (configure with -DLOOM_CUDA=ON)";
#endif
}

TEST(CudaAvailability, CountIsConsistentAndAbsenceIsAClearError) {
  int n = cuda_device_count();
  EXPECT_GE(n, 0);
  EXPECT_EQ(cuda_is_available(), n > 0);
#ifndef LOOM_WITH_CUDA
  EXPECT_EQ(n, 0);
  expect_error([] { Tensor::empty({2}, kCUDA); }, "this build of Loom has no CUDA backend");
#endif
  if (n == 0) {
    expect_error([] { Tensor::empty({2}, kCUDA); }, "cuda:0");
    expect_error([] { backend_for(kCUDA); }, "cuda:0");
    expect_error([] { cuda_synchronize(); }, "cuda:0");
  }
  expect_error([n] { Tensor::empty({2}, Device(DeviceType::CUDA, n)); }, "cuda:" + std::to_string(n));
  expect_error([n] { cuda_synchronize(Device(DeviceType::CUDA, n)); }, "cuda:" + std::to_string(n));
  expect_error([] { cuda_synchronize(kCPU); }, "cpu");
  EXPECT_FALSE(ones({2}).is_pinned());
  if (n == 0) {
    expect_error([] { ones({2}).pin_memory(); }, "pin_memory");
    EXPECT_EQ(pinned_memory_stats().current_bytes, 0);
  }
}

TEST_F(Cuda, SynchronizeWaitsForQueuedKernels) {
  Tensor x = full({1 << 20}, 2.0, {kFloat32, kCUDA});
  Tensor y = exp(x);  // queued; synchronize returns once it has run
  cuda_synchronize();
  EXPECT_FLOAT_EQ(sum(y).to(kCPU).item<float>(), static_cast<float>((1 << 20) * std::exp(2.0)));
}

// --- caching allocator -------------------------------------------------------------------------------------

TEST_F(Cuda, AllocatorCountsBytesAndReusesCachedBlocks) {
  Allocator& alloc = allocator_for(kCUDA);
  alloc.empty_cache();  // no tensors are alive between tests, so this releases every segment
  alloc.reset_peak();
  MemoryStats s0 = alloc.stats();

  void* small = alloc.allocate(1000);
  MemoryStats s1 = alloc.stats();
  EXPECT_EQ(s1.current_bytes - s0.current_bytes, 1000);
  EXPECT_EQ(s1.num_allocs - s0.num_allocs, 1);
  EXPECT_EQ(s1.reserved_bytes - s0.reserved_bytes, 2 << 20);  // one small-pool segment

  // A second small block is carved from the same segment; freed blocks are cached, not returned.
  void* small2 = alloc.allocate(5000);
  EXPECT_NE(small2, small);
  EXPECT_EQ(alloc.stats().reserved_bytes, s1.reserved_bytes);
  alloc.deallocate(small2, 5000);
  alloc.deallocate(small, 1000);
  MemoryStats s2 = alloc.stats();
  EXPECT_EQ(s2.current_bytes, s0.current_bytes);
  EXPECT_EQ(s2.num_frees - s0.num_frees, 2);
  EXPECT_EQ(s2.reserved_bytes, s1.reserved_bytes);
  void* again = alloc.allocate(1000);
  EXPECT_EQ(again, small);  // the cached block comes back
  EXPECT_EQ(alloc.stats().reserved_bytes, s1.reserved_bytes);
  alloc.deallocate(again, 1000);

  // Large requests (> 1 MiB, < 10 MiB) share a 20 MiB segment of the large pool.
  void* big = alloc.allocate(3 << 20);
  void* big2 = alloc.allocate(3 << 20);
  MemoryStats s3 = alloc.stats();
  EXPECT_EQ(s3.reserved_bytes - s2.reserved_bytes, 20 << 20);
  EXPECT_EQ(s3.current_bytes - s0.current_bytes, 6 << 20);
  EXPECT_EQ(s3.peak_bytes - s0.current_bytes, 6 << 20);
  alloc.deallocate(big, 3 << 20);
  alloc.deallocate(big2, 3 << 20);
  EXPECT_EQ(alloc.stats().peak_bytes, s3.peak_bytes);
  alloc.reset_peak();
  EXPECT_EQ(alloc.stats().peak_bytes, s0.current_bytes);

  // Tensors go through the same allocator; empty_cache gives every unused segment back.
  {
    Tensor t = Tensor::empty({256}, {kFloat32, kCUDA});
    EXPECT_EQ(memory_stats(kCUDA).current_bytes - s0.current_bytes, 1024);
  }
  EXPECT_GT(alloc.stats().reserved_bytes, s0.reserved_bytes);
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().reserved_bytes, s0.reserved_bytes);
  EXPECT_EQ(alloc.stats().current_bytes, s0.current_bytes);
}

TEST_F(Cuda, OutOfMemoryIsAClearError) {
  int64_t huge = int64_t{1} << 48;  // 2^50 bytes of float32
  expect_error(
      [huge] {
        Tensor::empty({huge}, {kFloat32, kCUDA});
      },
      "CUDA out of memory allocating 1125899906842624 bytes on cuda:0 (");
  // The failure leaves the allocator usable.
  Tensor t = full({1000}, 2.0, {kFloat32, kCUDA});
  EXPECT_EQ(t.to_vector<float>()[999], 2.0f);
}

TEST_F(Cuda, DeviceErrors) {
  int n = cuda_device_count();
  expect_error([n] { Tensor::empty({2}, Device(DeviceType::CUDA, n)); }, "no such CUDA device");
  Tensor c = ones({3}), g = ones({3}, kCUDA);
  expect_error([&] { add(c, g); }, "add: tensors on cpu and cuda:0");
  // A device pointer handed to host code would crash it: data<T>() refuses.
  expect_error([&] { g.data<float>(); }, "tensor of shape [3] is on cuda:0, not the host");
}

// Pinned host memory: a contiguous copy in page-locked memory, device round trips through it, cached blocks,
// gradients through the copy, and a clear error for a GPU tensor.
TEST_F(Cuda, PinnedHostMemory) {
  const int64_t before = pinned_memory_stats().current_bytes;
  Tensor x = host_random({257, 33}, kFloat32, -1, 1, 50);
  Tensor p = x.pin_memory();
  EXPECT_TRUE(p.is_pinned());
  EXPECT_FALSE(x.is_pinned());
  EXPECT_TRUE(p.pin_memory().is_same(p));
  test::expect_close(p, x, 0, 0, "pinned copy");
  EXPECT_EQ(pinned_memory_stats().current_bytes - before, 257 * 33 * 4);
  Tensor g = p.to(kCUDA);
  Tensor back = zeros({257, 33}).pin_memory();
  back.copy_(g);
  test::expect_close(back, x, 0, 0, "device round trip through pinned memory");
  Tensor t = x.t().pin_memory();
  EXPECT_TRUE(t.is_contiguous() && t.is_pinned());
  test::expect_close(t, x.t(), 0, 0, "pinned transposed view");
  { Tensor q = x.pin_memory(); }
  const int64_t reserved = pinned_memory_stats().reserved_bytes;
  { Tensor q = x.pin_memory(); }  // served from the cache
  EXPECT_EQ(pinned_memory_stats().reserved_bytes, reserved);
  Tensor a = x.clone().requires_grad_();
  sum(a.pin_memory() * 2.0).backward();
  test::expect_close(a.grad(), full({257, 33}, 2.0), 0, 0, "gradient through pin_memory");
  expect_error([&] { g.pin_memory(); }, "only CPU tensors can be pinned");
}

// --- transfers and copies ----------------------------------------------------------------------------------

TEST_F(Cuda, HostDeviceRoundTrip) {
  for (DType dtype : {kFloat32, kFloat64, kInt64, kInt32, kBool}) {
    Tensor h = host_random({5, 7}, dtype, -50, 50, 1);
    Tensor g = h.to(kCUDA);
    EXPECT_TRUE(g.device().is_cuda());
    EXPECT_EQ(g.dtype(), dtype);
    EXPECT_EQ(g.cpu().to_vector<double>(), h.to_vector<double>()) << dtype_name(dtype);
  }
  // Empty tensors and 0-d tensors.
  EXPECT_EQ(Tensor::empty({0, 3}).to(kCUDA).cpu().numel(), 0);
  EXPECT_EQ(full({}, 4.5, kFloat64).to(kCUDA).item<double>(), 4.5);
}

TEST_F(Cuda, StridedCopiesAndConversions) {
  Tensor h = host_random({6, 9}, kFloat32, -5, 5, 2);
  // Host view -> device, device view -> host, and a strided device destination.
  Tensor ht = h.transpose(0, 1);
  EXPECT_EQ(ht.to(kCUDA).cpu().to_vector<float>(), ht.contiguous().to_vector<float>());
  Tensor g = h.to(kCUDA);
  Tensor gview = g.slice(1, 1, 9, 3).transpose(0, 1);
  EXPECT_EQ(gview.cpu().to_vector<float>(),
            h.slice(1, 1, 9, 3).transpose(0, 1).contiguous().to_vector<float>());
  EXPECT_EQ(gview.contiguous().cpu().to_vector<float>(), gview.cpu().to_vector<float>());
  Tensor dst = zeros({9, 6}, kCUDA);
  dst.transpose(0, 1).copy_(h);  // host source into a transposed device view
  EXPECT_EQ(dst.cpu().to_vector<float>(), ht.contiguous().to_vector<float>());
  Tensor bcast = zeros({4, 9}, kCUDA);
  bcast.copy_(h.select(0, 2).to(kCUDA));  // broadcast row
  EXPECT_EQ(bcast.cpu().to_vector<float>(), h.select(0, 2).expand({4, 9}).contiguous().to_vector<float>());
  // Dtype conversions on the device agree with the CPU's (truncation to int, != 0 to bool).
  for (DType to : {kFloat64, kInt64, kInt32, kBool}) {
    expect_close(gview.to(to), ht.slice(0, 1, 9, 3).to(to), 0, 0,
                 std::string("conversion to ") + dtype_name(to));
  }
}

TEST_F(Cuda, FillAndArange) {
  for (DType dtype : {kFloat32, kFloat64, kInt64, kInt32, kBool}) {
    expect_close(full({3, 5}, 3.0, {dtype, kCUDA}), full({3, 5}, 3.0, dtype), 0, 0, "full");
  }
  Tensor g = zeros({4, 6}, kCUDA);
  g.select(1, 2).fill_(7.0);  // strided fill
  Tensor c = zeros({4, 6});
  c.select(1, 2).fill_(7.0);
  expect_close(g, c, 0, 0, "strided fill");
  expect_close(arange(0, 10, 0.5, {kFloat32, kCUDA}), arange(0, 10, 0.5, kFloat32), 0, 0, "arange float32");
  expect_close(arange(-7, 1000, 3, {kInt64, kCUDA}), arange(-7, 1000, 3, kInt64), 0, 0, "arange int64");
  expect_close(arange(5, 0, -1.25, {kFloat64, kCUDA}), arange(5, 0, -1.25, kFloat64), 0, 0, "arange float64");
}

// --- elementwise -------------------------------------------------------------------------------------------

TEST_F(Cuda, UnaryMatchesCpu) {
  for (DType dtype : {kFloat32, kFloat64}) {
    Tensor pos = host_random({7, 33}, dtype, 0.1, 3, 3);
    Tensor any = host_random({7, 33}, dtype, -3, 3, 4);
    for (UnaryOp op : {UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Rsqrt, UnaryOp::Reciprocal}) {
      check_unary(op, {pos});
      check_unary(op, transposed(pos));
    }
    for (UnaryOp op : {UnaryOp::Neg, UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Relu,
                       UnaryOp::Gelu, UnaryOp::GeluTanh, UnaryOp::Abs, UnaryOp::Square, UnaryOp::Sign}) {
      check_unary(op, {any});
      check_unary(op, transposed(any));
    }
    check_unary(UnaryOp::Elu, transposed(any), {0.7, 0});
    for (double e : {2.0, 3.0, 0.5, -1.0, 2.5, -1.7}) check_unary(UnaryOp::PowScalar, {pos}, {e, 0});
    check_unary(UnaryOp::Clamp, transposed(any), {-1, 1});
    check_unary(UnaryOp::Clamp, {any}, {-INFINITY, 0.5});
    check_unary(UnaryOp::Clamp, {any}, {1, -1});  // lo > hi gives hi
    // Special values.
    Tensor special = tensor<double>({NAN, INFINITY, -INFINITY, 0.0, -0.0, 1e30, -1e30}).to(dtype);
    for (UnaryOp op :
         {UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Relu, UnaryOp::Abs, UnaryOp::Sign})
      check_unary(op, {special});
  }
  // A large input spans many blocks of the grid-stride loop.
  check_unary(UnaryOp::Exp, {host_random({1 << 20}, kFloat32, -10, 10, 5)});
  for (DType dtype : {kInt32, kInt64}) {
    Tensor x = host_random({9, 13}, dtype, -10, 10, 6);
    for (UnaryOp op : {UnaryOp::Neg, UnaryOp::Relu, UnaryOp::Abs, UnaryOp::Square, UnaryOp::Sign}) {
      check_unary(op, transposed(x));
    }
    check_unary(UnaryOp::PowScalar, {x}, {3, 0});
    check_unary(UnaryOp::Clamp, {x}, {-3.5, INFINITY});
  }
  check_unary(UnaryOp::LogicalNot, transposed(host_random({5, 6}, kBool, 0, 1, 7)));
  Tensor int_in = ones({3}, {kInt64, kCUDA}), int_out = Tensor::empty({3}, {kInt64, kCUDA});
  expect_error([&] { backend_for(kCUDA).unary(UnaryOp::Exp, {}, int_in, int_out); },
               "exp: expected a floating dtype");
}

TEST_F(Cuda, BinaryMatchesCpuWithBroadcasting) {
  for (DType dtype : {kFloat32, kFloat64, kInt64, kInt32}) {
    bool floating = is_floating(dtype);
    Tensor a = host_random({5, 4}, dtype, floating ? 0.5 : -20, floating ? 2 : 20, 8);
    Tensor b = host_random({3, 5}, dtype, floating ? 0.5 : -20, floating ? 2 : 20, 9);
    // a.T is [4, 5], viewed as [4, 1, 5] against b [3, 5]: a transposed and a broadcast operand at once.
    Input at{a, [](const Tensor& t) { return t.transpose(0, 1).unsqueeze(1); }};
    Input scalar{host_random({}, dtype, 1, 3, 10)};
    Input same{host_random({3, 5}, dtype, floating ? 0.5 : -20, floating ? 2 : 20, 11)};
    std::vector<BinaryOp> ops = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Maximum,
                                 BinaryOp::Minimum};
    if (floating) ops.push_back(BinaryOp::Div);
    for (BinaryOp op : ops) {
      check_binary(op, at, {b});
      check_binary(op, {b}, scalar);
      check_binary(op, {b}, same);
    }
    Tensor small_exponents = host_random({3, 5}, dtype, floating ? -2 : 0, 4, 12);
    check_binary(BinaryOp::Pow, at, {small_exponents});
    // Comparisons on a coarse grid of values, so that equality actually occurs.
    Tensor ca = host_random({5, 4}, kInt64, 0, 4, 13).to(dtype),
           cb = host_random({3, 5}, kInt64, 0, 4, 14).to(dtype);
    Input cat{ca, [](const Tensor& t) { return t.transpose(0, 1).unsqueeze(1); }};
    for (BinaryOp op : {BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt, BinaryOp::Le, BinaryOp::Gt, BinaryOp::Ge}) {
      check_binary(op, cat, {cb});
    }
  }
  Tensor p = host_random({6, 7}, kBool, 0, 1, 15), q = host_random({7}, kBool, 0, 1, 16);
  for (BinaryOp op :
       {BinaryOp::LogicalAnd, BinaryOp::LogicalOr, BinaryOp::Add, BinaryOp::Mul, BinaryOp::Eq}) {
    check_binary(op, {p}, {q});
  }
  // NaN propagation of maximum/minimum, and a large contiguous input.
  Tensor nan_a = tensor<float>({NAN, 1, 2, NAN}), nan_b = tensor<float>({1, NAN, 3, NAN});
  check_binary(BinaryOp::Maximum, {nan_a}, {nan_b});
  check_binary(BinaryOp::Minimum, {nan_a}, {nan_b});
  check_binary(BinaryOp::Add, {host_random({1 << 20}, kFloat32, -1, 1, 17)},
               {host_random({1 << 20}, kFloat32, -1, 1, 18)});
}

// Contiguous operands go 16 bytes a thread at a time where every pointer is aligned to that, with the last
// n % V elements one by one; a view at an odd offset takes the scalar path. Every size around the vector
// width, aligned and not, on each side of the op, for each access width (16 bools, 4 floats, 2 doubles).
TEST_F(Cuda, ElementwiseVectorAndTailPathsMatchCpu) {
  for (DType dtype : {kFloat32, kFloat64, kInt64, kInt32, kBool}) {
    for (int64_t n : {1, 2, 3, 4, 5, 15, 16, 17, 33, 1027, 4099}) {
      for (int64_t in_offset : {0, 1}) {
        for (int64_t out_offset : {0, 1}) {
          const std::string what = std::string(dtype_name(dtype)) + " n=" + std::to_string(n) + " offsets " +
                                   std::to_string(in_offset) + "/" + std::to_string(out_offset);
          auto window = [n](int64_t offset) {
            return [n, offset](const Tensor& t) { return t.slice(0, offset, offset + n); };
          };
          Input a{host_random({n + 1}, dtype, -50, 50, 40), window(in_offset)};
          Input b{host_random({n + 1}, dtype, -50, 50, 41), window(in_offset)};
          auto run = [&](Device device, const std::function<void(Tensor)>& op, DType out_dtype) {
            Tensor out = zeros({n + 1}, {out_dtype, device}).slice(0, out_offset, out_offset + n);
            op(out);
            return out;
          };
          const bool logical = dtype == kBool;
          const UnaryOp unary = logical ? UnaryOp::LogicalNot : UnaryOp::Neg;
          const BinaryOp binary = logical ? BinaryOp::LogicalAnd : BinaryOp::Add;
          auto unary_on = [&](Device device) {
            return run(
                device, [&](Tensor out) { backend_for(device).unary(unary, {}, a.on(device), out); }, dtype);
          };
          auto binary_on = [&](Device device, BinaryOp op, DType out_dtype) {
            return run(
                device, [&](Tensor out) { backend_for(device).binary(op, a.on(device), b.on(device), out); },
                out_dtype);
          };
          auto fill_on = [&](Device device) {
            return run(
                device, [&](Tensor out) { out.fill_(1.0); }, dtype);
          };
          auto convert_on = [&](Device device) {  // a copy that converts to another width
            const DType wide = dtype == kFloat32 ? kFloat64 : dtype == kInt32 ? kInt64 : kFloat32;
            return run(
                device, [&](Tensor out) { out.copy_(a.on(device)); }, wide);
          };
          expect_close(unary_on(kCUDA), unary_on(kCPU), 0, 0, "unary " + what);
          expect_close(binary_on(kCUDA, binary, dtype), binary_on(kCPU, binary, dtype), 0, 0,
                       "binary " + what);
          expect_close(binary_on(kCUDA, BinaryOp::Lt, kBool), binary_on(kCPU, BinaryOp::Lt, kBool), 0, 0,
                       "comparison " + what);
          expect_close(fill_on(kCUDA), fill_on(kCPU), 0, 0, "fill " + what);
          expect_close(convert_on(kCUDA), convert_on(kCPU), 0, 0, "conversion " + what);
        }
      }
    }
  }
}

TEST_F(Cuda, WhereMatchesCpu) {
  for (DType dtype : {kFloat32, kInt64, kBool}) {
    Tensor cond = host_random({4, 1, 6}, kBool, 0, 1, 19);
    Tensor a = host_random({6, 3}, dtype, -5, 5, 20), b = host_random({}, dtype, -5, 5, 21);
    Shape shape{4, 3, 6};
    Tensor c_out = Tensor::empty(shape, dtype), g_out = Tensor::empty(shape, {dtype, kCUDA});
    cpu_backend().where(cond.expand(shape), a.t().expand(shape), b.expand(shape), c_out);
    backend_for(kCUDA).where(cond.to(kCUDA).expand(shape), a.to(kCUDA).t().expand(shape),
                             b.to(kCUDA).expand(shape), g_out);
    expect_close(g_out, c_out, 0, 0, std::string("where on ") + dtype_name(dtype));
  }
}

// --- reductions --------------------------------------------------------------------------------------------

TEST_F(Cuda, ReductionsMatchCpu) {
  for (DType dtype : {kFloat32, kFloat64}) {
    double tol = dtype == kFloat32 ? 1e-5 : 1e-10;
    Tensor x = host_random({6, 37, 5}, dtype, -2, 2, 22);
    Input permuted{x, [](const Tensor& t) { return t.permute({2, 0, 1}); }};
    Tensor near_one = host_random({6, 37, 5}, dtype, 0.95, 1.05, 23);
    Tensor flags = host_random({6, 37, 5}, kBool, 0, 1, 23);
    for (const std::vector<int64_t>& dims :
         std::vector<std::vector<int64_t>>{{1}, {0, 2}, {}, {-1}, {0, 1, 2}}) {
      for (const Input& in : {Input{x}, permuted}) {
        check_op("sum", in, tol, [&](const Tensor& t) { return sum(t, dims); });
        check_op("mean", in, tol, [&](const Tensor& t) { return mean(t, dims, true); });
        check_op("amax", in, 0, [&](const Tensor& t) { return amax(t, dims); });
        check_op("amin", in, 0, [&](const Tensor& t) { return amin(t, dims); });
        check_op("logsumexp", in, tol, [&](const Tensor& t) { return logsumexp(t, dims); });
        check_op("var", in, tol, [&](const Tensor& t) { return var(t, dims); });
        check_op("var(correction=0)", in, tol, [&](const Tensor& t) { return var(t, dims, 0); });
        check_op("any", in, 0, [&](const Tensor& t) { return any(t, dims); });
      }
      check_op("prod", {near_one}, tol, [&](const Tensor& t) { return prod(t, dims); });
      check_op("any", {flags}, 0, [&](const Tensor& t) { return any(t, dims); });
      check_op("all", {flags}, 0, [&](const Tensor& t) { return all(t, dims); });
    }
    // Long rows take the block-per-row path; reducing dim 0 of a [5000, 3] tensor needs the permuting copy.
    Tensor longrows = host_random({3, 5000}, dtype, -1, 1, 24);
    check_op("sum", {longrows}, tol, [](const Tensor& t) { return sum(t, {1}); });
    check_op("var", {longrows}, tol, [](const Tensor& t) { return var(t, {1}); });
    check_op("logsumexp", {longrows}, tol, [](const Tensor& t) { return logsumexp(t, {1}); });
    check_op("amax", transposed(longrows), 0, [](const Tensor& t) { return amax(t, {0}); });
    check_op("sum", {host_random({1 << 20}, dtype, -1, 1, 25)}, tol, [](const Tensor& t) { return sum(t); });
  }
  // Integer and bool inputs: sums widen to int64, any/all read != 0.
  Tensor xi = host_random({8, 300}, kInt32, -100, 100, 26);
  check_op("sum", {xi}, 0, [](const Tensor& t) { return sum(t, {1}); });
  check_op("amax", transposed(xi), 0, [](const Tensor& t) { return amax(t, {1}); });
  check_op("prod", {host_random({4, 5}, kInt64, -3, 4, 27)}, 0, [](const Tensor& t) { return prod(t, {1}); });
  Tensor xb = host_random({8, 300}, kBool, 0, 1, 28);
  check_op("sum", {xb}, 0, [](const Tensor& t) { return sum(t, {0}); });
  check_op("any", {xi}, 0, [](const Tensor& t) { return any(t, {1}); });
  check_op("all", {xb}, 0, [](const Tensor& t) { return all(t); });
  check_op("amax", {xb}, 0, [](const Tensor& t) { return amax(t, {1}); });
  // Empty reductions give the identity; NaN and infinities propagate like on the CPU.
  Tensor empty = Tensor::empty({0, 4});
  check_op("sum", {empty}, 0, [](const Tensor& t) { return sum(t, {0}); });
  check_op("prod", {empty}, 0, [](const Tensor& t) { return prod(t, {0}); });
  check_op("logsumexp", {empty}, 0, [](const Tensor& t) { return logsumexp(t, {0}); });
  check_op("all", {empty}, 0, [](const Tensor& t) { return all(t, {0}); });
  Tensor special = tensor<float>({1, NAN, 2, -INFINITY, -INFINITY, -INFINITY, INFINITY, 1, 3}, {3, 3});
  for (auto op : std::vector<std::function<Tensor(const Tensor&)>>{
           [](const Tensor& t) { return amax(t, {1}); }, [](const Tensor& t) { return amin(t, {1}); },
           [](const Tensor& t) { return logsumexp(t, {1}); }, [](const Tensor& t) { return sum(t, {1}); }}) {
    check_op("special values", {special}, 1e-6, op);
  }
}

TEST_F(Cuda, ReductionsAreDeterministic) {
  Tensor x = host_random({1 << 22}, kFloat32, -1, 1, 29).to(kCUDA);
  Tensor rows = x.view({1024, 4096});
  float first = sum(x).item<float>();
  std::vector<float> first_rows = sum(rows, {1}).to_vector<float>();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sum(x).item<float>(), first);
    EXPECT_EQ(sum(rows, {1}).to_vector<float>(), first_rows);
  }
}

// --- matrix products ---------------------------------------------------------------------------------------

TEST_F(Cuda, BmmMatchesCpu) {
  for (DType dtype : {kFloat32, kFloat64}) {
    Tensor a = host_random({3, 17, 29}, dtype, -1, 1, 30), b = host_random({3, 29, 11}, dtype, -1, 1, 31);
    check_bmm({a}, {b}, 1, 0);
    check_bmm({a}, {b}, 0.5, 2);  // alpha and beta
    // Transposed views: a as [3, 17, 29] stored [3, 29, 17], b likewise.
    Tensor a_stored = host_random({3, 29, 17}, dtype, -1, 1, 32),
           b_stored = host_random({3, 11, 29}, dtype, -1, 1, 33);
    Input at{a_stored, [](const Tensor& t) { return t.transpose(1, 2); }};
    Input bt{b_stored, [](const Tensor& t) { return t.transpose(1, 2); }};
    check_bmm(at, {b}, 1, 0);
    check_bmm({a}, bt, 1, 0);
    check_bmm(at, bt, 1, 1);
    // A broadcast batch (stride 0) on either side.
    Tensor a2 = host_random({17, 29}, dtype, -1, 1, 34);
    check_bmm({a2, [](const Tensor& t) { return t.unsqueeze(0).expand({3, 17, 29}); }}, {b}, 1, 0);
    check_bmm({a},
              {host_random({29, 11}, dtype, -1, 1, 35),
               [](const Tensor& t) {
                 return t.t().contiguous().t().unsqueeze(0).expand({3, 29, 11});
               }},
              1, 0);
    // Degenerate shapes: vectors as matrices, and an empty inner dim (out = beta * out).
    check_bmm({host_random({2, 1, 29}, dtype, -1, 1, 36)}, {host_random({2, 29, 1}, dtype, -1, 1, 37)}, 1, 0);
    check_bmm({host_random({2, 5, 0}, dtype, -1, 1, 38)}, {host_random({2, 0, 4}, dtype, -1, 1, 39)}, 1, 0.5);
    check_bmm({host_random({2, 5, 0}, dtype, -1, 1, 40)}, {host_random({2, 0, 4}, dtype, -1, 1, 41)}, 1, 0);
    // A view with no unit stride in its matrix dims is copied first.
    check_bmm(
        {host_random({3, 17, 58}, dtype, -1, 1, 42), [](const Tensor& t) { return t.slice(2, 0, 58, 2); }},
        {b}, 1, 0);
  }
}

// --- fused attention
// ----------------------------------------------------------------------------------------

#ifdef LOOM_WITH_CUDA
// What causal attention over [1, n, 64] float32 operands allocates on the device, forward and backward,
// above what was live, with the given kernels allowed (cuda::set_attention_kernels).
int64_t attention_peak_bytes(int64_t n, cuda::AttentionKernels kernels) {
  const int64_t d = 64;
  Tensor q = host_random({1, n, d}, kFloat32, -1, 1, 60).to(kCUDA).requires_grad_();
  Tensor k = host_random({1, n, d}, kFloat32, -1, 1, 61).to(kCUDA).requires_grad_();
  Tensor v = host_random({1, n, d}, kFloat32, -1, 1, 62).to(kCUDA).requires_grad_();
  Tensor go = host_random({1, n, d}, kFloat32, -1, 1, 63).to(kCUDA);
  struct Pin {  // back to Auto however this returns
    explicit Pin(cuda::AttentionKernels k) { cuda::set_attention_kernels(k); }
    ~Pin() { cuda::set_attention_kernels(cuda::AttentionKernels::Auto); }
  } pin(kernels);
  cuda_synchronize();
  reset_peak_memory(kCUDA);
  const int64_t before = memory_stats(kCUDA).current_bytes;
  Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), true);
  out.backward(go);
  cuda_synchronize();
  EXPECT_TRUE(std::isfinite(sum(out).to(kCPU).item<float>()));
  return memory_stats(kCUDA).peak_bytes - before;
}
#endif

// The fused kernels hold scores only as tiles in shared memory: at L = S = 4096 a [L, S] float32 score matrix
// would be 64 MiB, while the forward and backward passes together allocate the operands' size only (q, k, v,
// out, dO and the three gradients, 1 MiB each). Both FMA families are checked (register tiles for this
// head, shared-memory tiles with those switched off); the composed ops, allowed alone, do hold the matrix,
// which shows the switch reaches the dispatch. Their values are the op table's parity rows. The default
// kernels, on the tensor cores, are checked at 1024 tokens, where the score matrix would be 4 MiB.
TEST_F(Cuda, AttentionNeverHoldsTheScoreMatrix) {
#ifdef LOOM_WITH_CUDA
  const int64_t n = 4096, operand = n * 64 * 4;
  for (cuda::AttentionKernels kernels :
       {cuda::AttentionKernels::RegisterTiles, cuda::AttentionKernels::SharedTiles}) {
    const int64_t grown = attention_peak_bytes(n, kernels);
    EXPECT_LT(grown, int64_t{8} << 20) << "attention at L = S = " << n << " allocated " << grown << " bytes";
    EXPECT_GT(grown, 4 * operand);  // out and three gradients at least
  }
  const int64_t composed_n = 1024,
                composed = attention_peak_bytes(composed_n, cuda::AttentionKernels::Composed);
  EXPECT_GE(composed, composed_n * composed_n * 4) << "the composed ops allocated " << composed << " bytes";
  // The default kernels (the tensor cores where the GPU has them) at the composed ops' length (a shorter
  // sequence: emulated, each mma is a warp's rendezvous): out and the three gradients, 1 MiB, against the
  // 4 MiB score matrix.
  const int64_t by_default = attention_peak_bytes(composed_n, cuda::AttentionKernels::Auto);
  EXPECT_LT(by_default, composed_n * composed_n * 2) << "the default kernels allocated " << by_default;
  EXPECT_GT(by_default, 4 * composed_n * 64 * 4);
#endif
}

#ifdef LOOM_WITH_CUDA
// The worst error, relative to the largest reference entry, of causal attention's output and its three
// gradients in float32 on the GPU under `kernels`, against float64 on the CPU from the same inputs.
double attention_float32_error(cuda::AttentionKernels kernels) {
  const int64_t b = 2, n = 130, d = 64;  // three 64-row tiles, the last a tail of 2
  const Tensor inputs[] = {
      host_random({b, n, d}, kFloat32, -2, 2, 80), host_random({b, n, d}, kFloat32, -2, 2, 81),
      host_random({b, n, d}, kFloat32, -1, 1, 82), host_random({b, n, d}, kFloat32, -1, 1, 83)};
  auto run = [&](DType dtype, Device device) {
    std::vector<Tensor> qkv;
    for (int i = 0; i < 3; ++i) qkv.push_back(inputs[i].to(dtype).to(device).requires_grad_());
    Tensor out = scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], Tensor(), true);
    out.backward(inputs[3].to(dtype).to(device));
    std::vector<Tensor> results{out};
    for (const Tensor& t : qkv) results.push_back(t.grad());
    for (Tensor& t : results) t = t.to(kCPU).to(kFloat64);
    return results;
  };
  const std::vector<Tensor> reference = run(kFloat64, kCPU);
  struct Pin {  // back to Auto however this returns
    explicit Pin(cuda::AttentionKernels k) { cuda::set_attention_kernels(k); }
    ~Pin() { cuda::set_attention_kernels(cuda::AttentionKernels::Auto); }
  } pin(kernels);
  const std::vector<Tensor> got = run(kFloat32, kCUDA);
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst =
        std::max(worst, test::max_abs_diff(got[i], reference[i]) / abs(reference[i]).max().item<double>());
  return worst;
}
#endif

// The tensor cores' self-check (cuda/tensor_core_check.cu), which Auto needs before it puts float32 attention
// on them: the fragment layout the kernels assume is the instruction's, and 3xTF32 keeps float32's accuracy.
// Emulated, this checks the check; on a GPU it is what confirms the table the emulated instruction follows.
TEST_F(Cuda, TensorCoreSelfCheckPasses) {
#ifdef LOOM_WITH_CUDA
  EXPECT_THROW(cuda::tensor_core_self_check(cuda::device_count()), Error);
  const double error = cuda::tensor_core_self_check(0);
  if (std::isinf(error)) GTEST_SKIP() << "this GPU has no tf32 tensor cores (compute capability below 8.0)";
  std::printf("tensor-core self-check on cuda:0: worst error %.3g\n", error);  // for a GPU session's log
  EXPECT_LT(error, 1e-6);
  EXPECT_TRUE(cuda::tensor_cores_enabled(0));
#endif
}

// The drivers' "device:" line (cuda::describe_device): the GPU and the kernels float32 attention takes, by
// default and pinned.
TEST_F(Cuda, DescribesTheDevice) {
#ifdef LOOM_WITH_CUDA
  const std::string line = cuda::describe_device(0);
  std::printf("cuda:0: %s\n", line.c_str());
  EXPECT_NE(line.find(" (sm_"), std::string::npos) << line;
  EXPECT_NE(line.find(cuda::tensor_cores_enabled(0) ? "float32 attention on the tensor cores"
                                                    : "float32 attention on FMA register tiles"),
            std::string::npos)
      << line;
  {
    struct Pin {  // back to Auto however this returns
      Pin() { cuda::set_attention_kernels(cuda::AttentionKernels::SharedTiles); }
      ~Pin() { cuda::set_attention_kernels(cuda::AttentionKernels::Auto); }
    } pin;
    const std::string pinned = cuda::describe_device(0);
    EXPECT_NE(pinned.find("float32 attention on shared-memory tiles (pinned)"), std::string::npos) << pinned;
  }
  EXPECT_THROW(cuda::describe_device(cuda::device_count()), Error);
#endif
}

// The tensor-core kernels compute float32 as 3xTF32 so as to keep float32's accuracy: their error against
// float64 stays within a small factor of the FMA register tiles' (a tf32 product alone, 2^-11 relative, errs
// about a thousand times more here, and fails this).
TEST_F(Cuda, TensorCoreAttentionKeepsFloat32Accuracy) {
#ifdef LOOM_WITH_CUDA
  if (!cuda::tensor_cores_enabled(0))
    GTEST_SKIP() << "the default kernels do not use this GPU's tensor cores";
  const double fma = attention_float32_error(cuda::AttentionKernels::RegisterTiles),
               tensor_cores = attention_float32_error(cuda::AttentionKernels::Auto);
  EXPECT_LT(fma, 1e-5);
  EXPECT_LE(tensor_cores, 3 * fma) << "register tiles " << fma << ", tensor cores " << tensor_cores;
#endif
}

// A head too wide for 48 KiB of shared memory (float32 d + dv = 352) runs fused all the same, its kernels
// opting into more: the composed default would hold the 4 MiB score matrix, which alone exceeds this bound.
TEST_F(Cuda, WideHeadAttentionNeverHoldsTheScoreMatrix) {
  const int64_t n = 1024, d = 320, dv = 32;
  Tensor q = host_random({1, n, d}, kFloat32, -0.2, 0.2, 70).to(kCUDA).requires_grad_();
  Tensor k = host_random({1, n, d}, kFloat32, -0.2, 0.2, 71).to(kCUDA).requires_grad_();
  Tensor v = host_random({1, n, dv}, kFloat32, -1, 1, 72).to(kCUDA).requires_grad_();
  Tensor go = host_random({1, n, dv}, kFloat32, -1, 1, 73).to(kCUDA);
  cuda_synchronize();
  reset_peak_memory(kCUDA);
  const int64_t before = memory_stats(kCUDA).current_bytes;
  Tensor out = scaled_dot_product_attention(q, k, v);
  out.backward(go);
  cuda_synchronize();
  const int64_t grown = memory_stats(kCUDA).peak_bytes - before;
  EXPECT_LT(grown, n * n * 4) << "attention with d = " << d << " at L = S = " << n << " allocated " << grown
                              << " bytes";
  EXPECT_GT(grown, n * (2 * d + 2 * dv) * 4);  // out and three gradients at least
  EXPECT_TRUE(std::isfinite(sum(out).to(kCPU).item<float>()));
}

// Bi-BloSA's feature-wise attention: its scores [N, L, L, d] would be 256 MiB here (the composed default
// holds several such tensors); the kernels hold none, so memory is that of the operands and gradients.
TEST_F(Cuda, MultiDimAttentionNeverHoldsTheScores) {
  const int64_t n = 16, l = 128, d = 256, bytes = n * l * d * 4;
  Tensor q = host_random({n, l, d}, kFloat32, -1, 1, 64).to(kCUDA).requires_grad_();
  Tensor k = host_random({n, l, d}, kFloat32, -1, 1, 65).to(kCUDA).requires_grad_();
  Tensor v = host_random({n, l, d}, kFloat32, -1, 1, 66).to(kCUDA).requires_grad_();
  Tensor bias = host_random({d}, kFloat32, -1, 1, 67).to(kCUDA).requires_grad_();
  Tensor go = host_random({n, l, d}, kFloat32, -1, 1, 68).to(kCUDA);
  cuda_synchronize();
  reset_peak_memory(kCUDA);
  const int64_t before = memory_stats(kCUDA).current_bytes;
  Tensor out = multi_dim_attention(q, k, v, bias, AttentionDirection::Forward);
  out.backward(go);
  cuda_synchronize();
  const int64_t grown = memory_stats(kCUDA).peak_bytes - before;
  EXPECT_LT(grown, 12 * bytes) << "multi_dim_attention on [" << n << ", " << l << ", " << d << "] allocated "
                               << grown << " bytes";
  EXPECT_GT(grown, 5 * bytes);  // out, inv_sum and three gradients at least
  EXPECT_TRUE(std::isfinite(sum(out).to(kCPU).item<float>()));
}

// --- random ------------------------------------------------------------------------------------------------

TEST_F(Cuda, PhiloxDrawsMatchCpu) {
  PhiloxState state{0x1234abcd, 77};
  for (DType dtype : {kFloat32, kFloat64}) {
    for (int64_t n : {1, 7, 1001, 1 << 16}) {
      Tensor cu = Tensor::empty({n}, dtype), gu = Tensor::empty({n}, {dtype, kCUDA});
      cpu_backend().uniform(cu, -2, 3, state);
      backend_for(kCUDA).uniform(gu, -2, 3, state);
      expect_close(gu, cu, 0, dtype == kFloat32 ? 0 : 1e-15, "uniform");
      Tensor cn = Tensor::empty({n}, dtype), gn = Tensor::empty({n}, {dtype, kCUDA});
      cpu_backend().normal(cn, 0.5, 2, state);
      backend_for(kCUDA).normal(gn, 0.5, 2, state);
      expect_close(gn, cn, 1e-6, 1e-6, "normal");
      Tensor x = host_random({n}, dtype, -1, 1, 43);
      Tensor cd = Tensor::empty({n}, dtype), gd = Tensor::empty({n}, {dtype, kCUDA});
      cpu_backend().dropout(x, 0.3, state, cd);
      backend_for(kCUDA).dropout(x.to(kCUDA), 0.3, state, gd);
      expect_close(gd, cd, 1e-7, 0, "dropout");
    }
  }
  // The public factories draw the same numbers from an explicit state.
  expect_close(rand({3, 5}, state, {kFloat32, kCUDA}), rand({3, 5}, state), 0, 0, "rand");
  expect_close(randn({3, 5}, state, {kFloat32, kCUDA}), randn({3, 5}, state), 1e-6, 1e-6, "randn");
}
