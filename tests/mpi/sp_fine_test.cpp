// Fine (FG-Attn, M x 1) masks in the sequence-parallel runtime, under mpirun: each ring step's
// local fine mask equals a brute-force renumbering; every grid, partition and strategy equals the
// fp64 fine reference on odd shapes (H = 5 and 3, short last blocks, empty rows, one-key rows,
// random masks not derived from blocks); data movement is exactly the covering block mask's; a
// fully kept mask gives the block-mask run's output; the plan-hash check sees the keys; every
// step's local mask at once and a schedule built into a kept one equal what they replace.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <utility>

#include "dbsp/error.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/imbalance.hpp"
#include "dbsp/sp_attention.hpp"
#include "dbsp/sp_reference.hpp"
#include "mpi_test_support.hpp"
#include "sp/local_fine_mask.hpp"
#include "sp/schedule.hpp"

namespace dbsp {
namespace {

constexpr uint64_t kSeed = 4242;

SpProblem make_problem(int heads, int head_dim, MaskGeometry geometry) {
  SpProblem problem;
  problem.heads = heads;
  problem.head_dim = head_dim;
  problem.geometry = geometry;
  return problem;
}

// fp32 against the fp64 reference, norm-wise (as dbsp run --check on cpu): relative L2 error and
// the largest error over the largest reference element, both <= 1e-4; NaN fails.
void expect_close(const std::vector<float>& out, const std::vector<double>& reference,
                  const std::string& what) {
  ASSERT_EQ(out.size(), reference.size()) << what;
  double error_sq = 0, reference_sq = 0, max_error = 0, max_reference = 0;
  size_t worst = 0;
  for (size_t e = 0; e < out.size(); ++e) {
    const double error = std::abs(out[e] - reference[e]);
    if (!(error <= max_error)) {  // NaN counts as the worst
      max_error = std::isnan(error) ? std::numeric_limits<double>::infinity() : error;
      worst = e;
    }
    error_sq += error * error;
    reference_sq += reference[e] * reference[e];
    max_reference = std::max(max_reference, std::abs(reference[e]));
  }
  if (out.empty()) return;
  const double relative_l2 = reference_sq > 0 ? std::sqrt(error_sq / reference_sq) : error_sq;
  const double relative_max = max_reference > 0 ? max_error / max_reference : max_error;
  EXPECT_LE(relative_l2, 1e-4) << what;
  EXPECT_LE(relative_max, 1e-4) << what << ": element " << worst << " is " << out[worst]
                                << ", reference " << reference[worst];
}

// This rank's seeded input shard and the fp64 fine reference of its output rows.
struct RankData {
  SequenceShard shard;
  std::vector<float> q, k, v;
  std::vector<double> reference;

