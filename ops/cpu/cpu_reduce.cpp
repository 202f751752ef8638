// Placeholder until this family's kernels land: each kernel reports that it is missing.
#include "loom/ops/cpu/cpu_backend.h"

namespace loom {
void CpuBackend::reduce(ReduceOp op, const Tensor& i, const Shape& d, const Tensor& o, double p) { Backend::reduce(op, i, d, o, p); }
void CpuBackend::arg_reduce(ArgReduceOp op, const Tensor& i, int64_t d, const Tensor& v, const Tensor& x) { Backend::arg_reduce(op, i, d, v, x); }
void CpuBackend::scan(ScanOp op, const Tensor& i, int64_t d, const Tensor& o) { Backend::scan(op, i, d, o); }
}  // namespace loom
