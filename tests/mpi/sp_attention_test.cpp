// Sequence-parallel attention under mpirun: every factorization U x R, static and permuted
// partitions and every strategy equal the single-rank fp64 reference on odd shapes and on empty
// and full masks; mask-aware communication changes no bit of the output and accounts its savings.
#include "dbsp/sp_attention.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "dbsp/error.hpp"
#include "dbsp/sp_reference.hpp"
#include "dbsp/workload.hpp"
#include "mpi_test_support.hpp"

namespace dbsp {
namespace {

constexpr uint64_t kSeed = 42;

SpProblem make_problem(int heads, int head_dim, int64_t seq, int block) {
  SpProblem problem;
  problem.heads = heads;
  problem.head_dim = head_dim;
  problem.geometry = MaskGeometry{seq, seq, block, block};
  return problem;
}

// This rank's inputs and the fp64 reference of its output rows.
struct RankData {
  SequenceShard shard;
  std::vector<float> q, k, v;
  std::vector<double> reference;

  RankData(const SpProblem& problem, const BlockMask& mask, uint64_t seed = kSeed) {
    Communicator& world = test::world();
    shard = sequence_shard(problem.q_layout(), world.rank(), world.size());
    q = seeded_tensor(seed, 0, shard.first_token, shard.end_token, problem.heads, problem.head_dim);
    k = seeded_tensor(seed, 1, shard.first_token, shard.end_token, problem.heads, problem.head_dim);
    v = seeded_tensor(seed, 2, shard.first_token, shard.end_token, problem.heads, problem.head_dim);
    reference = reference_rows(problem, mask, seed, shard.first_block, shard.end_block);
  }
};

void expect_close(const std::vector<float>& out, const std::vector<double>& reference,
                  const std::string& what) {
  ASSERT_EQ(out.size(), reference.size());
  size_t worst = 0;
  double worst_error = 0;
  for (size_t e = 0; e < out.size(); ++e) {
    // Relative error, with outputs near zero judged against 1e-2 (a typical output magnitude).
    const double error = std::abs(out[e] - reference[e]) / std::max(1e-2, std::abs(reference[e]));
    if (!(error <= worst_error)) {  // NaN counts as the worst
      worst_error = std::isnan(error) ? std::numeric_limits<double>::infinity() : error;
      worst = e;
    }
  }
  EXPECT_LE(worst_error, 1e-4) << what << ": element " << worst << " is " << out[worst]
                               << ", reference " << reference[worst];
}

SpTelemetry run_and_check(SpExecutor& executor, const SpProblem& problem, const BlockMask& mask,
                          const Partition& partition, const RankData& data,
                          const std::string& what) {
  std::vector<float> out = test::poisoned(data.q.size());
  const SpTelemetry telemetry = executor.run(problem, mask, partition, data.q.data(), data.k.data(),
                                             data.v.data(), out.data());
  expect_close(out, data.reference, what);
  return telemetry;
}

void check_every_grid(const SpProblem& problem, double density) {
  Communicator& world = test::world();
  SpExecutor executor(world);
  const int nq = problem.geometry.q_blocks(), nk = problem.geometry.k_blocks();
  for (test::MaskKind kind :
       {test::MaskKind::random, test::MaskKind::empty, test::MaskKind::full}) {
    const BlockMask mask = test::make_mask(kind, problem.heads, problem.geometry, density, kSeed);
    const RankData data(problem, mask);
    for (Grid grid : factorizations(world.size())) {
      run_and_check(executor, problem, mask, Partition::contiguous(grid, problem.heads, nq, nk),
                    data, grid.name() + " contiguous, density " + std::to_string(mask.density()));
      run_and_check(executor, problem, mask,
                    test::random_partition(grid, problem.heads, nq, nk, kSeed + grid.ring), data,
                    grid.name() + " permuted, density " + std::to_string(mask.density()));
    }
  }
}

TEST(SpExecutor, EveryGridAndPartitionMatchesReferenceWithFiveHeadsAndSequence1000) {
  check_every_grid(make_problem(5, 8, 1000, 64), 0.3);
}

TEST(SpExecutor, EveryGridAndPartitionMatchesReferenceWithTwelveHeads) {
  check_every_grid(make_problem(12, 4, 333, 32), 0.25);
}

// The video models' head count (Wan2.1: 40), which 3, 6 and 8 ranks do not divide; 700 tokens
// end in a short block.
TEST(SpExecutor, EveryGridAndPartitionMatchesReferenceWithFortyHeads) {
  check_every_grid(make_problem(40, 8, 700, 64), 0.3);
}

// A rank whose local tensors are its inputs (P = 1, ring grids with contiguous shards) computes in
// the caller's buffers; written over its own Q, O must still be the reference's, so the executor
// copies then. Every grid, and both ways on the same inputs.
TEST(SpExecutor, OutputInPlaceAndOverItsOwnQueriesMatchesReference) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  const BlockMask mask = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 31);
  const RankData data(problem, mask);
  SpExecutor executor(world);
  for (Grid grid : factorizations(world.size())) {
    const Partition partition = Partition::contiguous(grid, 5, mask.q_blocks(), mask.k_blocks());
    std::vector<float> out = test::poisoned(data.q.size());
    executor.run(problem, mask, partition, data.q.data(), data.k.data(), data.v.data(), out.data());
    expect_close(out, data.reference, grid.name() + " separate output");
    std::vector<float> q_then_out = data.q;
    executor.run(problem, mask, partition, q_then_out.data(), data.k.data(), data.v.data(),
                 q_then_out.data());
    expect_close(q_then_out, data.reference, grid.name() + " output over Q");
  }
}