  RankData(const SpProblem& problem, const FineMask& mask) {
    Communicator& world = test::world();
    shard = sequence_shard(problem.q_layout(), world.rank(), world.size());
    const SequenceShard k_shard = sequence_shard(problem.k_layout(), world.rank(), world.size());
    const int H = problem.heads, D = problem.head_dim;
    q = seeded_tensor(kSeed, 0, shard.first_token, shard.end_token, H, D);
    k = seeded_tensor(kSeed, 1, k_shard.first_token, k_shard.end_token, H, D);
    v = seeded_tensor(kSeed, 2, k_shard.first_token, k_shard.end_token, H, D);
    reference = reference_rows(problem, mask, kSeed, shard.first_block, shard.end_block);
  }
};

TEST(LocalFineMask, EqualsTheBruteForceRenumberingOfEachRowsKeys) {
  const MaskGeometry geometry{7 * 32 + 9, 11 * 16 + 5, 32, 16};  // short last blocks
  const FineMask mask = test::random_fine_mask(5, geometry, 0.3, 17);
  const BlockLayout k_layout = BlockLayout::uniform(geometry.seq_k, geometry.block_k);
  std::mt19937 rng(5);
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<int> heads, q_blocks, key_blocks;
    for (int h = 0; h < mask.heads(); ++h) {
      if (rng() % 2) heads.push_back(h);
    }
    for (int i = 0; i < mask.q_blocks(); ++i) {
      if (rng() % 3) q_blocks.push_back(i);
    }
    for (int j = 0; j < geometry.k_blocks(); ++j) {
      if (trial == 0 || rng() % 2) key_blocks.push_back(j);  // trial 0: every block
    }
    const BlockLayout key_layout = BlockLayout::gather(k_layout, key_blocks);
    const sp::LocalFineMask got =
        sp::local_fine_mask(mask, heads, q_blocks, key_blocks, key_layout);
    ASSERT_EQ(got.mask.heads(), static_cast<int>(heads.size()));
    ASSERT_EQ(got.mask.q_blocks(), static_cast<int>(q_blocks.size()));
    EXPECT_EQ(got.mask.geometry().seq_k, key_layout.tokens());
    int64_t blocks = 0;
    for (size_t hl = 0; hl < heads.size(); ++hl) {
      for (size_t il = 0; il < q_blocks.size(); ++il) {
        std::vector<int32_t> expected;
        std::set<int> covered;
        for (int32_t key : mask.keys(heads[hl], q_blocks[il])) {
          for (size_t n = 0; n < key_blocks.size(); ++n) {
            if (key_blocks[n] != key / geometry.block_k) continue;
            expected.push_back(static_cast<int32_t>(key_layout.start[n] + key -
                                                    int64_t{key_blocks[n]} * geometry.block_k));
            covered.insert(key_blocks[n]);
          }
        }
        std::sort(expected.begin(), expected.end());
        blocks += static_cast<int64_t>(covered.size());
        const std::span<const int32_t> row =
            got.mask.keys(static_cast<int>(hl), static_cast<int>(il));
        ASSERT_EQ(std::vector<int32_t>(row.begin(), row.end()), expected)
            << "trial " << trial << " row (" << heads[hl] << ", " << q_blocks[il] << ")";
      }
    }
    EXPECT_EQ(got.blocks, blocks) << "trial " << trial;
  }
  // No key block in the step: every row empty. Bad lists and layouts are rejected.
  const std::vector<int> none;
  EXPECT_EQ(sp::local_fine_mask(mask, {0, 1}, {0}, none, BlockLayout{}).mask.kept(), 0);
  EXPECT_THROW(sp::local_fine_mask(mask, {0}, {0}, {3, 2}, BlockLayout::gather(k_layout, {3, 2})),
               Error);
  EXPECT_THROW(sp::local_fine_mask(mask, {0}, {0}, {1, 2}, BlockLayout::gather(k_layout, {1})),
               Error);
  EXPECT_THROW(sp::local_fine_mask(mask, {0}, {0}, {1, 11}, BlockLayout::gather(k_layout, {1, 2})),
               Error);  // block 11 is short, the layout says 16 keys
  EXPECT_THROW(sp::local_fine_mask(mask, {5}, {0}, none, BlockLayout{}), Error);
  EXPECT_THROW(sp::local_fine_mask(mask, {0}, {8}, none, BlockLayout{}), Error);
}

// Every step at once (local_fine_masks, as the schedule builds them) equals a call per step, with
// or without the memory of older masks to reuse; the local covering blocks handed over equal the
// ones the public constructor finds in the keys.
TEST(LocalFineMasks, EqualACallPerStepAndReuseTheMemoryTheyAreGiven) {
  const MaskGeometry geometry{9 * 32 + 9, 97 * 16 + 5, 32, 16};  // short last blocks
  const BlockLayout k_layout = BlockLayout::uniform(geometry.seq_k, geometry.block_k);
  std::mt19937 rng(9);
  std::vector<detail::FineMaskLists> storage;
  for (int trial = 0; trial < 30; ++trial) {
    // Odd trials: keys of every block count (random masks); even: thinned blocks.
    const FineMask mask =
        trial % 2 ? test::random_fine_mask(4, geometry, 0.2 + 0.02 * trial, 100 + trial)
                  : thin_blocks(test::make_mask(test::MaskKind::random, 4, geometry, 0.4, trial),
                                0.3, trial);
    std::vector<int> heads, q_blocks;
    for (int h = 0; h < mask.heads(); ++h) {
      if (rng() % 3) heads.push_back(h);
    }
    for (int i = 0; i < mask.q_blocks(); ++i) {
      if (rng() % 4) q_blocks.push_back(i);
    }
    // 1 to 4 steps; a key block goes to one step or (1 in 5) to none; runs of a step's blocks.
    const int steps_count = 1 + static_cast<int>(rng() % 4);
    std::vector<sp::RingStep> steps(static_cast<size_t>(steps_count));
    int step = 0;
    for (int j = 0; j < geometry.k_blocks(); ++j) {
      if (rng() % 3 == 0) step = static_cast<int>(rng() % steps_count);
      if (rng() % 5) steps[step].key_blocks.push_back(j);
    }
    for (sp::RingStep& s : steps) s.key_layout = BlockLayout::gather(k_layout, s.key_blocks);
    const bool reuse = trial % 3 != 0;
    const std::vector<sp::LocalFineMask> got =
        sp::local_fine_masks(mask, heads, q_blocks, steps, reuse ? &storage : nullptr);
    if (reuse) {
      EXPECT_TRUE(storage.empty());
    }
    ASSERT_EQ(got.size(), steps.size());
    for (size_t s = 0; s < steps.size(); ++s) {
      const sp::LocalFineMask expected =
          sp::local_fine_mask(mask, heads, q_blocks, steps[s].key_blocks, steps[s].key_layout);
      EXPECT_EQ(got[s].mask, expected.mask) << "trial " << trial << " step " << s;
      EXPECT_EQ(got[s].blocks, expected.blocks) << "trial " << trial << " step " << s;
      EXPECT_EQ(got[s].blocks, got[s].mask.covering_blocks().kept());
      const FineMask checked(expected.mask.heads(), expected.mask.geometry(),
                             expected.mask.row_offset(), expected.mask.key_index());
      EXPECT_EQ(checked, expected.mask) << "trial " << trial << " step " << s;
    }
    // The next trial reuses these masks' memory (of other sizes).
    for (const sp::LocalFineMask& local : got) {
      FineMask copy = local.mask;
      storage.push_back(detail::FineMaskParts::release(std::move(copy)));
      EXPECT_EQ(copy.kept(), 0);
    }
  }
  // A key block in two steps is refused.
  const FineMask mask = test::random_fine_mask(2, geometry, 0.3, 1);
  std::vector<sp::RingStep> twice(2);
  twice[0].key_blocks = {1, 2};
  twice[1].key_blocks = {2, 3};
  for (sp::RingStep& s : twice) s.key_layout = BlockLayout::gather(k_layout, s.key_blocks);
  EXPECT_THROW(sp::local_fine_masks(mask, {0, 1}, {0, 1}, twice), Error);
}

// A schedule built into a kept one (SpExecutor's slots: the step masks reuse the old ones'
// memory) equals one built from scratch, whatever the kept one held.
TEST(FineSchedule, BuiltIntoAKeptScheduleEqualsAFreshOne) {
  const MaskGeometry geometry{40 * 16 + 3, 40 * 16 + 3, 16, 16};
  const SpProblem problem = make_problem(6, 8, geometry);
  const int q_blocks = geometry.q_blocks(), k_blocks = geometry.k_blocks();
  sp::LayerSchedule kept;
  int calls = 0;
  for (const Grid grid : {Grid{1, 4}, Grid{2, 2}, Grid{4, 1}, Grid{1, 8}, Grid{2, 4}}) {
    for (const double density : {0.1, 0.5}) {
      const FineMask mask = test::random_fine_mask(6, geometry, density, 7 + calls);
      const Partition partition = Partition::contiguous(grid, 6, q_blocks, k_blocks);
      for (const int rank : {0, grid.ranks() - 1}) {
        const sp::LayerSchedule fresh =
            sp::build_fine_schedule(mask, partition, problem, rank, /*mask_aware=*/true);
        sp::build_fine_schedule(kept, mask, partition, problem, rank, /*mask_aware=*/true);
        EXPECT_EQ(kept.fine_step_masks, fresh.fine_step_masks) << grid.name() << " rank " << rank;
        EXPECT_EQ(kept.step_kept, fresh.step_kept) << grid.name() << " rank " << rank;
        EXPECT_EQ(kept.computing_steps, fresh.computing_steps);
        EXPECT_EQ(kept.route.q_blocks, fresh.route.q_blocks);
        EXPECT_TRUE(kept.spare_fine_lists.empty());
        ++calls;
      }
    }
  }
  kept.recycle();
  EXPECT_FALSE(kept.fine());
  EXPECT_TRUE(kept.route.steps.empty());
}

// The fine masks of a problem: thinned random blocks (F = 0.3), random keys, empty, full.
std::vector<std::pair<std::string, FineMask>> fine_masks(const SpProblem& problem) {
  const BlockMask blocks =
      test::make_mask(test::MaskKind::random, problem.heads, problem.geometry, 0.35, kSeed);
  return {
      {"thinned 0.3", thin_blocks(blocks, 0.3, kSeed)},
      {"random keys", test::random_fine_mask(problem.heads, problem.geometry, 0.15, kSeed + 1)},
      {"empty", FineMask::from_block(BlockMask(problem.heads, problem.geometry))},
      {"full", thin_blocks(BlockMask(problem.heads, problem.geometry, true), 1.0, kSeed)},
  };
}

void check_every_grid(const SpProblem& problem) {
  Communicator& world = test::world();
  SpExecutor executor(world);
  const int nq = problem.geometry.q_blocks(), nk = problem.geometry.k_blocks();
  for (const auto& [name, mask] : fine_masks(problem)) {
    const RankData data(problem, mask);
    for (Grid grid : factorizations(world.size())) {
      for (bool permuted : {false, true}) {
        const Partition partition =
            permuted ? test::random_partition(grid, problem.heads, nq, nk, kSeed + grid.ring)
                     : Partition::contiguous(grid, problem.heads, nq, nk);
        std::vector<float> out = test::poisoned(data.q.size());
        executor.run(problem, mask, partition, data.q.data(), data.k.data(), data.v.data(),
                     out.data());
        expect_close(out, data.reference,
                     name + ", " + grid.name() + (permuted ? " permuted" : " contiguous"));
      }
    }
  }
}

TEST(SpExecutorFine, EveryGridAndPartitionMatchesTheFineReferenceWithFiveHeads) {
  check_every_grid(make_problem(5, 8, MaskGeometry{1000, 1000, 64, 64}));
}

TEST(SpExecutorFine, EveryGridAndPartitionMatchesTheFineReferenceWithThreeHeads) {
  // Query and key blocks of different sizes, short last blocks of both.
  check_every_grid(make_problem(3, 4, MaskGeometry{333, 333, 32, 16}));
}

// A fine mask moves exactly what its covering block mask moves, computes on the same steps and
// counts the same blocks; the output differs (fewer keys) and matches its own reference.
TEST(SpExecutorFine, MovesAndComputesExactlyWhatTheCoveringBlockMaskDoes) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, MaskGeometry{1000, 1000, 64, 64});
  const FineMask fine = test::random_fine_mask(5, problem.geometry, 0.01, 99);
  const BlockMask covering = fine.covering_blocks();
  const RankData data(problem, fine);
  for (bool mask_aware : {true, false}) {
    SpExecutor executor(world, {.mask_aware = mask_aware});
    for (Grid grid : factorizations(world.size())) {
      const Partition partition = test::random_partition(grid, 5, 16, 16, 7);
      std::vector<float> out = test::poisoned(data.q.size()),
                         block_out = test::poisoned(data.q.size());
      const SpTelemetry f = executor.run(problem, fine, partition, data.q.data(), data.k.data(),
                                         data.v.data(), out.data());
      const SpTelemetry b = executor.run(problem, covering, partition, data.q.data(), data.k.data(),
                                         data.v.data(), block_out.data());
      const std::string what = grid.name() + (mask_aware ? " mask-aware" : " send-all");
      EXPECT_EQ(f.bytes_sent, b.bytes_sent) << what;
      EXPECT_EQ(f.bytes_received, b.bytes_received) << what;
      EXPECT_EQ(f.bytes_saved, b.bytes_saved) << what;
      EXPECT_EQ(f.ring_steps_computed, b.ring_steps_computed) << what;
      EXPECT_EQ(f.ring_steps_skipped, b.ring_steps_skipped) << what;
      EXPECT_EQ(f.kept_blocks, b.kept_blocks) << what;
      expect_close(out, data.reference, what);
    }
  }
}

