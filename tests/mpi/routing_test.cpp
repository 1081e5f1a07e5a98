// Exact routing: inputs whose every element encodes (tensor, token, head, dim) go through the
// runtime's all-to-all-v, ring steps and output return; each received element is checked against
// an oracle written from the definitions (mask.get, partition tables), and slabs that no query
// needs must stay poisoned (they were never sent), unless they stay on their rank.
#include "sp/routing.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "dbsp/communicator.hpp"
#include "dbsp/partition.hpp"
#include "mpi_test_support.hpp"
#include "sp/phases.hpp"

namespace dbsp {
namespace {

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

float code(int which, int64_t token, int head, int dim) {
  return static_cast<float>(which * (1 << 20) + token * 128 + head * 8 + dim);
}

std::vector<float> coded_shard(int which, int64_t first, int64_t end, int heads, int head_dim) {
  std::vector<float> out;
  for (int64_t t = first; t < end; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int d = 0; d < head_dim; ++d) out.push_back(code(which, t, h, d));
    }
  }
  return out;
}

struct Case {
  int heads;
  int head_dim;
  MaskGeometry geometry;
};

class RoutingCheck {
 public:
  RoutingCheck(const Case& c, const BlockMask& mask, const Partition& partition, bool mask_aware,
               GridCommunicators& grid_comms)
      : c_(c), mask_(mask), partition_(partition), aware_(mask_aware), grid_comms_(grid_comms) {}

