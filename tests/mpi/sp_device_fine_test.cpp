// Fine (FG-Attn, M x 1) masks on the device executor over NCCL (label gpu; mpirun -np 1 and 2,
// one GPU per rank): every grid with contiguous and permuted partitions, every strategy through
// SpAttention, H = 5 and S = 1000 (not a multiple of 64 * P), thinned and random-key masks with
// empty rows, poisoned outputs; against the fp64 fine reference of the bf16-rounded inputs by
// the rule of accuracy.hpp (relative L2 <= 1e-2 and at most 2x the naive bf16 fine path's largest
// error) and the host fine path; head chunks change no bit; F = 1 gives the device block path's
// output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>

#include "dbsp/accuracy.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/sp_attention.hpp"
#include "dbsp/sp_reference.hpp"
#include "mpi_test_support.hpp"
#include "nccl_fixture.hpp"

namespace dbsp {
namespace {

constexpr uint64_t kSeed = 5151;

SpProblem fine_problem(int heads) {
  SpProblem problem;
  problem.heads = heads;
  problem.head_dim = 64;
  problem.geometry = MaskGeometry{1000, 1000, 64, 64};
  return problem;
}

std::vector<std::pair<std::string, FineMask>> fine_masks(const SpProblem& problem) {
  const BlockMask blocks =
      test::make_mask(test::MaskKind::random, problem.heads, problem.geometry, 0.35, kSeed);
  return {{"thinned 0.3", thin_blocks(blocks, 0.3, kSeed)},
          {"random keys", test::random_fine_mask(problem.heads, problem.geometry, 0.1, kSeed + 1)}};
}

// Relative L2 distance of `out` from `reference` (NaN or inf: +inf).
double relative_l2(const std::vector<float>& out, const std::vector<double>& reference) {
  double error_sq = 0, reference_sq = 0;
  for (size_t e = 0; e < reference.size(); ++e) {
    const double error = out[e] - reference[e];
    if (!std::isfinite(error)) return std::numeric_limits<double>::infinity();
    error_sq += error * error;
    reference_sq += reference[e] * reference[e];
  }
  return reference_sq > 0 ? std::sqrt(error_sq / reference_sq) : std::sqrt(error_sq);
}

std::vector<double> widened(const std::vector<float>& values) {
  return std::vector<double>(values.begin(), values.end());
}

// This rank's bf16-rounded seeded inputs (on the GPU and the host), the fp64 fine reference of
// its output rows and the host fine path's fp32 output on the same rounded inputs.
struct FineCase {
  SpProblem problem;
  FineMask mask;
  SequenceShard shard;
  std::vector<float> q, k, v;
  DeviceBf16 dq, dk, dv;
  std::vector<double> reference;
  std::vector<float> naive;  // the naive bf16 fine path on the same inputs (accuracy.hpp)

  FineCase(const SpProblem& p, FineMask m, int rank, int ranks)
      : problem(p),
        mask(std::move(m)),
        shard(sequence_shard(p.q_layout(), rank, ranks)),
        q(test::bf16_shard(kSeed, 0, shard, p)),
        k(test::bf16_shard(kSeed, 1, shard, p)),
        v(test::bf16_shard(kSeed, 2, shard, p)),
        dq(q),
        dk(k),
        dv(v),
        reference(reference_rows(problem, mask, kSeed, shard.first_block, shard.end_block,
                                 /*round_inputs_to_bf16=*/true)),
        naive(naive_bf16_rows(problem, mask, kSeed, shard.first_block, shard.end_block)) {}