TEST(SpExecutor, MaskAwareRunEqualsSendEverythingRunBitForBitAndAccountsSavings) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  const BlockMask mask = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.2, 7);
  const RankData data(problem, mask);
  SpExecutor aware(world, {.mask_aware = true});
  SpExecutor send_all(world, {.mask_aware = false});
  for (Grid grid : factorizations(world.size())) {
    const Partition partition =
        test::random_partition(grid, 5, mask.q_blocks(), mask.k_blocks(), 9);
    std::vector<float> out_aware = test::poisoned(data.q.size()),
                       out_all = test::poisoned(data.q.size());
    const SpTelemetry a = aware.run(problem, mask, partition, data.q.data(), data.k.data(),
                                    data.v.data(), out_aware.data());
    const SpTelemetry b = send_all.run(problem, mask, partition, data.q.data(), data.k.data(),
                                       data.v.data(), out_all.data());
    EXPECT_EQ(0, std::memcmp(out_aware.data(), out_all.data(), out_all.size() * sizeof(float)))
        << grid.name();
    EXPECT_EQ(b.bytes_saved, 0);
    EXPECT_EQ(a.bytes_sent + a.bytes_saved, b.bytes_sent) << grid.name();
    EXPECT_LE(a.bytes_received, b.bytes_received);
    const std::vector<int64_t> saved = world.all_gather(a.bytes_saved);
    if (world.size() > 1) {
      EXPECT_GT(*std::max_element(saved.begin(), saved.end()), 0) << grid.name();
    }
  }
}

