// Implementation of the multi-rank test helpers.
#include "mpi_test_support.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <random>

#include "dbsp/attention.hpp"
#include "dbsp/sp_reference.hpp"

namespace dbsp::test {
namespace {

std::unique_ptr<Communicator>& world_slot() {
  static std::unique_ptr<Communicator> comm;
  return comm;
}

}  // namespace

Communicator& world() {
  auto& comm = world_slot();
  if (!comm) comm = make_mpi_world(CommOptions{.timeout_seconds = 60});
  return *comm;
}

void release_world() { world_slot().reset(); }

BlockMask make_mask(MaskKind kind, int heads, MaskGeometry geometry, double density,
                    uint64_t seed) {
  BlockMask mask(heads, geometry, kind == MaskKind::full);
  if (kind != MaskKind::random) return mask;
  std::mt19937_64 rng(seed);
  for (int h = 0; h < heads; ++h) {
    // Each head gets its own density so that groups differ, and some rows stay empty.
    std::bernoulli_distribution head_keep(std::min(1.0, density * (0.25 + 1.5 * h / heads)));
    for (int i = 0; i < mask.q_blocks(); ++i) {
      for (int j = 0; j < mask.k_blocks(); ++j) {
        if (head_keep(rng)) mask.set(h, i, j);
      }
    }
  }
  return mask;
}

Partition random_partition(Grid grid, int heads, int q_blocks, int k_blocks, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> group(0, grid.ulysses - 1), shard(0, grid.ring - 1);
  Partition p;
  p.grid = grid;
  p.heads = heads;
  p.q_blocks = q_blocks;
  p.k_blocks = k_blocks;
  for (int h = 0; h < heads; ++h) p.head_group.push_back(group(rng));
  p.q_shard.assign(grid.ulysses, std::vector<int>(q_blocks));
  p.k_shard.assign(grid.ulysses, std::vector<int>(k_blocks));
  for (int g = 0; g < grid.ulysses; ++g) {
    for (int& s : p.q_shard[g]) s = shard(rng);
    for (int& s : p.k_shard[g]) s = shard(rng);
  }
  // Groups hold their heads in a random order (the planner orders them for the head chunks);
  // with one group the heads stay in the input's order, which keeps the in-place path.
  if (grid.ulysses > 1) {
    p.head_order.resize(static_cast<size_t>(heads));
    std::iota(p.head_order.begin(), p.head_order.end(), 0);
    std::shuffle(p.head_order.begin(), p.head_order.end(), rng);
  }
  // Without a ring, some heads' query rows are shared with another group (a prefix or a suffix).
  if (grid.ring == 1 && grid.ulysses > 1 && q_blocks >= 2) {
    std::bernoulli_distribution shared(0.35), prefix(0.5);
    std::uniform_int_distribution<int> other(1, grid.ulysses - 1), cut(1, q_blocks - 1);
    for (int h = 0; h < heads; ++h) {
      if (!shared(rng)) continue;
      const int to = (p.head_group[h] + other(rng)) % grid.ulysses;
      const int at = cut(rng);
      p.head_splits.push_back({h, to, prefix(rng) ? BlockRange{0, at} : BlockRange{at, q_blocks}});
    }
  }
  return p;
}

FineMask random_fine_mask(int heads, MaskGeometry geometry, double density, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution empty_row(0.2);
  const int q_blocks = geometry.q_blocks();
  std::vector<int64_t> row_offset{0};
  std::vector<int32_t> keys;
  for (int h = 0; h < heads; ++h) {
    std::bernoulli_distribution keep(std::min(1.0, density * (0.2 + 1.6 * h / heads)));
    for (int i = 0; i < q_blocks; ++i) {
      const bool one_key = heads > 1 && h == 1 && i == q_blocks - 1;
      if (one_key) {
        keys.push_back(static_cast<int32_t>(geometry.seq_k - 1));
      } else if (!(h == 0 && i == 0) && !empty_row(rng)) {
        for (int64_t k = 0; k < geometry.seq_k; ++k) {
          if (keep(rng)) keys.push_back(static_cast<int32_t>(k));
        }
      }
      row_offset.push_back(static_cast<int64_t>(keys.size()));
    }
  }
  return FineMask(heads, geometry, std::move(row_offset), std::move(keys));
}

std::vector<float> rounded_to_bf16(std::vector<float> values) {
  for (float& x : values) x = round_to_bf16(x);
  return values;
}

std::vector<float> bf16_shard(uint64_t seed, int which, const SequenceShard& shard,
                              const SpProblem& problem) {
  return rounded_to_bf16(seeded_tensor(seed, which, shard.first_token, shard.end_token,
                                       problem.heads, problem.head_dim));
}

void expect_same_forward(const SpLayerReport& got, const std::vector<float>& out,
                         const SpLayerReport& want, const std::vector<float>& expected, bool ahead,
                         const std::string& what) {
  EXPECT_EQ(got.planned_ahead, ahead) << what;
  EXPECT_FALSE(want.planned_ahead) << what;
  EXPECT_EQ(got.plan_hash, want.plan_hash) << what;
  EXPECT_EQ(got.replanned, want.replanned) << what;
  EXPECT_EQ(got.predicted_ratio, want.predicted_ratio) << what;
  EXPECT_EQ(got.telemetry.schedule_reused, want.telemetry.schedule_reused) << what;
  ASSERT_EQ(out.size(), expected.size()) << what;
  EXPECT_EQ(std::memcmp(out.data(), expected.data(), out.size() * sizeof(float)), 0) << what;
}

}  // namespace dbsp::test