  void expect_accurate(const std::vector<float>& out, const std::string& what) const {
    ASSERT_EQ(out.size(), reference.size()) << what;
    const AccuracyReport report = compare_with_reference(out, reference, naive);
    EXPECT_TRUE(report.passes()) << what << " vs the fp64 fine reference: " << report.describe();
  }
};

TEST_F(Nccl, DeviceFineMatchesReferenceAndHostPathForEveryGridAndPartition) {
  Communicator& comm = *nccl_;
  const SpProblem problem = fine_problem(5);
  const int nq = problem.geometry.q_blocks(), nk = problem.geometry.k_blocks();
  SpExecutor executor(comm);
  SpExecutor host(test::world());
  for (auto& [name, mask] : fine_masks(problem)) {
    const FineCase c(problem, mask, comm.rank(), comm.size());
    for (Grid grid : factorizations(comm.size())) {
      for (bool permuted : {false, true}) {
        const Partition partition =
            permuted ? test::random_partition(grid, problem.heads, nq, nk, kSeed + grid.ring)
                     : Partition::contiguous(grid, problem.heads, nq, nk);
        const std::string what =
            name + ", " + grid.name() + (permuted ? " permuted" : " contiguous");
        DeviceBf16 out(test::poisoned(c.q.size()));
        const SpTelemetry t = executor.run_device_bf16(problem, c.mask, partition, c.dq.data(),
                                                       c.dk.data(), c.dv.data(), out.data());
        const std::vector<float> host_out = out.to_host();
        c.expect_accurate(host_out, what);
        // The host fine path (MPI world, fp32) on the same rounded inputs: the same output within
        // bf16 tolerance, the same routing (covering blocks counted, rows moved).
        std::vector<float> host_path = test::poisoned(c.q.size());
        const SpTelemetry h = host.run(problem, c.mask, partition, c.q.data(), c.k.data(),
                                       c.v.data(), host_path.data());
        EXPECT_LE(relative_l2(host_out, widened(host_path)), 1e-2) << what << " vs the host path";
        EXPECT_EQ(t.kept_blocks, h.kept_blocks) << what;
        EXPECT_EQ(t.ring_steps_computed, h.ring_steps_computed) << what;
        EXPECT_EQ(2 * t.bytes_sent, h.bytes_sent) << what;  // bf16 rows vs fp32 rows
      }
    }
  }
}

TEST_F(Nccl, DeviceFineEveryStrategyMatchesReferenceAcrossLayers) {
  Communicator& comm = *nccl_;
  const SpProblem problem = fine_problem(5);
  std::vector<FineCase> layers;
  layers.reserve(2);
  for (auto& [name, mask] : fine_masks(problem)) {
    layers.emplace_back(problem, mask, comm.rank(), comm.size());
  }
  for (const char* strategy : {"ulysses", "ring", "usp", "dbsp", "dbsp-paper"}) {
    SpAttention attention(comm, parse_strategy(strategy, comm.size()),
                          static_cast<int>(layers.size()));
    for (int round = 0; round < 2; ++round) {  // the second round reuses plans and schedules
      for (size_t layer = 0; layer < layers.size(); ++layer) {
        const FineCase& c = layers[layer];
        DeviceBf16 out(test::poisoned(c.q.size()));
        const SpLayerReport report =
            attention.forward_device_bf16(static_cast<int>(layer), problem, c.mask, c.dq.data(),
                                          c.dk.data(), c.dv.data(), out.data());
        c.expect_accurate(out.to_host(), std::string(strategy) + " layer " + std::to_string(layer) +
                                             " round " + std::to_string(round));
        EXPECT_GT(report.telemetry.total_ms, 0.0);
        EXPECT_GE(report.predicted_ratio, 1.0 - 1e-9);
        if (round == 1) {
          EXPECT_TRUE(report.telemetry.schedule_reused) << strategy;
        }
      }
    }
  }
}

// plan_ahead_device with fine masks: the fine schedule built on a background thread (into the
// memory of a schedule handed back by an earlier run) gives the same outputs, bit for bit, and
// the same rho_s as forwards that build it in the call.
TEST_F(Nccl, DeviceFinePlanAheadEqualsPlanningInTheCallBitForBit) {
  Communicator& comm = *nccl_;
  const SpProblem problem = fine_problem(5);
  std::vector<FineCase> calls;
  for (int call = 0; call < 4; ++call) {
    const uint64_t seed = kSeed + 10 + static_cast<uint64_t>(call);
    FineMask mask = call % 2 == 0
                        ? thin_blocks(test::make_mask(test::MaskKind::random, problem.heads,
                                                      problem.geometry, 0.35, seed),
                                      0.3, seed)
                        : test::random_fine_mask(problem.heads, problem.geometry, 0.1, seed);
    calls.emplace_back(problem, std::move(mask), comm.rank(), comm.size());
  }
  for (const char* name : {"dbsp", "ring"}) {
    SpAttention plain(comm, parse_strategy(name, comm.size()), 2);
    SpAttention ahead(comm, parse_strategy(name, comm.size()), 2);
    for (int call = 0; call < 4; ++call) {
      const FineCase& c = calls[call];
      if (call + 1 < 4) ahead.plan_ahead_device((call + 1) % 2, problem, calls[call + 1].mask);
      DeviceBf16 expected(test::poisoned(c.q.size())), out(test::poisoned(c.q.size()));
      const SpLayerReport want = plain.forward_device_bf16(
          call % 2, problem, c.mask, c.dq.data(), c.dk.data(), c.dv.data(), expected.data());
      const SpLayerReport got = ahead.forward_device_bf16(call % 2, problem, c.mask, c.dq.data(),
                                                          c.dk.data(), c.dv.data(), out.data());
      const std::vector<float> host = out.to_host(), reference = expected.to_host();
      const std::string what = std::string(name) + " call " + std::to_string(call);
      EXPECT_EQ(got.planned_ahead, call > 0) << what;
      EXPECT_EQ(got.plan_hash, want.plan_hash) << what;
      EXPECT_EQ(got.predicted_ratio, want.predicted_ratio) << what;
      EXPECT_EQ(0, std::memcmp(host.data(), reference.data(), host.size() * sizeof(float))) << what;
      c.expect_accurate(host, what);
    }
  }
}

TEST_F(Nccl, DeviceFineHeadChunksEqualTheWholeLayerBitForBit) {
  Communicator& comm = *nccl_;
  const SpProblem problem = fine_problem(5);
  const int nq = problem.geometry.q_blocks(), nk = problem.geometry.k_blocks();
  const Grid grid{comm.size(), 1};  // head chunks apply to grids without a ring
  SpExecutor whole(comm, {.head_chunks = 1});
  for (auto& [name, mask] : fine_masks(problem)) {
    const FineCase c(problem, mask, comm.rank(), comm.size());
    const Partition partition = test::random_partition(grid, problem.heads, nq, nk, kSeed + 9);
    DeviceBf16 expected_out(test::poisoned(c.q.size()));
    const SpTelemetry expected_t = whole.run_device_bf16(
        problem, c.mask, partition, c.dq.data(), c.dk.data(), c.dv.data(), expected_out.data());
    const std::vector<float> expected = expected_out.to_host();
    c.expect_accurate(expected, name + " whole layer");
    for (int chunks : {2, 3, 7}) {
      SpExecutor chunked(comm, {.head_chunks = chunks});
      DeviceBf16 out(test::poisoned(c.q.size()));
      const SpTelemetry t = chunked.run_device_bf16(problem, c.mask, partition, c.dq.data(),
                                                    c.dk.data(), c.dv.data(), out.data());
      const std::vector<float> host = out.to_host();
      const std::string what = name + ", " + std::to_string(chunks) + " chunks";
      EXPECT_EQ(0, std::memcmp(host.data(), expected.data(), host.size() * sizeof(float))) << what;
      EXPECT_EQ(t.kept_blocks, expected_t.kept_blocks) << what;
    }
  }
}

TEST_F(Nccl, DeviceFineWithWholeBlocksGivesTheBlockPathsOutput) {
  Communicator& comm = *nccl_;
  const SpProblem problem = fine_problem(5);
  const int nq = problem.geometry.q_blocks(), nk = problem.geometry.k_blocks();
  const BlockMask blocks =
      test::make_mask(test::MaskKind::random, problem.heads, problem.geometry, 0.3, kSeed + 2);
  const FineCase c(problem, thin_blocks(blocks, 1.0, kSeed), comm.rank(), comm.size());
  SpExecutor executor(comm);
  for (Grid grid : factorizations(comm.size())) {
    const Partition partition = test::random_partition(grid, problem.heads, nq, nk, kSeed + 5);
    DeviceBf16 fine_out(test::poisoned(c.q.size())), block_out(test::poisoned(c.q.size()));
    const SpTelemetry f = executor.run_device_bf16(problem, c.mask, partition, c.dq.data(),
                                                   c.dk.data(), c.dv.data(), fine_out.data());
    const SpTelemetry b = executor.run_device_bf16(problem, blocks, partition, c.dq.data(),
                                                   c.dk.data(), c.dv.data(), block_out.data());
    const std::vector<float> fine_host = fine_out.to_host(), block_host = block_out.to_host();
    // Key-list and block-list kernels round differently: bf16 tolerance, not bit equality.
    EXPECT_LE(relative_l2(fine_host, widened(block_host)), 1e-2) << grid.name();
    double max_block = 0, max_difference = 0;
    for (size_t e = 0; e < block_host.size(); ++e) {
      max_block = std::max<double>(max_block, std::abs(block_host[e]));
      const double difference = std::abs(fine_host[e] - block_host[e]);
      max_difference = std::isnan(difference) ? INFINITY : std::max(max_difference, difference);
    }
    EXPECT_LE(max_difference, 2e-2 * max_block) << grid.name();
    EXPECT_EQ(f.kept_blocks, b.kept_blocks) << grid.name();
    EXPECT_EQ(f.bytes_sent, b.bytes_sent) << grid.name();
    c.expect_accurate(fine_host, grid.name());
  }
}

}  // namespace
}  // namespace dbsp