// NaN in one rank's K spreads to every row that attends to it: every rank fails with one error
// naming each rank whose output holds NaN, and where; without the closing barrier each such rank
// names itself. With the check off the NaN passes (that is what the check is for).
TEST(SpExecutor, NonFiniteInputFailsEveryRankNamingWhereTheOutputIsNotFinite) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  const BlockMask mask(5, problem.geometry, /*full=*/true);  // every row attends every key
  RankData data(problem, mask);
  if (world.rank() == 0) data.k[2 * problem.head_dim] = std::nanf("");  // token 0, head 2
  auto message_of = [&](SpExecutor& executor, const Partition& partition) {
    std::vector<float> out(data.q.size());
    try {
      executor.run(problem, mask, partition, data.q.data(), data.k.data(), data.v.data(),
                   out.data());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  SpExecutor checked(world), alone(world, {.measure_idle = false}),
      unchecked(world, {.check_finite = false});
  for (Grid grid : factorizations(world.size())) {
    const Partition partition = test::random_partition(grid, 5, 16, 16, kSeed);
    const std::string message = message_of(checked, partition);
    EXPECT_NE(message.find("holds NaN or Inf on rank 0 (first at token 0, head 2)"),
              std::string::npos)
        << grid.name() << ": " << message;
    EXPECT_NE(message.find("rank " + std::to_string(world.size() - 1) + " (first at token"),
              std::string::npos)
        << grid.name() << ": " << message;
    const std::string own = message_of(alone, partition);
    EXPECT_NE(own.find("rank " + std::to_string(world.rank()) + " (first at token " +
                       std::to_string(data.shard.first_token) + ", head 2)"),
              std::string::npos)
        << grid.name() << ": " << own;
    EXPECT_EQ(message_of(unchecked, partition), "") << grid.name();
    world.barrier();  // every rank still in step: no collective was left behind
  }
}

TEST(SpExecutor, EmptyMaskMovesNoBytesComputesNothingAndReturnsZeros) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  const BlockMask mask(5, problem.geometry);
  const RankData data(problem, mask);
  SpExecutor executor(world);
  for (Grid grid : factorizations(world.size())) {
    std::vector<float> out = test::poisoned(data.q.size());
    const SpTelemetry t = executor.run(problem, mask, Partition::contiguous(grid, 5, 16, 16),
                                       data.q.data(), data.k.data(), data.v.data(), out.data());
    EXPECT_EQ(t.bytes_sent, 0);
    EXPECT_EQ(t.bytes_received, 0);
    EXPECT_EQ(t.ring_steps_computed, 0);
    EXPECT_EQ(t.ring_steps_skipped, grid.ring);
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float x) { return x == 0.0f; }));
  }
}

TEST(SpExecutor, RejectsASplitFloorBelowTwoBlocks) {
  Communicator& world = test::world();
  EXPECT_THROW(SpExecutor(world, {.min_split_blocks = 1}), Error);
  EXPECT_NO_THROW(SpExecutor(world, {.min_split_blocks = 2}));
}

TEST(SpExecutor, RingComputesOnlyStepsWithKeptBlocksAndMovesOnlyNeededShards) {
  Communicator& world = test::world();
  const int P = world.size();
  const SpProblem problem = make_problem(3, 8, 64 * 2 * P - 5, 64);
  const int blocks = problem.geometry.q_blocks();
  // Block-diagonal: every query block attends to its own key block only.
  BlockMask mask(3, problem.geometry);
  for (int h = 0; h < 3; ++h) {
    for (int i = 0; i < blocks; ++i) mask.set(h, i, i);
  }
  const RankData data(problem, mask);
  SpExecutor executor(world);
  const Grid ring{1, P};
  const SpTelemetry t = run_and_check(executor, problem, mask,
                                      Partition::contiguous(ring, 3, blocks, blocks), data, "ring");
  EXPECT_EQ(t.ring_steps_computed, 1);
  EXPECT_EQ(t.ring_steps_skipped, P - 1);
  EXPECT_EQ(t.bytes_sent, 0);  // no rank needs another rank's keys, queries stay home
  EXPECT_EQ(t.kept_blocks, 3 * 2);
}

