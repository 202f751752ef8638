#pragma once
// The tape: how ops record themselves. An op's forward runs inside an OpScope, which decides whether the op
// records (grad mode on and some input requires grad) and pauses recording for the forward's own internal
// steps, so one public op is one tape entry:
//
//   Tensor exp(const Tensor& x) {
//     autograd::OpScope scope("exp", {x});
//     Tensor y = ...kernel...;
//     if (scope.recording())
//       scope.record({y}, [saved = scope.save(y)](const auto& g) { return std::vector<Tensor>{mul(g[0], saved.get())}; });
//     return y;
//   }
//
// Backward closures are written with ops, so they run on whichever device the tensors live on. They run with
// grad mode off (first-order gradients). Tapes form a thread-local stack: TapeGuard pushes a fresh one (the
// recomputation inside checkpoint() does), and each tape counts the entries recorded on it that are still
// alive, so tests and tools can see that backward frees what it replays.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "loom/autograd/node.h"
#include "loom/autograd/profiler.h"
#include "loom/core/tensor.h"

namespace loom::autograd {

// Entry counts of one tape, shared with its Nodes (which may outlive the TapeGuard that made the tape).
struct TapeCounters {
  int64_t live = 0;      // entries recorded and not yet freed
  int64_t recorded = 0;  // entries recorded in total
};

class Tape {
 public:
  Tape();
  int64_t live_entries() const { return counters_->live; }
  int64_t recorded_entries() const { return counters_->recorded; }
  const std::shared_ptr<TapeCounters>& counters() const { return counters_; }

 private:
  std::shared_ptr<TapeCounters> counters_;
};

// The tape on top of this thread's stack (the thread's base tape when no TapeGuard is alive).
Tape& current_tape();

// Pushes a fresh tape for its lifetime.
class TapeGuard {
 public:
  TapeGuard();
  ~TapeGuard();
  TapeGuard(const TapeGuard&) = delete;
  TapeGuard& operator=(const TapeGuard&) = delete;
  Tape& tape() { return tape_; }

 private:
  Tape tape_;
};

// A tensor kept for backward. It holds the data without its autograd state (so saving an op's own output
// makes no reference cycle) and the storage version at save time: get() refuses a tensor that an in-place op
// changed afterwards, which would otherwise give a silently wrong gradient.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, const char* op);
  const Tensor& get() const;
  // get(), leaving the slot empty: for a backward that runs once (backward_frees_graph()) and wants to be the
  // tensor's only holder, to release it early or update it in place.
  Tensor take();
  bool defined() const { return data_.defined(); }

 private:
  Tensor data_;
  uint64_t version_ = 0;
  const char* op_ = "";
};

// True when grad mode is on and one of the tensors requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> tensors);
bool any_requires_grad(const std::vector<Tensor>& tensors);

class OpScope {
 public:
  OpScope(const char* op, std::initializer_list<Tensor> inputs);
  OpScope(const char* op, std::vector<Tensor> inputs);
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

  // Whether this op records an entry (decided when the scope opened).
  bool recording() const { return recording_; }
  // Whether input i requires grad (only meaningful while recording): skip computing gradients nobody needs.
  bool needs_grad(size_t i) const;
  SavedTensor save(const Tensor& t) const { return SavedTensor(t, op_); }
  // Records one entry whose outputs are `outputs` (marked as requiring grad and pointing at the entry).
  void record(std::initializer_list<Tensor> outputs, BackwardFn backward);
  void record(const std::vector<Tensor>& outputs, BackwardFn backward);

 private:
  ProfileScope profile_;  // first member: times the whole scope when a Profiler records
  const char* op_;
  std::vector<Tensor> inputs_;
  bool recording_ = false;
  bool previous_mode_ = true;
};

// Refuses an in-place write into t while grad mode is on and t requires grad: the tape could not give a
// correct gradient through it. (Under NoGradGuard, optimizers update parameters in place.)
void check_inplace(const char* op, const Tensor& t);

// Records an entry directly (custom Functions use it): `inputs` feed `outputs` through `backward`.
void record_entry(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                  BackwardFn backward);

}  // namespace loom::autograd