// The emulator's fine run charges exactly the bytes the real ranks' fine run sends (those of the
// covering block mask), times a kernel exactly where a real rank launched one, and adds up.
TEST(SpEmulatorFine, ChargesExactlyTheBytesThatTheRealRanksSend) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, MaskGeometry{1000, 1000, 64, 64});
  const BlockMask blocks = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.25, 3);
  const std::pair<std::string, FineMask> masks[] = {
      {"thinned 0.3", thin_blocks(blocks, 0.3, kSeed)},
      {"sparse random keys", test::random_fine_mask(5, problem.geometry, 0.01, 99)}};
  for (const auto& [name, fine] : masks) {
    const RankData data(problem, fine);
    for (bool mask_aware : {true, false}) {
      SpExecutor executor(world, {.mask_aware = mask_aware});
      // Whole layers: their all-to-all is charged from bytes alone, the same for both masks.
      SpEmulator emulator(world.size(), EmulationDevice::cpu, LinkModel{100.0, 10.0},
                          {.mask_aware = mask_aware, .head_chunks = 1});
      for (Grid grid : factorizations(world.size())) {
        const std::string what =
            name + ", " + grid.name() + (mask_aware ? " mask-aware" : " send-all");
        const Partition partition = test::random_partition(grid, 5, 16, 16, 21);
        std::vector<float> out = test::poisoned(data.q.size());
        const SpTelemetry t = executor.run(problem, fine, partition, data.q.data(), data.k.data(),
                                           data.v.data(), out.data());
        expect_close(out, data.reference, what);
        const std::vector<int64_t> sent = world.all_gather(t.bytes_sent);
        const std::vector<int64_t> saved = world.all_gather(t.bytes_saved);
        const std::vector<int> steps = world.all_gather(t.ring_steps_computed);
        const EmulatedLayer e = emulator.run(problem, fine, partition);
        const EmulatedLayer covering = emulator.run(problem, fine.covering_blocks(), partition);
        int64_t total_sent = 0, total_saved = 0;
        for (int p = 0; p < world.size(); ++p) {
          total_sent += sent[p];
          total_saved += saved[p];
          // A virtual rank times a kernel exactly where the real rank launched one.
          EXPECT_EQ(e.rank_compute_ms[p] > 0, steps[p] > 0) << what << " rank " << p;
          EXPECT_EQ(e.rank_compute_ms[p] > 0, covering.rank_compute_ms[p] > 0)
              << what << " rank " << p;
        }
        EXPECT_EQ(e.bytes_moved, total_sent) << what;
        EXPECT_EQ(e.bytes_saved, total_saved) << what;
        EXPECT_EQ(e.bytes_moved, covering.bytes_moved) << what;
        EXPECT_EQ(e.bytes_saved, covering.bytes_saved) << what;
        EXPECT_EQ(e.all_to_all_ms, covering.all_to_all_ms) << what;
        EXPECT_EQ(e.grid, grid) << what;
        EXPECT_GE(e.ring_ratio, e.measured_ratio - 1e-9) << what;
        EXPECT_GE(e.measured_ratio, 1.0 - 1e-9) << what;
        EXPECT_GT(e.setup_ms, 0.0) << what;  // every virtual rank builds its fine schedule, timed
        EXPECT_NEAR(e.total_ms, e.setup_ms + e.all_to_all_ms + e.ring_ms, 1e-9) << what;
      }
    }
  }
  // Keys are tokens: a fine mask of another geometry is refused, as by the real ranks.
  const FineMask other = thin_blocks(
      test::make_mask(test::MaskKind::random, 5, MaskGeometry{1000, 1000, 32, 64}, 0.25, 3), 0.3,
      kSeed);
  SpEmulator emulator(world.size(), EmulationDevice::cpu);
  EXPECT_THROW(
      emulator.run(problem, other, Partition::contiguous(Grid{1, world.size()}, 5, 16, 16)), Error);
}