TEST(SpStrategy, ParsesEveryStrategyName) {
  EXPECT_EQ(parse_strategy("ulysses", 8).grid, (Grid{8, 1}));
  EXPECT_EQ(parse_strategy("ring", 8).grid, (Grid{1, 8}));
  EXPECT_EQ(parse_strategy("usp:2x4", 8).grid, (Grid{2, 4}));
  EXPECT_EQ(parse_strategy("USP:U4R2", 8).grid, (Grid{4, 2}));
  EXPECT_FALSE(parse_strategy("usp", 8).grid.has_value());
  EXPECT_EQ(parse_strategy("dbsp", 8).policy, Policy::dbsp);
  EXPECT_EQ(parse_strategy("dbsp-paper:4x2", 8).policy, Policy::paper);
  EXPECT_EQ(parse_strategy("dbsp-paper:4x2", 8).name(), "dbsp-paper:4x2");
  EXPECT_EQ(parse_strategy("ring", 4).name(), "ring");
  EXPECT_FALSE(parse_strategy("dbsp", 8).share_heads);
  EXPECT_TRUE(parse_strategy("dbsp-shared:8x1", 8).share_heads);
  EXPECT_EQ(parse_strategy("dbsp-shared:8x1", 8).name(), "dbsp-shared:8x1");
  EXPECT_THROW(parse_strategy("usp:3x3", 8), Error);
  EXPECT_THROW(parse_strategy("ring:1x8", 8), Error);
  EXPECT_THROW(parse_strategy("striped", 8), Error);
}

TEST(SpAttention, EveryStrategyMatchesReferenceAcrossLayersAndSteps) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  std::vector<std::string> names = {
      "ulysses", "ring",       "usp",
      "dbsp",    "dbsp-paper", "dbsp-shared:" + std::to_string(world.size()) + "x1"};
  // Fixed grids: a mixed one where P has one (the executor tests cover every grid already).
  const std::vector<Grid> grids = factorizations(world.size());
  const Grid mixed = grids[grids.size() / 2];
  const std::string grid_text = std::to_string(mixed.ulysses) + "x" + std::to_string(mixed.ring);
  names.push_back("usp:" + grid_text);
  names.push_back("dbsp:" + grid_text);
  names.push_back("dbsp-paper:" + grid_text);
  // Masks and references of (step, layer), shared by every strategy.
  std::vector<BlockMask> masks;
  std::vector<RankData> inputs;
  for (int step = 0; step < 2; ++step) {
    for (int layer = 0; layer < 2; ++layer) {
      masks.push_back(
          test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 100 * step + layer));
      inputs.emplace_back(problem, masks.back());
    }
  }
  for (const std::string& name : names) {
    // dbsp leaves its connections to first use; the others connect when built.
    SpAttention attention(world, parse_strategy(name, world.size()), /*layers=*/2,
                          SpOptions{.connect_peers = name != "dbsp"});
    for (int step = 0; step < 2; ++step) {
      for (int layer = 0; layer < 2; ++layer) {
        const BlockMask& mask = masks[2 * step + layer];
        const RankData& data = inputs[2 * step + layer];
        std::vector<float> out = test::poisoned(data.q.size());
        const SpLayerReport report = attention.forward(layer, problem, mask, data.q.data(),
                                                       data.k.data(), data.v.data(), out.data());
        expect_close(out, data.reference, name + " layer " + std::to_string(layer));
        EXPECT_EQ(static_cast<int>(report.per_rank.size()), world.size());
        EXPECT_GE(report.predicted_ratio, 1.0 - 1e-9);
        EXPECT_GE(report.measured_ratio, 1.0 - 1e-9);
        const std::vector<uint64_t> hashes = world.all_gather(report.plan_hash);
        EXPECT_TRUE(
            std::all_of(hashes.begin(), hashes.end(), [&](uint64_t h) { return h == hashes[0]; }));
      }
    }
    EXPECT_GE(attention.replans(), 2) << name;  // the first call of each layer plans
  }
}

