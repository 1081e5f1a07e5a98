// Shared pieces of the multi-rank tests: the world communicator, random masks and partitions.
// (Seeded inputs and the single-rank reference come from dbsp/sp_reference.hpp.)
#pragma once

#include <gtest/gtest.h>

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
// Heads and blocks scattered at random over the grid (uneven groups and shards, empty ones too);
// with U > 1 the groups hold their heads in a random head_order.
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
// `elements` NaNs: an output buffer whose rows fail every check unless the run writes them.
inline std::vector<float> poisoned(size_t elements) {
  return std::vector<float>(elements, std::numeric_limits<float>::quiet_NaN());
}
// A forward whose host work was prepared by plan_ahead (`got`, its output `out`) against the same
// forward planned in the call (`want`, `expected`): the same plan, re-plan decision, predicted
// ratio, schedule reuse and output bits; `got` found its work prepared exactly when `ahead`.
void expect_same_forward(const SpLayerReport& got, const std::vector<float>& out,
                         const SpLayerReport& want, const std::vector<float>& expected, bool ahead,
                         const std::string& what);
// Runs call n of `masks` (layer n % layers; `inputs[n]` holds its shard's q, k, v and reference)
// through two SpAttention of each strategy named: one plans in the call, the other finds each
// call but the first prepared by plan_ahead during the call before. Expects the same forwards
// (expect_same_forward) and outputs that `expect_close(out, reference, what)` accepts, and the same
// re-plans; then hands the strategy's name and its plan-ahead SpAttention to `after`.
template <class Mask, class Data, class ExpectClose, class After>
void expect_plan_ahead_equals_planning_in_the_call(Communicator& world, const SpProblem& problem,
                                                   int layers, const std::vector<Mask>& masks,
                                                   const std::vector<Data>& inputs,
                                                   ExpectClose&& expect_close, After&& after) {
  const int calls = static_cast<int>(masks.size());
  for (const char* name : {"dbsp", "usp", "ring"}) {
    SpAttention plain(world, parse_strategy(name, world.size()), layers);
    SpAttention ahead(world, parse_strategy(name, world.size()), layers);
    for (int call = 0; call < calls; ++call) {
      const int layer = call % layers;
      if (call + 1 < calls) ahead.plan_ahead((call + 1) % layers, problem, masks[call + 1]);
      const Data& data = inputs[call];
      std::vector<float> expected = poisoned(data.q.size()), out = poisoned(data.q.size());
      const SpLayerReport want = plain.forward(layer, problem, masks[call], data.q.data(),
                                               data.k.data(), data.v.data(), expected.data());
      const SpLayerReport got = ahead.forward(layer, problem, masks[call], data.q.data(),
                                              data.k.data(), data.v.data(), out.data());
      const std::string what = std::string(name) + " call " + std::to_string(call);
      expect_same_forward(got, out, want, expected, /*ahead=*/call > 0, what);
      expect_close(out, data.reference, what);
    }
    EXPECT_EQ(ahead.replans(), plain.replans()) << name;
    after(std::string(name), ahead);
  }
}

}  // namespace dbsp::test
