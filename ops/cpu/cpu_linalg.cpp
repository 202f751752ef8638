// Placeholder until this family's kernels land: each kernel reports that it is missing.
#include "loom/ops/cpu/cpu_backend.h"

namespace loom {
void CpuBackend::bmm(const Tensor& a, const Tensor& b, const Tensor& o, double al, double be) { Backend::bmm(a, b, o, al, be); }
}  // namespace loom
