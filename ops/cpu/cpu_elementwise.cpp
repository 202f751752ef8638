// Placeholder until this family's kernels land: each kernel reports that it is missing.
#include "loom/ops/cpu/cpu_backend.h"

namespace loom {
void CpuBackend::unary(UnaryOp op, const UnaryParams& p, const Tensor& i, const Tensor& o) { Backend::unary(op, p, i, o); }
void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& o) { Backend::binary(op, a, b, o); }
void CpuBackend::where(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor& o) { Backend::where(c, a, b, o); }
}  // namespace loom