// F = 1: the fine mask of every key of every kept block gives the block-mask run's output.
TEST(SpExecutorFine, FullyKeptBlocksGiveTheBlockMaskRunsOutput) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, MaskGeometry{1000, 1000, 64, 64});
  const BlockMask blocks = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 8);
  const FineMask fine = thin_blocks(blocks, 1.0, 1);
  const RankData data(problem, fine);
  SpExecutor executor(world);
  for (Grid grid : factorizations(world.size())) {
    const Partition partition = test::random_partition(grid, 5, 16, 16, 11);
    std::vector<float> out = test::poisoned(data.q.size()),
                       block_out = test::poisoned(data.q.size());
    executor.run(problem, fine, partition, data.q.data(), data.k.data(), data.v.data(), out.data());
    executor.run(problem, blocks, partition, data.q.data(), data.k.data(), data.v.data(),
                 block_out.data());
    std::vector<double> block_as_reference(block_out.begin(), block_out.end());
    expect_close(out, block_as_reference, grid.name() + " fine vs block");
    expect_close(out, data.reference, grid.name() + " fine vs reference");
  }
}

TEST(SpExecutorFine, RejectsAFineMaskOfAnotherGeometry) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(3, 4, MaskGeometry{333, 333, 32, 16});
  SpProblem other = problem;
  other.geometry.seq_k = 330;  // same block counts, other keys
  const FineMask mask = test::random_fine_mask(3, other.geometry, 0.1, 3);
  const RankData data(other, mask);
  SpExecutor executor(world);
  std::vector<float> out(data.q.size());
  const Grid grid{world.size(), 1};
  EXPECT_THROW(executor.run(problem, mask, Partition::contiguous(grid, 3, 11, 21), data.q.data(),
                            data.k.data(), data.v.data(), out.data()),
               Error);
}

