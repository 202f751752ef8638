// Placeholder until this family's kernels land: each kernel reports that it is missing.
#include "loom/ops/cpu/cpu_backend.h"

namespace loom {
void CpuBackend::uniform(const Tensor& o, double l, double h, PhiloxState s) { Backend::uniform(o, l, h, s); }
void CpuBackend::normal(const Tensor& o, double m, double sd, PhiloxState s) { Backend::normal(o, m, sd, s); }
void CpuBackend::dropout(const Tensor& i, double p, PhiloxState s, const Tensor& o) { Backend::dropout(i, p, s, o); }
}  // namespace loom
