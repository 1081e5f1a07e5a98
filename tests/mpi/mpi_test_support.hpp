// Shared pieces of the multi-rank tests: the world communicator, seeded inputs that every rank
// can regenerate for any token, random masks and partitions, and the fp64 single-rank reference.
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/block_layout.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/communicator.hpp"
#include "dbsp/partition.hpp"
#include "dbsp/sp_attention.hpp"

namespace dbsp::test {

// Built on first use with a generous timeout (oversubscribed CI ranks are slow, not dead).
Communicator& world();
void release_world();  // before MPI_Finalize

// Deterministic value in [-1, 1) of element (token, head, dim) of tensor `which`.
float seeded_value(uint64_t seed, int which, int64_t token, int64_t head, int64_t dim);
// Tokens [first, end) of tensor `which`, [tokens, heads, head_dim].
std::vector<float> seeded_tensor(uint64_t seed, int which, int64_t first, int64_t end, int heads,
                                 int head_dim);

enum class MaskKind { random, empty, full };
BlockMask make_mask(MaskKind kind, int heads, MaskGeometry geometry, double density, uint64_t seed);
// Heads and blocks scattered at random over the grid (uneven groups and shards, empty ones too).
Partition random_partition(Grid grid, int heads, int q_blocks, int k_blocks, uint64_t seed);

// Output rows [first, end) of the query sequence for every head, in fp64, from the full inputs
// (rounded to bf16 first when the device path will see bf16 inputs).
std::vector<double> reference_rows(const SpProblem& problem, const BlockMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block,
                                   bool round_inputs_to_bf16 = false);
// The same rows through the naive bf16 path (attention_block_sparse_bf16_naive) on bf16-rounded
// inputs: the yardstick of accuracy.hpp.
std::vector<float> naive_bf16_rows(const SpProblem& problem, const BlockMask& mask, uint64_t seed,
                                   int first_q_block, int end_q_block);

}  // namespace dbsp::test