// InputSource: a seed gives the seeded tensors; a workload gives its Q and K of (step, layer), the
// rank's shard bit for bit, with V seeded; the seed overloads of the reference are the seed source.
TEST(SpReference, InputSourcesGiveSeededTensorsOrTheWorkloadsQk) {
  Communicator& world = test::world();
  const SyntheticWorkload tiny(model_preset("tiny"), 5);
  const ModelShape& shape = tiny.shape();
  SpProblem problem = make_problem(shape.heads, shape.head_dim, shape.tokens(), 64);
  const SequenceShard shard = sequence_shard(problem.q_layout(), world.rank(), world.size());
  const int64_t first = shard.first_token, end = shard.end_token;
  const InputSource seeded{.seed = kSeed};
  const InputSource structured{.seed = kSeed, .workload = &tiny, .step = 2, .layer = 1};
  std::vector<float> q, k;
  tiny.qk_tokens(2, 1, first, end, q, k);
  for (int which = 0; which < 3; ++which) {
    const std::vector<float> plain =
        seeded_tensor(kSeed, which, first, end, shape.heads, shape.head_dim);
    const std::vector<float>* expected[] = {&q, &k, &plain};
    EXPECT_EQ(source_tensor(seeded, which, first, end, shape.heads, shape.head_dim), plain);
    EXPECT_EQ(source_tensor(structured, which, first, end, shape.heads, shape.head_dim),
              *expected[which])
        << "tensor " << which;
  }
  const BlockMask mask = tiny.block_mask(2, 1);
  EXPECT_EQ(reference_rows(problem, mask, kSeed, shard.first_block, shard.end_block),
            reference_rows(problem, mask, seeded, shard.first_block, shard.end_block));
  EXPECT_EQ(naive_bf16_rows(problem, mask, kSeed, shard.first_block, shard.end_block),
            naive_bf16_rows(problem, mask, seeded, shard.first_block, shard.end_block));
  const std::vector<double> rows =
      reference_rows(problem, mask, structured, shard.first_block, shard.end_block);
  EXPECT_EQ(rows.size(), q.size());
  EXPECT_TRUE(std::all_of(rows.begin(), rows.end(), [](double x) { return std::isfinite(x); }));
  // The workload's shapes must be the problem's; step and layer must be the workload's.
  EXPECT_NO_THROW(require_source_fits(structured, problem));
  SpProblem other = problem;
  other.head_dim = 64;
  EXPECT_THROW(require_source_fits(structured, other), Error);
  EXPECT_THROW(reference_rows(other, mask, structured, 0, 1), Error);
  other = make_problem(shape.heads, shape.head_dim, shape.tokens() - 1, 64);
  EXPECT_THROW(require_source_fits(structured, other), Error);
  EXPECT_NO_THROW(require_source_fits(seeded, other));
  InputSource late = structured;
  late.step = shape.steps;
  EXPECT_THROW(require_source_fits(late, problem), Error);
  EXPECT_THROW(source_tensor(structured, 0, 0, 1, shape.heads + 1, shape.head_dim), Error);
  EXPECT_THROW(source_tensor(structured, 3, 0, 1, shape.heads, shape.head_dim), Error);
}

TEST(SpAttention, BatchElementsShareThePlanAndEachMatchesItsOwnReference) {
  Communicator& world = test::world();
  SpProblem problem = make_problem(5, 8, 1000, 64);
  problem.batch = 3;
  const BlockMask mask = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 77);
  std::vector<RankData> elements;
  std::vector<float> q, k, v;
  for (int b = 0; b < problem.batch; ++b) {
    elements.emplace_back(problem, mask, kSeed + 1000 * b);
    q.insert(q.end(), elements.back().q.begin(), elements.back().q.end());
    k.insert(k.end(), elements.back().k.begin(), elements.back().k.end());
    v.insert(v.end(), elements.back().v.begin(), elements.back().v.end());
  }
  for (const std::string name : {"ulysses", "ring", "dbsp"}) {
    SpAttention attention(world, parse_strategy(name, world.size()), /*layers=*/1);
    std::vector<float> out = test::poisoned(q.size());
    const SpLayerReport report =
        attention.forward(0, problem, mask, q.data(), k.data(), v.data(), out.data());
    const size_t per_element = elements[0].q.size();
    for (int b = 0; b < problem.batch; ++b) {
      const std::vector<float> element(out.begin() + b * per_element,
                                       out.begin() + (b + 1) * per_element);
      expect_close(element, elements[b].reference, name + " batch element " + std::to_string(b));
    }
    // One plan for the whole batch, and every element's ring steps in the telemetry.
    EXPECT_EQ(attention.replans(), 1) << name;
    EXPECT_EQ(report.telemetry.ring_steps_computed + report.telemetry.ring_steps_skipped,
              problem.batch * report.grid.ring)
        << name;
  }
  SpProblem empty_batch = problem;
  empty_batch.batch = 0;
  SpAttention attention(world, parse_strategy("ulysses", world.size()), 1);
  EXPECT_THROW(attention.forward(0, empty_batch, mask, q.data(), k.data(), v.data(), q.data()),
               Error);
}