TEST(SpAttentionFine, EveryStrategyMatchesTheFineReferenceAcrossLayersAndSteps) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, MaskGeometry{1000, 1000, 64, 64});
  std::vector<std::string> names = {"ulysses", "ring", "usp", "dbsp", "dbsp-paper"};
  const std::vector<Grid> grids = factorizations(world.size());
  const Grid mixed = grids[grids.size() / 2];
  const std::string grid_text = std::to_string(mixed.ulysses) + "x" + std::to_string(mixed.ring);
  for (const char* policy : {"usp:", "dbsp:", "dbsp-paper:"}) names.push_back(policy + grid_text);
  // (step, layer) masks: thinned blocks and random keys, each with its reference.
  std::vector<FineMask> masks;
  std::vector<RankData> inputs;
  for (int step = 0; step < 2; ++step) {
    for (int layer = 0; layer < 2; ++layer) {
      const uint64_t seed = 100 * step + layer;
      if (layer == 0) {
        const BlockMask blocks =
            test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, seed);
        masks.push_back(thin_blocks(blocks, 0.3, seed));
      } else {
        masks.push_back(test::random_fine_mask(5, problem.geometry, 0.1, seed));
      }
      inputs.emplace_back(problem, masks.back());
    }
  }
  for (const std::string& name : names) {
    const Strategy strategy = parse_strategy(name, world.size());
    SpAttention attention(world, strategy, /*layers=*/2);
    for (int step = 0; step < 2; ++step) {
      for (int layer = 0; layer < 2; ++layer) {
        const FineMask& mask = masks[2 * step + layer];
        const RankData& data = inputs[2 * step + layer];
        std::vector<float> out = test::poisoned(data.q.size());
        const SpLayerReport report = attention.forward(layer, problem, mask, data.q.data(),
                                                       data.k.data(), data.v.data(), out.data());
        const std::string what =
            name + " step " + std::to_string(step) + " layer " + std::to_string(layer);
        expect_close(out, data.reference, what);
        EXPECT_GE(report.predicted_ratio, 1.0 - 1e-9) << what;
        if (strategy.policy == Policy::static_split && strategy.grid) {
          // A static plan is the contiguous split: rho_s of the fine mask's slices under it. On
          // grids without a ring its groups hold their heads in the pipeline order of the mask
          // it was planned on (step 0's: static plans are kept).
          Partition contiguous = Partition::contiguous(*strategy.grid, 5, 16, 16);
          if (strategy.grid->ulysses > 1 && strategy.grid->ring == 1) {
            contiguous.head_order =
                pipeline_head_order(contiguous, masks[layer].covering_blocks().kept_per_head());
          }
          EXPECT_DOUBLE_EQ(report.predicted_ratio, imbalance_ratio(mask, contiguous)) << what;
          EXPECT_EQ(report.plan_hash, contiguous.hash()) << what;
        }
      }
    }
  }
}

