#include "loom/ops/attention_checks.h"

#include "loom/core/error.h"

namespace loom::detail {

void check_attention_operand(const char* op, const char* name, const Tensor& t, const Tensor& q) {
  LOOM_CHECK(t.defined(), op, ": ", name, " is undefined");
  LOOM_CHECK(is_floating(t.dtype()), op, ": expected floating ", name, " (float32 or float64), got ",
             describe(t));
  LOOM_CHECK(t.dtype() == q.dtype(), op, ": ", name, " is ", describe(t), " but q is ", describe(q));
  LOOM_CHECK(t.device() == q.device(), op, ": ", name, " is on ", t.device(), " but q is on ", q.device());
}

}  // namespace loom::detail