TEST(SpAttention, RanksWithDifferentMasksFailWithAPlanHashError) {
  Communicator& world = test::world();
  if (world.size() < 2) GTEST_SKIP() << "needs a second rank";
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  BlockMask mask = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 5);
  if (world.rank() == 1) mask.set(0, 0, 0, !mask.get(0, 0, 0));
  const RankData data(problem, mask);
  std::vector<float> out(data.q.size());
  SpAttention attention(world, parse_strategy("ulysses", world.size()), 1);
  try {
    attention.forward(0, problem, mask, data.q.data(), data.k.data(), data.v.data(), out.data());
    ADD_FAILURE() << "mismatched masks were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 holds plan"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dbsp

namespace dbsp {
namespace {

TEST(SpEmulator, ChargesExactlyTheBytesThatTheRealRanksSend) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  const BlockMask mask = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.25, 3);
  const RankData data(problem, mask);
  SpExecutor executor(world);
  SpEmulator emulator(world.size(), EmulationDevice::cpu, LinkModel{100.0, 10.0});
  for (Grid grid : factorizations(world.size())) {
    const Partition partition =
        test::random_partition(grid, 5, mask.q_blocks(), mask.k_blocks(), 21);
    std::vector<float> out(data.q.size());
    const SpTelemetry t = executor.run(problem, mask, partition, data.q.data(), data.k.data(),
                                       data.v.data(), out.data());
    const std::vector<int64_t> sent = world.all_gather(t.bytes_sent);
    const std::vector<int64_t> saved = world.all_gather(t.bytes_saved);
    const std::vector<int> steps = world.all_gather(t.ring_steps_computed);
    const EmulatedLayer e = emulator.run(problem, mask, partition);
    int64_t total_sent = 0, total_saved = 0;
    for (int p = 0; p < world.size(); ++p) {
      total_sent += sent[p];
      total_saved += saved[p];
      // A virtual rank times a kernel exactly where the real rank launched one.
      EXPECT_EQ(e.rank_compute_ms[p] > 0, steps[p] > 0) << grid.name() << " rank " << p;
    }
    EXPECT_EQ(e.bytes_moved, total_sent) << grid.name();
    EXPECT_EQ(e.bytes_saved, total_saved) << grid.name();
    EXPECT_GE(e.ring_ratio, e.measured_ratio - 1e-9);
    EXPECT_GE(e.measured_ratio, 1.0 - 1e-9);
    EXPECT_GT(e.setup_ms, 0.0);  // every virtual rank builds its schedule, timed
    EXPECT_NEAR(e.total_ms, e.setup_ms + e.all_to_all_ms + e.ring_ms, 1e-9);
  }
}

// The executor stages what it sends (pack, exchange, unpack, and rows kept on the rank copied
// directly): the emulator charges those copies beside each transfer. A rank computing in place
// (contiguous shards at P = 1, ring grids) copies nothing, so slower copies change nothing there.
TEST(SpEmulator, StagingCopiesAreChargedBesideEachTransfer) {
  const int P = test::world().size();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  const BlockMask mask = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.4, 7);
  const LinkModel fast{.gbytes_per_s = 100.0, .latency_us = 10.0, .copy_gbytes_per_s = 1e9};
  const LinkModel slow{.gbytes_per_s = 100.0, .latency_us = 10.0, .copy_gbytes_per_s = 0.5};
  // Whole layers: the bounds below are for exchanges with no kernel beside them.
  const SpOptions whole{.head_chunks = 1};
  SpEmulator free_copies(P, EmulationDevice::cpu, fast, whole);
  SpEmulator slow_copies(P, EmulationDevice::cpu, slow, whole);
  SpEmulator timed_copies(P, EmulationDevice::cpu, LinkModel{100.0, 10.0}, whole);
  const int64_t row_bytes = problem.head_dim * 4;  // fp32 on the CPU path
  for (Grid grid : factorizations(P)) {
    for (bool contiguous : {true, false}) {
      const std::string what = grid.name() + (contiguous ? " contiguous" : " random");
      const Partition partition =
          contiguous ? Partition::contiguous(grid, 5, mask.q_blocks(), mask.k_blocks())
                     : test::random_partition(grid, 5, mask.q_blocks(), mask.k_blocks(), 5);
      const EmulatedLayer a = free_copies.run(problem, mask, partition);
      const EmulatedLayer b = slow_copies.run(problem, mask, partition);
      const EmulatedLayer c = timed_copies.run(problem, mask, partition);
      EXPECT_EQ(a.bytes_moved, b.bytes_moved) << what;
      EXPECT_GE(c.all_to_all_ms, a.all_to_all_ms) << what;
      if (grid.ulysses == 1 && contiguous) {
        EXPECT_EQ(a.all_to_all_ms, 0.0) << what;  // in place: no exchange, nothing copied
        EXPECT_EQ(b.all_to_all_ms, 0.0) << what;
        continue;
      }
      if (grid.ulysses == 1) continue;  // a moved block's exchange: no bound written here
      // Every rank copies at least the rows it keeps (or clears) and at most every row of the
      // layer's Q, K, V and O, cleared ones included, plus the output once more.
      const double rows_in_layer = static_cast<double>(mask.q_blocks()) * 64 * 5 * 6;
      const double copy_ms_per_row = static_cast<double>(row_bytes) / (0.5 * 1e6);
      EXPECT_GT(b.all_to_all_ms, a.all_to_all_ms + copy_ms_per_row) << what;
      EXPECT_LE(b.all_to_all_ms, a.all_to_all_ms + rows_in_layer * copy_ms_per_row) << what;
    }
  }
}

