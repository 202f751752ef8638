#pragma once
// Philox 4x32-10 blocks in bulk on the CPU, and dropout's keep decision built on them: shared by the random
// kernels (cpu_random.cpp) and the fused attention's dropout (cpu_attention.cpp), so that both drop exactly
// the elements that loom::dropout drops for the same PhiloxState.
#include <cstdint>

#include "loom/core/generator.h"
#include "loom/core/philox.h"  // dropout_threshold, dropout_scale: the rule every backend follows

namespace loom::cpu {

// words[4 j + k] = philox_block(seed, first_counter + j).v[k] for j < blocks (AVX2: eight blocks at a time).
void philox_blocks(uint64_t seed, uint64_t first_counter, int64_t blocks, uint32_t* words);

// out[c] = 1 / (1 - p) if element first + c of the dropout draw at `state` is kept, else 0 (all 0 for p >=
// 1): the factor loom::dropout multiplies element first + c of a contiguous tensor by. T is float or double.
template <typename T>
void dropout_multipliers(PhiloxState state, double p, int64_t first, int64_t count, T* out);

}  // namespace loom::cpu