// The schedule is kept while the fine mask stays the same, and a block mask of the same layer
// never reuses a fine schedule.
TEST(SpAttentionFine, ReusesTheScheduleForTheSameFineMaskOnly) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, MaskGeometry{1000, 1000, 64, 64});
  const BlockMask blocks = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 21);
  const FineMask fine = thin_blocks(blocks, 0.5, 21);
  const FineMask other = thin_blocks(blocks, 0.5, 22);  // same covering blocks, other keys
  const RankData fine_data(problem, fine), other_data(problem, other);
  SpAttention attention(world, parse_strategy("ulysses", world.size()), /*layers=*/1);
  auto call = [&](const FineMask& mask, const RankData& data) {
    std::vector<float> out = test::poisoned(data.q.size());
    const SpLayerReport report = attention.forward(0, problem, mask, data.q.data(), data.k.data(),
                                                   data.v.data(), out.data());
    expect_close(out, data.reference, "reuse");
    return report.telemetry.schedule_reused;
  };
  EXPECT_FALSE(call(fine, fine_data));
  EXPECT_TRUE(call(fine, fine_data));
  EXPECT_FALSE(call(other, other_data));
  std::vector<float> out = test::poisoned(fine_data.q.size());
  const SpLayerReport block = attention.forward(0, problem, blocks, fine_data.q.data(),
                                                fine_data.k.data(), fine_data.v.data(), out.data());
  EXPECT_FALSE(block.telemetry.schedule_reused);
  EXPECT_FALSE(call(other, other_data));
}