// Head chunks pipeline the all-to-alls of grids without a ring behind the chunks' kernels: the
// same bytes move, the exposed part never exceeds the unpipelined charge of every chunk's
// transfers, and grids with a ring are emulated exactly as without the option.
TEST(SpEmulator, HeadChunksOverlapTheAllToAllOfGridsWithoutARingOnly) {
  const int P = test::world().size();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  const BlockMask mask = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.4, 7);
  // Staging copies at a given rate, so that both emulators charge the same bytes the same.
  const LinkModel link{.gbytes_per_s = 100.0, .latency_us = 10.0, .copy_gbytes_per_s = 5.0};
  SpEmulator whole(P, EmulationDevice::cpu, link, SpOptions{.head_chunks = 1});
  SpEmulator chunked(P, EmulationDevice::cpu, link, SpOptions{.head_chunks = 3});
  for (Grid grid : factorizations(P)) {
    const Partition partition =
        test::random_partition(grid, 5, mask.q_blocks(), mask.k_blocks(), 5);
    const EmulatedLayer a = whole.run(problem, mask, partition);
    const EmulatedLayer b = chunked.run(problem, mask, partition);
    EXPECT_EQ(a.bytes_moved, b.bytes_moved) << grid.name();
    EXPECT_EQ(a.bytes_saved, b.bytes_saved) << grid.name();
    EXPECT_NEAR(b.total_ms, b.setup_ms + b.all_to_all_ms + b.ring_ms, 1e-9);
    EXPECT_GE(b.all_to_all_ms, 0.0) << grid.name();
    if (grid.ring > 1) {
      EXPECT_EQ(a.all_to_all_ms, b.all_to_all_ms) << grid.name();  // charged from bytes alone
      continue;
    }
    const double max_compute =
        *std::max_element(b.rank_compute_ms.begin(), b.rank_compute_ms.end());
    EXPECT_EQ(b.ring_ms, max_compute) << grid.name();
    if (P == 1) {
      // One rank computes in place unless chunked: the chunks pay its local copies instead.
      EXPECT_EQ(a.all_to_all_ms, 0.0);
      EXPECT_GT(b.all_to_all_ms, 0.0);
      continue;
    }
    // No chunk moves more than the whole layer, so three chunks expose at most three times its
    // transfers, even with no kernel beside them.
    EXPECT_LE(b.all_to_all_ms, 3 * a.all_to_all_ms + 1e-9) << grid.name();
    for (int p = 0; p < P; ++p) {
      EXPECT_EQ(a.rank_compute_ms[p] > 0, b.rank_compute_ms[p] > 0) << grid.name() << " " << p;
    }
  }
}

}  // namespace
}  // namespace dbsp

