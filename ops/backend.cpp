#include "loom/ops/backend.h"

#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#endif

namespace loom {

void Backend::missing(const char* kernel) const {
  LOOM_FAIL(kernel, ": the ", name(), " backend has no kernel for this op yet");
}

void Backend::copy(const Tensor&, const Tensor&) { missing("copy"); }
void Backend::copy_across_devices(const Tensor&, const Tensor&) { missing("copy_across_devices"); }
void Backend::fill(const Tensor&, double) { missing("fill"); }
void Backend::unary(UnaryOp op, const UnaryParams&, const Tensor&, const Tensor&) { missing(unary_op_name(op)); }
void Backend::binary(BinaryOp op, const Tensor&, const Tensor&, const Tensor&) { missing(binary_op_name(op)); }
void Backend::where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { missing("where"); }
void Backend::reduce(ReduceOp op, const Tensor&, const Shape&, const Tensor&, double) { missing(reduce_op_name(op)); }
void Backend::arg_reduce(ArgReduceOp op, const Tensor&, int64_t, const Tensor&, const Tensor&) {
  missing(op == ArgReduceOp::Max ? "argmax" : "argmin");
}
void Backend::scan(ScanOp op, const Tensor&, int64_t, const Tensor&) {
  missing(op == ScanOp::Cumsum ? "cumsum" : "cumprod");
}
void Backend::bmm(const Tensor&, const Tensor&, const Tensor&, double, double) { missing("matmul"); }
void Backend::gather(const Tensor&, int64_t, const Tensor&, const Tensor&) { missing("gather"); }
void Backend::scatter(const Tensor&, int64_t, const Tensor&, const Tensor&, bool) { missing("scatter"); }
void Backend::index_select(const Tensor&, int64_t, const Tensor&, const Tensor&) { missing("index_select"); }
void Backend::index_add(const Tensor&, int64_t, const Tensor&, const Tensor&) { missing("index_add"); }
void Backend::sort(const Tensor&, int64_t, bool, const Tensor&, const Tensor&) { missing("sort"); }
void Backend::topk(const Tensor&, int64_t, int64_t, bool, const Tensor&, const Tensor&) { missing("topk"); }
void Backend::arange(double, double, const Tensor&) { missing("arange"); }
void Backend::triangle(const Tensor&, int64_t, bool, const Tensor&) { missing("tril/triu"); }
void Backend::uniform(const Tensor&, double, double, PhiloxState) { missing("uniform"); }
void Backend::normal(const Tensor&, double, double, PhiloxState) { missing("normal"); }
void Backend::dropout(const Tensor&, double, PhiloxState, const Tensor&) { missing("dropout"); }
void Backend::softmax(const Tensor&, const Tensor&, bool log, const Tensor&) { missing(log ? "log_softmax" : "softmax"); }
void Backend::layer_norm(const Tensor&, const Tensor&, const Tensor&, double, const Tensor&, const Tensor&,
                         const Tensor&) {
  missing("layer_norm");
}

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::Gelu: return "gelu";
    case UnaryOp::GeluTanh: return "gelu(tanh)";
    case UnaryOp::Elu: return "elu";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::PowScalar: return "pow";
    case UnaryOp::Clamp: return "clamp";
    case UnaryOp::LogicalNot: return "logical_not";
    case UnaryOp::Square: return "square";
    case UnaryOp::Reciprocal: return "reciprocal";
    case UnaryOp::Sign: return "sign";
  }
  return "unary";
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Pow: return "pow";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
    case BinaryOp::Eq: return "eq";
    case BinaryOp::Ne: return "ne";
    case BinaryOp::Lt: return "lt";
    case BinaryOp::Le: return "le";
    case BinaryOp::Gt: return "gt";
    case BinaryOp::Ge: return "ge";
    case BinaryOp::LogicalAnd: return "logical_and";
    case BinaryOp::LogicalOr: return "logical_or";
  }
  return "binary";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Prod: return "prod";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    case ReduceOp::LogSumExp: return "logsumexp";
    case ReduceOp::Var: return "var";
    case ReduceOp::Any: return "any";
    case ReduceOp::All: return "all";
  }
  return "reduce";
}

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
#ifdef LOOM_WITH_CUDA
  return cuda::backend(device.index);
#else
  LOOM_FAIL("device ", device, ": this build of Loom has no CUDA backend (configure with -DLOOM_CUDA=ON)");
#endif
}

}  // namespace loom
