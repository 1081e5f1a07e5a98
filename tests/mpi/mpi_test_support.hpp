// Shared pieces of the multi-rank tests: the world communicator, random masks and partitions.
// (Seeded inputs and the single-rank reference come from dbsp/sp_reference.hpp.)
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "dbsp/block_layout.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/communicator.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/partition.hpp"
#include "dbsp/sp_attention.hpp"

namespace dbsp::test {

// Built on first use with a generous timeout (oversubscribed CI ranks are slow, not dead).
Communicator& world();
void release_world();  // before MPI_Finalize

enum class MaskKind { random, empty, full };
BlockMask make_mask(MaskKind kind, int heads, MaskGeometry geometry, double density, uint64_t seed);
// Heads and blocks scattered at random over the grid (uneven groups and shards, empty ones too).
Partition random_partition(Grid grid, int heads, int q_blocks, int k_blocks, uint64_t seed);
// A fine mask drawn key by key (not from blocks): each head its own density, about a fifth of
// the rows empty, and row (0, 0) empty and row (1, last) holding one key of the short last key
// block, so that both cases occur on every rank count.
FineMask random_fine_mask(int heads, MaskGeometry geometry, double density, uint64_t seed);
// Each value rounded to bf16 (what the device path sees of a host input).
std::vector<float> rounded_to_bf16(std::vector<float> values);
// The seeded tensor `which` (0 Q, 1 K, 2 V) of a rank's shard, rounded to bf16.
std::vector<float> bf16_shard(uint64_t seed, int which, const SequenceShard& shard,
                              const SpProblem& problem);
// A forward whose host work was prepared by plan_ahead (`got`, its output `out`) against the same
// forward planned in the call (`want`, `expected`): the same plan, re-plan decision, predicted
// ratio, schedule reuse and output bits; `got` found its work prepared exactly when `ahead`.
void expect_same_forward(const SpLayerReport& got, const std::vector<float>& out,
                         const SpLayerReport& want, const std::vector<float>& expected, bool ahead,
                         const std::string& what);
// `elements` NaNs: an output buffer whose rows fail every check unless the run writes them.
inline std::vector<float> poisoned(size_t elements) {
  return std::vector<float>(elements, std::numeric_limits<float>::quiet_NaN());
}

}  // namespace dbsp::test