// plan_ahead with fine masks: the hash, plan, rho_s and fine schedule built on a background thread
// give the same plans, reuse decisions, predicted ratios and outputs, bit for bit, as the same
// work done in the call; work prepared for another kind of mask is dropped.
TEST(SpAttentionFine, PlanAheadGivesTheSameOutputsPlansAndRatiosAsPlanningInTheCall) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, MaskGeometry{1000, 1000, 64, 64});
  constexpr int kLayers = 3, kSteps = 2;
  std::vector<FineMask> masks;
  std::vector<RankData> inputs;
  for (int call = 0; call < kLayers * kSteps; ++call) {
    // Step 1 repeats layer 0's mask (plan and schedule kept) and changes the others.
    const uint64_t seed = call == kLayers ? 700 : 700 + static_cast<uint64_t>(call);
    if (call % 2 == 0) {
      masks.push_back(thin_blocks(
          test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, seed), 0.3, seed));
    } else {
      masks.push_back(test::random_fine_mask(5, problem.geometry, 0.1, seed));
    }
    inputs.emplace_back(problem, masks.back());
  }
  test::expect_plan_ahead_equals_planning_in_the_call(
      world, problem, kLayers, masks, inputs, expect_close,
      [&](const std::string& name, SpAttention& ahead) {
        // Prepared for the fine mask, run with its covering blocks (and the reverse): dropped, then
        // planned in the call.
        const FineMask& fine = masks[1];
        const BlockMask& covering = fine.covering_blocks();
        const RankData covering_data(problem, FineMask::from_block(covering));
        ahead.plan_ahead(1, problem, fine);
        std::vector<float> out = test::poisoned(covering_data.q.size());
        SpLayerReport report =
            ahead.forward(1, problem, covering, covering_data.q.data(), covering_data.k.data(),
                          covering_data.v.data(), out.data());
        EXPECT_FALSE(report.planned_ahead) << name;
        expect_close(out, covering_data.reference, std::string(name) + " block after fine ahead");
        ahead.plan_ahead(1, problem, covering);
        out = test::poisoned(inputs[1].q.size());
        report = ahead.forward(1, problem, fine, inputs[1].q.data(), inputs[1].k.data(),
                               inputs[1].v.data(), out.data());
        EXPECT_FALSE(report.planned_ahead) << name;
        expect_close(out, inputs[1].reference, std::string(name) + " fine after block ahead");
      });
}

TEST(SpAttentionFine, RanksWithDifferentKeysInTheSameBlocksFailWithAPlanHashError) {
  Communicator& world = test::world();
  if (world.size() < 2) GTEST_SKIP() << "needs a second rank";
  const SpProblem problem = make_problem(5, 8, MaskGeometry{1000, 1000, 64, 64});
  const BlockMask blocks = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 5);
  // Rank 1 thins with another seed: the covering blocks (and so the plan) agree, the keys do not.
  const FineMask mask = thin_blocks(blocks, 0.5, world.rank() == 1 ? 6 : 5);
  ASSERT_EQ(mask.covering_blocks(), blocks);
  const RankData data(problem, mask);
  std::vector<float> out(data.q.size());
  SpAttention attention(world, parse_strategy("ulysses", world.size()), 1);
  try {
    attention.forward(0, problem, mask, data.q.data(), data.k.data(), data.v.data(), out.data());
    ADD_FAILURE() << "mismatched fine masks were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 holds plan"), std::string::npos) << e.what();
  }
}

// mask_hash(mask) is `hash` on 1, 2, 3 and 8 OpenMP threads.
template <class Mask>
void expect_hash_at_every_thread_count(const Mask& mask, uint64_t hash) {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3, 8}) {
    omp_set_num_threads(threads);
    EXPECT_EQ(mask_hash(mask), hash) << threads << " threads";
  }
  omp_set_num_threads(saved);
}