namespace dbsp {
namespace {

TEST(SpAttention, ReusesTheLayerScheduleOnlyWhileMaskAndPlanStayTheSame) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  const BlockMask first = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 31);
  const BlockMask second = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 32);
  const RankData first_data(problem, first), second_data(problem, second);
  for (const char* name : {"usp", "dbsp"}) {
    SpAttention attention(world, parse_strategy(name, world.size()), /*layers=*/1);
    const BlockMask* masks[] = {&first, &first, &second, &second, &first};
    const RankData* data[] = {&first_data, &first_data, &second_data, &second_data, &first_data};
    const bool expect_reuse[] = {false, true, false, true, false};
    for (int call = 0; call < 5; ++call) {
      std::vector<float> out = test::poisoned(data[call]->q.size());
      const SpLayerReport report =
          attention.forward(0, problem, *masks[call], data[call]->q.data(), data[call]->k.data(),
                            data[call]->v.data(), out.data());
      expect_close(out, data[call]->reference, std::string(name) + " call " + std::to_string(call));
      // A re-plan changes the key as well, so reuse needs the same mask and no re-plan.
      if (!report.replanned) {
        EXPECT_EQ(report.telemetry.schedule_reused, expect_reuse[call]) << name << " call " << call;
      } else {
        EXPECT_FALSE(report.telemetry.schedule_reused) << name << " call " << call;
      }
    }
  }
}

// plan_ahead: the next call's hash, plan and schedule built on a background thread give the same
// outputs (bit for bit), plans and re-plans as forwards that do the work themselves; a forward
// with another mask object drops what was prepared and still matches the reference.
TEST(SpAttention, PlanAheadGivesTheSameOutputsAndPlansAsPlanningInTheCall) {
  Communicator& world = test::world();
  const SpProblem problem = make_problem(5, 8, 1000, 64);
  constexpr int kLayers = 3, kSteps = 2;
  std::vector<BlockMask> masks;
  std::vector<RankData> inputs;
  for (int call = 0; call < kLayers * kSteps; ++call) {
    // Step 1 repeats layer 0's mask (plan and schedule kept) and changes the others.
    const uint64_t seed = call == kLayers ? 500 : 500 + static_cast<uint64_t>(call);
    masks.push_back(test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, seed));
    inputs.emplace_back(problem, masks.back());
  }
  test::expect_plan_ahead_equals_planning_in_the_call(
      world, problem, kLayers, masks, inputs, expect_close,
      [&](const std::string& name, SpAttention& ahead) {
        // Prepared for a copy of the mask, run with the original: dropped, then planned in the
        // call.
        const BlockMask copy = masks[1];
        ahead.plan_ahead(1, problem, copy);
        std::vector<float> out = test::poisoned(inputs[1].q.size());
        const SpLayerReport report =
            ahead.forward(1, problem, masks[1], inputs[1].q.data(), inputs[1].k.data(),
                          inputs[1].v.data(), out.data());
        EXPECT_FALSE(report.planned_ahead) << name;
        expect_close(out, inputs[1].reference, std::string(name) + " other mask object");
      });
  SpAttention attention(world, parse_strategy("dbsp", world.size()), kLayers);
  EXPECT_THROW(attention.plan_ahead(kLayers, problem, masks[0]), Error);
  EXPECT_THROW(attention.plan_ahead(-1, problem, masks[0]), Error);
}

}  // namespace
}  // namespace dbsp
