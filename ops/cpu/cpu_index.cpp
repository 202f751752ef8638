// Placeholder until this family's kernels land: each kernel reports that it is missing.
#include "loom/ops/cpu/cpu_backend.h"

namespace loom {
void CpuBackend::gather(const Tensor& i, int64_t d, const Tensor& x, const Tensor& o) { Backend::gather(i, d, x, o); }
void CpuBackend::scatter(const Tensor& s, int64_t d, const Tensor& x, const Tensor& src, bool acc) { Backend::scatter(s, d, x, src, acc); }
void CpuBackend::index_select(const Tensor& i, int64_t d, const Tensor& x, const Tensor& o) { Backend::index_select(i, d, x, o); }
void CpuBackend::index_add(const Tensor& s, int64_t d, const Tensor& x, const Tensor& src) { Backend::index_add(s, d, x, src); }
void CpuBackend::sort(const Tensor& i, int64_t d, bool desc, const Tensor& v, const Tensor& x) { Backend::sort(i, d, desc, v, x); }
void CpuBackend::topk(const Tensor& i, int64_t k, int64_t d, bool l, const Tensor& v, const Tensor& x) { Backend::topk(i, k, d, l, v, x); }
void CpuBackend::arange(double s, double st, const Tensor& o) { Backend::arange(s, st, o); }
void CpuBackend::triangle(const Tensor& i, int64_t d, bool u, const Tensor& o) { Backend::triangle(i, d, u, o); }
}  // namespace loom