// The hash of a block mask: chunks of words hashed in parallel over four lanes, then mixed in
// order. Every bit counts (in every lane and chunk, the last partial chunk included), the thread
// count does not.
TEST(BlockMaskHash, SeesEveryBitAndTheGeometryButNotTheThreadCount) {
  // 3 x 700 rows of 12 words: 25200 words, one full chunk of 2^14 and a partial one.
  const MaskGeometry geometry{700 * 64, 750 * 64 - 5, 64, 64};
  const BlockMask mask = test::make_mask(test::MaskKind::random, 3, geometry, 0.3, 5);
  const uint64_t hash = mask_hash(mask);
  expect_hash_at_every_thread_count(mask, hash);
  std::set<uint64_t> seen{hash};
  for (int h = 0; h < mask.heads(); ++h) {
    for (int i = 0; i < mask.q_blocks(); i += 37) {
      for (int j : {0, 1, 2, 3, 63, 64, 65, 66, 300, mask.k_blocks() - 1}) {
        BlockMask flipped = mask;
        flipped.set(h, i, j, !mask.get(h, i, j));
        EXPECT_TRUE(seen.insert(mask_hash(flipped)).second) << h << " " << i << " " << j;
      }
    }
  }
  // The very last word, and the same bits read as another geometry.
  BlockMask last = mask;
  last.set(2, last.q_blocks() - 1, last.k_blocks() - 1,
           !mask.get(2, mask.q_blocks() - 1, mask.k_blocks() - 1));
  EXPECT_TRUE(seen.insert(mask_hash(last)).second);
  EXPECT_NE(mask_hash(BlockMask(3, MaskGeometry{geometry.seq_q - 1, geometry.seq_k, 64, 64})),
            mask_hash(BlockMask(3, geometry)));
  EXPECT_NE(mask_hash(BlockMask(2, geometry)), mask_hash(BlockMask(3, geometry)));
}

// The hash of a fine mask: chunks of rows hashed in parallel, then mixed in order.
FineMask with_lists(const FineMask& mask, std::vector<int64_t> offsets, std::vector<int32_t> keys) {
  return FineMask(mask.heads(), mask.geometry(), std::move(offsets), std::move(keys));
}

TEST(FineMaskHash, SeesEveryKeyAndRowEndButNotTheThreadCount) {
  // > 2^16 keys (the parallel path) in many chunks of rows; odd key counts leave single keys.
  const MaskGeometry geometry{5000, 3001, 64, 64};
  const BlockMask blocks = test::make_mask(test::MaskKind::random, 3, geometry, 0.4, 11);
  const FineMask mask = thin_blocks(blocks, 0.37, 3);
  ASSERT_GT(mask.kept(), int64_t{1} << 16);
  const uint64_t hash = mask_hash(mask);
  expect_hash_at_every_thread_count(mask, hash);
  EXPECT_NE(hash, mask_hash(blocks));
  EXPECT_NE(hash, mask_hash(FineMask::from_block(blocks)));

  const std::vector<int64_t>& offsets = mask.row_offset();
  const std::vector<int32_t>& keys = mask.key_index();
  std::set<uint64_t> seen{hash};
  int changes = 0;
  for (size_t r = 0; r + 1 < offsets.size(); r += 3) {
    const int64_t first = offsets[r], end = offsets[r + 1];
    if (end - first < 2) continue;
    // The row's last key one token later (where that keeps the row valid), and its first key one
    // token earlier: one key differs, every offset is the same.
    if (keys[end - 1] + 1 < geometry.seq_k) {
      std::vector<int32_t> changed = keys;
      ++changed[end - 1];
      EXPECT_TRUE(seen.insert(mask_hash(with_lists(mask, offsets, changed))).second) << r;
      ++changes;
    }
    if (keys[first] > 0) {
      std::vector<int32_t> changed = keys;
      --changed[first];
      EXPECT_TRUE(seen.insert(mask_hash(with_lists(mask, offsets, changed))).second) << r;
      ++changes;
    }
    // The last key moved to the next row when it sorts first there: the same keys in the same
    // order, one row end differs.
    if (r + 2 < offsets.size() && offsets[r + 2] > end && keys[end] > keys[end - 1]) {
      std::vector<int64_t> moved = offsets;
      --moved[r + 1];
      EXPECT_TRUE(seen.insert(mask_hash(with_lists(mask, moved, keys))).second) << r;
      ++changes;
    }
  }
  EXPECT_GT(changes, 100);
  // The very last key (a single key at the end of the last chunk when the count is odd).
  std::vector<int32_t> changed = keys;
  --changed.back();
  if (offsets[offsets.size() - 2] < offsets.back() - 1 && changed.back() > keys[keys.size() - 2]) {
    EXPECT_NE(mask_hash(with_lists(mask, offsets, changed)), hash);
  }
  // The same lists in another geometry (fewer queries in the last block).
  const FineMask shorter(mask.heads(), MaskGeometry{4995, 3001, 64, 64}, offsets, keys);
  EXPECT_NE(mask_hash(shorter), hash);
}

}  // namespace
}  // namespace dbsp
