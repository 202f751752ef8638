#pragma once
// Chunked application of a position-wise function (Reformer's chunked feed-forward, paper section 3, eq. 10;
// HF apply_chunking_to_forward; trax Chunk + Scan(remat=True)): activation memory of ONE chunk instead of the
// whole sequence, in forward and backward alike.
//
// chunked_apply(fn, x, chunk_size, dim) gives fn(x) for an fn that treats the slices of x along dim
// independently (a feed-forward block, a loss head). The forward runs fn on each slice of chunk_size without
// recording (the slice's activations are freed at once) and writes it into the output; it records one tape
// entry. Its backward, chunk by chunk, reruns fn on a nested tape from the saved slice of x, with the default
// generator rewound to the Philox state that chunk's forward saw (so dropout masks are identical between the
// forward and the recompute), backpropagates that chunk's slice of the output gradient, and writes the slice's
// input gradient; parameters fn captures accumulate their .grad during these reruns, as with checkpoint().
//
// - chunk_size <= 0, or >= x.size(dim): chunking is off and fn(x) runs on the ordinary tape (no recompute).
// - x.size(dim) not a multiple of chunk_size: the last chunk is shorter.
// - fn must keep the length along dim (other dims may change, e.g. d_model -> vocabulary) and give every chunk
//   the same output dtype, device and sizes outside dim.
// - Dropout inside fn draws per chunk, in chunk order, from the default generator: the masks are not those an
//   unchunked fn(x) would draw (that would need masks keyed on absolute position), but forward and recompute
//   agree exactly, which is what a correct gradient needs. Without randomness the result equals fn(x).
#include <cstdint>
#include <functional>

#include "loom/core/tensor.h"

namespace loom {

Tensor chunked_apply(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, int64_t chunk_size,
                     int64_t dim = 1);

// The same, with fn also told where its slice starts along dim (0 when chunking is off), for a function that
// pairs the slice with data outside x: a chunked loss head slices its targets alike.
Tensor chunked_apply_indexed(const std::function<Tensor(const Tensor& slice, int64_t start)>& fn, const Tensor& x,
                             int64_t chunk_size, int64_t dim = 1);

}  // namespace loom