  void run() {
    Communicator& world = test::world();
    const int me = world.rank();
    const Grid grid = partition_.grid;
    const BlockLayout q_layout = BlockLayout::uniform(c_.geometry.seq_q, c_.geometry.block_q);
    const BlockLayout k_layout = BlockLayout::uniform(c_.geometry.seq_k, c_.geometry.block_k);
    const sp::LayerRouting route =
        sp::build_routing(mask_, partition_, q_layout, k_layout, me, aware_);
    const int g = ulysses_rank_of(me, grid), r = ring_rank_of(me, grid);
    ASSERT_EQ(route.heads, partition_.heads_of(g));
    ASSERT_EQ(route.q_blocks, partition_.q_blocks_of(g, r));
    ASSERT_EQ(route.k_blocks, partition_.k_blocks_of(g, r));
    const int D = c_.head_dim, H = c_.heads, Hg = static_cast<int>(route.heads.size());
    const SequenceShard qs = sequence_shard(q_layout, me, world.size());
    const SequenceShard ks = sequence_shard(k_layout, me, world.size());
    const auto q = coded_shard(0, qs.first_token, qs.end_token, H, D);
    const auto k = coded_shard(1, ks.first_token, ks.end_token, H, D);
    const auto v = coded_shard(2, ks.first_token, ks.end_token, H, D);

    // (a) inputs.
    std::vector<float> q_local(route.q_local.tokens() * Hg * D, kPoison);
    std::vector<float> k_local(route.k_local.tokens() * Hg * D, kPoison), v_local(k_local);
    sp::Staging staging;
    sp::start_input_exchange(world, route, H, D, q.data(), k.data(), v.data(), q_local.data(),
                             k_local.data(), v_local.data(), staging)
        .finish();
    for (size_t n = 0; n < route.q_blocks.size(); ++n) {
      const int i = route.q_blocks[n];
      for (int hl = 0; hl < Hg; ++hl) {
        const int h = route.heads[hl];
        // A slab that stays on its rank is kept whatever the mask says (no transfer to save);
        // rows of a shared head that the other group computes never come.
        const bool local = home_shard(i, mask_.q_blocks(), world.size()) == me;
        const bool needed =
            partition_.rows_of(g, h).contains(i) && (!aware_ || local || mask_.row_kept(h, i) > 0);
        for (int64_t x = 0; x < q_layout.size(i); ++x) {
          check_row(q_local, (route.q_local.start[n] + x) * Hg + hl, needed, 0,
                    q_layout.start[i] + x, h, "Q in");
        }
      }
    }
    for (size_t n = 0; n < route.k_blocks.size(); ++n) {
      const int j = route.k_blocks[n];
      for (int hl = 0; hl < Hg; ++hl) {
        const int h = route.heads[hl];
        const bool local = home_shard(j, mask_.k_blocks(), world.size()) == me;
        const bool needed = !aware_ || local || column_needed(h, j, all_q_blocks());
        for (int64_t x = 0; x < k_layout.size(j); ++x) {
          const int64_t row = (route.k_local.start[n] + x) * Hg + hl;
          check_row(k_local, row, needed, 1, k_layout.start[j] + x, h, "K in");
          check_row(v_local, row, needed, 2, k_layout.start[j] + x, h, "V in");
        }
      }
    }

    // (b) ring steps: at step t ring rank r holds the shard of ring rank (r + t) mod R.
    ASSERT_EQ(static_cast<int>(route.steps.size()), grid.ring);
    EXPECT_EQ(route.steps[0].origin, r);
    EXPECT_EQ(route.steps[0].key_blocks, route.k_blocks);
    for (int t = 1; t < grid.ring; ++t) {
      const sp::RingStep& step = route.steps[t];
      const int origin = (r + t) % grid.ring;
      ASSERT_EQ(step.origin, origin);
      std::vector<int> expected_blocks;
      for (int j : partition_.k_blocks_of(g, origin)) {
        bool needed = !aware_;
        for (int h : route.heads) needed = needed || column_needed(h, j, route.q_blocks);
        if (needed) expected_blocks.push_back(j);
      }
      ASSERT_EQ(step.key_blocks, expected_blocks) << "step " << t;
      std::vector<float> step_k(step.key_layout.tokens() * Hg * D, kPoison), step_v(step_k);
      sp::start_ring_exchange(*grid_comms_.ring, route, t, D, k_local.data(), v_local.data(),
                              step_k.data(), step_v.data(), staging)
          .finish();
      for (size_t n = 0; n < step.key_blocks.size(); ++n) {
        const int j = step.key_blocks[n];
        for (int hl = 0; hl < Hg; ++hl) {
          const int h = route.heads[hl];
          const bool needed = !aware_ || column_needed(h, j, route.q_blocks);
          for (int64_t x = 0; x < k_layout.size(j); ++x) {
            const int64_t row = (step.key_layout.start[n] + x) * Hg + hl;
            check_row(step_k, row, needed, 1, k_layout.start[j] + x, h, "K ring");
            check_row(step_v, row, needed, 2, k_layout.start[j] + x, h, "V ring");
          }
        }
      }
    }

    // (c) output return: send the local Q back as if it were O.
    std::vector<float> out(q.size(), kPoison);
    sp::start_output_exchange(world, route, H, D, q_local.data(), out.data(), staging).finish();
    for (int i = qs.first_block; i < qs.end_block; ++i) {
      for (int h = 0; h < H; ++h) {
        const int holder_group = group_of(h, i);
        const int holder = grid_rank(holder_group, partition_.q_shard[holder_group][i], grid);
        const bool needed = !aware_ || holder == me || mask_.row_kept(h, i) > 0;
        for (int64_t x = 0; x < q_layout.size(i); ++x) {
          const int64_t token = q_layout.start[i] + x;
          check_row(out, (token - qs.first_token) * H + h, needed, 0, token, h, "O out");
        }
      }
    }
  }

 private:
  std::vector<int> all_q_blocks() const {
    std::vector<int> all(static_cast<size_t>(mask_.q_blocks()));
    for (int i = 0; i < mask_.q_blocks(); ++i) all[i] = i;
    return all;
  }
  // The group that computes query block i of head h.
  int group_of(int h, int i) const {
    for (int g = 0; g < partition_.grid.ulysses; ++g) {
      if (partition_.rows_of(g, h).contains(i)) return g;
    }
    return -1;
  }
  bool column_needed(int h, int j, const std::vector<int>& q_blocks) const {
    for (int i : q_blocks) {
      if (mask_.get(h, i, j)) return true;
    }
    return false;
  }
  void check_row(const std::vector<float>& tensor, int64_t row, bool needed, int which,
                 int64_t token, int head, const char* what) {
    for (int d = 0; d < c_.head_dim; ++d) {
      const float got = tensor[row * c_.head_dim + d];
      if (needed) {
        ASSERT_EQ(got, code(which, token, head, d))
            << what << " token " << token << " head " << head << " dim " << d;
      } else {
        ASSERT_TRUE(std::isnan(got)) << what << ": slab token " << token << " head " << head
                                     << " was sent although no query needs it";
      }
    }
  }

