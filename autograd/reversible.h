#pragma once
// Reversible residual stacks (RevNet; Reformer section 3): activation memory independent of depth.
//
// Block l maps (x1, x2) to
//   y1 = x1 + F_l(x2),   y2 = x2 + G_l(y1)
// and is inverted exactly (up to rounding) by x2 = y2 - G_l(y1), x1 = y1 - F_l(x2). reversible_sequence runs
// the blocks with recording off and records ONE tape entry that keeps only the final (y1, y2) and, per block,
// the default generator's Philox (seed, offset) before F_l and before G_l. Its backward walks the blocks in
// reverse: it reruns G_l on y1 on a nested tape with the generator rewound to G_l's state (dropout masks,
// random LSH rotations are drawn again identically), backpropagates dy2 through it, reconstructs x2, does the
// same for F_l on x2, reconstructs x1, and frees each nested tape before moving to the next block. So
// backward holds one block's activations at a time and the forward none (research/reformer.md section 4).
//
// Parameters that F and G read (captured modules' weights) receive their gradients during those reruns, even
// when neither x1 nor x2 requires grad (the failure lucidrains/reformer-pytorch#29 describes). They must be
// leaves: a non-leaf would make the nested backward run into the outer graph.
//
// F and G must be deterministic given their input and the generator state, and side-effect free: they run
// twice per training step (running statistics or counters inside them would update twice; RevTorch#13).
#include <functional>
#include <vector>

#include "loom/core/generator.h"
#include "loom/core/tensor.h"

namespace loom {

using ReversibleFn = std::function<Tensor(const Tensor&)>;

struct ReversibleBlock {
  ReversibleFn f;  // residual branch added to the first stream:  y1 = x1 + f(x2)
  ReversibleFn g;  // residual branch added to the second stream: y2 = x2 + g(y1)
};

// The randomness each block saw in a forward: where the default generator stood before F_l and before G_l.
struct ReversibleTrace {
  std::vector<PhiloxState> f_rng;
  std::vector<PhiloxState> g_rng;
};

struct ReversibleOutput {
  Tensor y1, y2;
};

// Runs the stack on (x1, x2) (same shape, dtype and device; the same tensor for both streams is fine and
// gives it dx1 + dx2, as Reformer's x1 = x2 = embedding). `parameters`: the parameters F and G read; the
// entry is recorded when grad mode is on and x1, x2 or one of them requires grad. An empty list means
// "unknown": the entry is then recorded whenever grad mode is on, as checkpoint() does, so captured
// parameters never silently miss their gradients. `trace`, when given, receives the per-block generator
// states (for reversible_inverse).
ReversibleOutput reversible_sequence(const std::vector<ReversibleBlock>& blocks, const Tensor& x1,
                                     const Tensor& x2, const std::vector<Tensor>& parameters = {},
                                     ReversibleTrace* trace = nullptr);

// Reconstructs the stack's inputs (x1, x2) from its outputs, replaying the randomness `trace` recorded; runs
// without recording. What backward does, exposed to measure the reconstruction drift over depth.
ReversibleOutput reversible_inverse(const std::vector<ReversibleBlock>& blocks, const Tensor& y1,
                                    const Tensor& y2, const ReversibleTrace& trace);

}  // namespace loom
