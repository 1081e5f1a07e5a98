// Block masks of the attention benchmark at a target density: uniform random (plus the
// diagonal), and structured ones from the synthetic video workload, rescaled per row so that
// each head keeps its pattern and its density relative to the other heads.
#pragma once

#include <cstdint>
#include <string>

#include "dbsp/block_mask.hpp"

namespace dbsp::bench {

BlockMask uniform_mask(int heads, const MaskGeometry& geometry, double density, uint64_t seed);

// A synthetic workload mask (`base`) with each row's kept count scaled by density / (base
// density): thinned by a seeded random subset, or grown by random extra blocks of the row.
BlockMask structured_mask(const BlockMask& base, double density, uint64_t seed);

// `mask` with row 2i + 1 of every head replaced by row 2i: adjacent rows keep the same key
// blocks (the best case for paired rows, SparseAttention::pair_query_rows).
BlockMask with_twin_rows(const BlockMask& mask);

}  // namespace dbsp::bench