  const Case& c_;
  const BlockMask& mask_;
  const Partition& partition_;
  bool aware_;
  GridCommunicators& grid_comms_;
};

void check_all(const Case& c, uint64_t seed) {
  Communicator& world = test::world();
  const BlockMask masks[] = {
      test::make_mask(test::MaskKind::random, c.heads, c.geometry, 0.3, seed),
      test::make_mask(test::MaskKind::empty, c.heads, c.geometry, 0, seed),
      test::make_mask(test::MaskKind::full, c.heads, c.geometry, 1, seed)};
  for (Grid grid : factorizations(world.size())) {
    GridCommunicators grid_comms = GridCommunicators::build(world, grid);
    const Partition partitions[] = {
        Partition::contiguous(grid, c.heads, c.geometry.q_blocks(), c.geometry.k_blocks()),
        test::random_partition(grid, c.heads, c.geometry.q_blocks(), c.geometry.k_blocks(),
                               seed + 17)};
    for (const Partition& partition : partitions) {
      for (const BlockMask& mask : masks) {
        for (bool aware : {true, false}) {
          SCOPED_TRACE(grid.name() + (aware ? " mask-aware" : " send-all") + " density " +
                       std::to_string(mask.density()));
          RoutingCheck(c, mask, partition, aware, grid_comms).run();
          if (testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(SpRouting, EveryElementReachesItsRankWithFiveHeadsAndAShortLastBlock) {
  check_all({5, 3, MaskGeometry{300, 300, 16, 16}}, 1);
}

TEST(SpRouting, EveryElementReachesItsRankWithMoreHeadsThanRanks) {
  check_all({11, 2, MaskGeometry{150, 150, 16, 16}}, 2);
}

TEST(SpRouting, EveryElementReachesItsRankWhenQueryAndKeyBlocksDiffer) {
  check_all({3, 2, MaskGeometry{200, 170, 32, 16}}, 3);
}

}  // namespace
}  // namespace dbsp

namespace dbsp {
namespace {

TEST(SpRouting, LocalStepMaskEqualsTheSliceOfTheMask) {
  const MaskGeometry geometry{1000, 900, 64, 32};
  const BlockMask mask = test::make_mask(test::MaskKind::random, 7, geometry, 0.4, 12);
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> heads, q_blocks, key_blocks;
    for (int h = 0; h < mask.heads(); ++h) {
      if (rng() % 2) heads.push_back(h);
    }
    for (int i = 0; i < mask.q_blocks(); ++i) {
      if (rng() % 3) q_blocks.push_back(i);
    }
    for (int j = 0; j < mask.k_blocks(); ++j) {
      if (rng() % 2) key_blocks.push_back(j);
    }
    const BlockCsr expected = mask.slice(heads, q_blocks, key_blocks).to_csr();
    const BlockCsr got = sp::local_block_csr(mask, heads, q_blocks, key_blocks);
    ASSERT_EQ(got.heads, expected.heads);
    ASSERT_EQ(got.q_blocks, expected.q_blocks);
    ASSERT_EQ(got.k_blocks, expected.k_blocks);
    ASSERT_EQ(got.kv_count, expected.kv_count) << "trial " << trial;
    ASSERT_EQ(got.row_offset, expected.row_offset) << "trial " << trial;
    ASSERT_EQ(got.kv_index, expected.kv_index) << "trial " << trial;
  }
}

}  // namespace
}  // namespace dbsp
