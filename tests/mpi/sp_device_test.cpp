// The device executor over NCCL (label gpu; mpirun -np 2 on two GPUs): every grid, contiguous and
// permuted partitions, random/empty/full masks, against the fp64 reference of the bf16-rounded
// inputs, into poisoned (NaN) outputs; mask-aware communication changes no bit; the strategies
// through SpAttention. A rank whose local tensors are its inputs (P = 1, contiguous ring grids)
// computes in the caller's buffers, so every row of O must be written there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "dbsp/accuracy.hpp"
#include "dbsp/error.hpp"
#include "dbsp/sp_attention.hpp"
#include "dbsp/sp_reference.hpp"
#include "mpi_test_support.hpp"
#include "nccl_fixture.hpp"

namespace dbsp {
namespace {

constexpr uint64_t kSeed = 7;

struct DeviceCase {
  SpProblem problem;
  SequenceShard shard;
  DeviceBf16 q, k, v;
  std::vector<double> reference;
  std::vector<float> naive;  // the naive bf16 path on the same inputs (accuracy.hpp)
  BlockMask mask;

  DeviceCase(const SpProblem& p, BlockMask m, int rank, int ranks)
      : problem(p),
        shard(sequence_shard(p.q_layout(), rank, ranks)),
        q(test::bf16_shard(kSeed, 0, shard, p)),
        k(test::bf16_shard(kSeed, 1, shard, p)),
        v(test::bf16_shard(kSeed, 2, shard, p)),
        mask(std::move(m)) {
    reference = reference_rows(problem, mask, kSeed, shard.first_block, shard.end_block,
                               /*round_inputs_to_bf16=*/true);
    naive = naive_bf16_rows(problem, mask, kSeed, shard.first_block, shard.end_block);
  }

  // bf16 inputs and output against the fp64 reference of the same (rounded) inputs, by the rule
  // of accuracy.hpp: relative L2 <= 1e-2 and at most 2x the naive bf16 path's largest error.
  void expect_accurate(const std::vector<float>& out, const std::string& what) const {
    const AccuracyReport report = compare_with_reference(out, reference, naive);
    EXPECT_TRUE(report.passes()) << what << ": " << report.describe();
  }
};

SpProblem device_problem(int heads) {
  SpProblem problem;
  problem.heads = heads;
  problem.head_dim = 64;
  problem.geometry = MaskGeometry{1000, 1000, 64, 64};
  return problem;
}

// `count` cases of random masks (density 0.3, seeds first_seed, first_seed + 1, ...).
std::vector<DeviceCase> random_cases(const SpProblem& problem, int count, uint64_t first_seed,
                                     Communicator& comm) {
  std::vector<DeviceCase> cases;
  for (int n = 0; n < count; ++n) {
    cases.emplace_back(problem,
                       test::make_mask(test::MaskKind::random, problem.heads, problem.geometry, 0.3,
                                       first_seed + static_cast<uint64_t>(n)),
                       comm.rank(), comm.size());
  }
  return cases;
}

TEST_F(Nccl, DeviceExecutorMatchesReferenceForEveryGridPartitionAndMask) {
  Communicator& comm = *nccl_;
  const SpProblem problem = device_problem(5);
  SpExecutor executor(comm);
  for (test::MaskKind kind :
       {test::MaskKind::random, test::MaskKind::empty, test::MaskKind::full}) {
    DeviceCase c(problem, test::make_mask(kind, 5, problem.geometry, 0.3, kSeed), comm.rank(),
                 comm.size());
    for (Grid grid : factorizations(comm.size())) {
      const Partition partitions[] = {
          Partition::contiguous(grid, 5, c.mask.q_blocks(), c.mask.k_blocks()),
          test::random_partition(grid, 5, c.mask.q_blocks(), c.mask.k_blocks(), kSeed + 3)};
      for (const Partition& partition : partitions) {
        DeviceBf16 out(test::poisoned(c.q.size()));
        executor.run_device_bf16(problem, c.mask, partition, c.q.data(), c.k.data(), c.v.data(),
                                 out.data());
        c.expect_accurate(out.to_host(),
                          grid.name() + " density " + std::to_string(c.mask.density()));
      }
    }
  }
}

// O written over Q (the same buffer): the in-place path would overwrite queries the kernels still
// read, so the executor copies instead; the output is the reference's either way.
TEST_F(Nccl, DeviceOutputOverItsOwnQueriesMatchesReference) {
  Communicator& comm = *nccl_;
  const SpProblem problem = device_problem(5);
  SpExecutor executor(comm);
  DeviceCase c(problem, test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, kSeed),
               comm.rank(), comm.size());
  for (Grid grid : factorizations(comm.size())) {
    DeviceBf16 q_then_out(c.q.to_host());
    executor.run_device_bf16(problem, c.mask,
                             Partition::contiguous(grid, 5, c.mask.q_blocks(), c.mask.k_blocks()),
                             q_then_out.data(), c.k.data(), c.v.data(), q_then_out.data());
    c.expect_accurate(q_then_out.to_host(), grid.name() + " output over Q");
  }
}

// NaN or Inf in one rank's V reaches every row of its head (each row's output weighs every value
// of the head): on the device too, every rank fails naming where each rank's output first holds
// it (sp/non_finite.hpp), and bf16 Inf counts as well. (Inf in K would not do: a row whose query
// scores it -Inf gives it no weight and stays finite.)
TEST_F(Nccl, DeviceNonFiniteInputFailsEveryRankNamingWhereTheOutputIsNotFinite) {
  Communicator& comm = *nccl_;
  const SpProblem problem = device_problem(5);
  const BlockMask mask(5, problem.geometry, /*full=*/true);  // every row attends every key
  const SequenceShard shard = sequence_shard(problem.q_layout(), comm.rank(), comm.size());
  SpExecutor checked(comm), unchecked(comm, {.check_finite = false});
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    std::vector<float> v = test::bf16_shard(kSeed, 2, shard, problem);
    if (comm.rank() == 0) v[2 * problem.head_dim] = bad;  // token 0, head 2
    const DeviceBf16 q(test::bf16_shard(kSeed, 0, shard, problem)),
        dk(test::bf16_shard(kSeed, 1, shard, problem)), dv(v);
    for (Grid grid : factorizations(comm.size())) {
      const Partition partition = test::random_partition(grid, 5, 16, 16, kSeed);
      DeviceBf16 out(q.size());
      std::string message;
      try {
        checked.run_device_bf16(problem, mask, partition, q.data(), dk.data(), dv.data(),
                                out.data());
      } catch (const Error& e) {
        message = e.what();
      }
      EXPECT_NE(message.find("holds NaN or Inf on rank 0 (first at token 0, head 2)"),
                std::string::npos)
          << grid.name() << ": " << message;
      EXPECT_NO_THROW(unchecked.run_device_bf16(problem, mask, partition, q.data(), dk.data(),
                                                dv.data(), out.data()))
          << grid.name();
      comm.barrier();
    }
  }
}

TEST_F(Nccl, DeviceMaskAwareRunEqualsSendEverythingBitForBit) {
  Communicator& comm = *nccl_;
  const SpProblem problem = device_problem(6);
  DeviceCase c(problem, test::make_mask(test::MaskKind::random, 6, problem.geometry, 0.2, 11),
               comm.rank(), comm.size());
  SpExecutor aware(comm, {.mask_aware = true});
  SpExecutor send_all(comm, {.mask_aware = false});
  for (Grid grid : factorizations(comm.size())) {
    const Partition partition =
        test::random_partition(grid, 6, c.mask.q_blocks(), c.mask.k_blocks(), 5);
    DeviceBf16 out_a(test::poisoned(c.q.size())), out_b(test::poisoned(c.q.size()));
    const SpTelemetry a = aware.run_device_bf16(problem, c.mask, partition, c.q.data(), c.k.data(),
                                                c.v.data(), out_a.data());
    const SpTelemetry b = send_all.run_device_bf16(problem, c.mask, partition, c.q.data(),
                                                   c.k.data(), c.v.data(), out_b.data());
    const std::vector<float> host_a = out_a.to_host(), host_b = out_b.to_host();
    EXPECT_EQ(0, std::memcmp(host_a.data(), host_b.data(), host_a.size() * sizeof(float)))
        << grid.name();
    EXPECT_EQ(a.bytes_sent + a.bytes_saved, b.bytes_sent);
    c.expect_accurate(host_a, grid.name());
  }
}

TEST_F(Nccl, DeviceStrategiesMatchReferenceAcrossLayers) {
  Communicator& comm = *nccl_;
  const SpProblem problem = device_problem(5);
  std::vector<DeviceCase> layers = random_cases(problem, 2, 20, comm);
  for (const char* name : {"ulysses", "ring", "dbsp", "dbsp-paper"}) {
    SpAttention attention(comm, parse_strategy(name, comm.size()), 2);
    for (int layer = 0; layer < 2; ++layer) {
      DeviceCase& c = layers[layer];
      DeviceBf16 out(test::poisoned(c.q.size()));
      const SpLayerReport report = attention.forward_device_bf16(
          layer, problem, c.mask, c.q.data(), c.k.data(), c.v.data(), out.data());
      c.expect_accurate(out.to_host(), name);
      EXPECT_GT(report.telemetry.total_ms, 0.0);
    }
  }
}

// plan_ahead_device: the schedule's host part built on a background thread gives the same
// outputs, bit for bit, as forwards that build it in the call.
TEST_F(Nccl, DevicePlanAheadEqualsPlanningInTheCallBitForBit) {
  Communicator& comm = *nccl_;
  const SpProblem problem = device_problem(5);
  std::vector<DeviceCase> calls = random_cases(problem, 4, 60, comm);
  for (const char* name : {"dbsp", "ring"}) {
    SpAttention plain(comm, parse_strategy(name, comm.size()), 2);
    SpAttention ahead(comm, parse_strategy(name, comm.size()), 2);
    for (int call = 0; call < 4; ++call) {
      DeviceCase& c = calls[call];
      if (call + 1 < 4) ahead.plan_ahead_device((call + 1) % 2, problem, calls[call + 1].mask);
      DeviceBf16 expected(test::poisoned(c.q.size())), out(test::poisoned(c.q.size()));
      plain.forward_device_bf16(call % 2, problem, c.mask, c.q.data(), c.k.data(), c.v.data(),
                                expected.data());
      const SpLayerReport report = ahead.forward_device_bf16(call % 2, problem, c.mask, c.q.data(),
                                                             c.k.data(), c.v.data(), out.data());
      const std::vector<float> host = out.to_host(), want = expected.to_host();
      const std::string what = std::string(name) + " call " + std::to_string(call);
      EXPECT_EQ(report.planned_ahead, call > 0) << what;
      EXPECT_EQ(0, std::memcmp(host.data(), want.data(), host.size() * sizeof(float))) << what;
      c.expect_accurate(host, what);
    }
  }
}

TEST_F(Nccl, DeviceHeadChunksEqualTheWholeLayerBitForBitOrWithSplitRowsAccurately) {
  Communicator& comm = *nccl_;
  const SpProblem problem = device_problem(5);
  SpExecutor whole(comm, {.head_chunks = 1});
  const Grid grid{comm.size(), 1};  // head chunks apply to grids without a ring
  for (test::MaskKind kind :
       {test::MaskKind::random, test::MaskKind::empty, test::MaskKind::full}) {
    DeviceCase c(problem, test::make_mask(kind, 5, problem.geometry, 0.3, kSeed + 1), comm.rank(),
                 comm.size());
    // Groups that hold their heads in another order than the input's (the planner's pipeline
    // order): the local tensors and the chunks follow it.
    Partition reordered = Partition::contiguous(grid, 5, c.mask.q_blocks(), c.mask.k_blocks());
    reordered.head_order = {3, 0, 4, 2, 1};
    const Partition partitions[] = {
        Partition::contiguous(grid, 5, c.mask.q_blocks(), c.mask.k_blocks()),
        test::random_partition(grid, 5, c.mask.q_blocks(), c.mask.k_blocks(), kSeed + 4),
        reordered};
    for (const Partition& partition : partitions) {
      DeviceBf16 reference_out(test::poisoned(c.q.size()));
      whole.run_device_bf16(problem, c.mask, partition, c.q.data(), c.k.data(), c.v.data(),
                            reference_out.data());
      const std::vector<float> expected = reference_out.to_host();
      // 2 and 3 chunks; 7 leaves some chunks without heads (at most 5 heads per group); 1 is
      // the whole layer again. With split long rows (SpOptions::split_long_rows for one-head
      // chunks, split_step_heads for the whole layer), rows of two blocks or more merge their
      // halves: accurate, no longer bit for bit.
      for (int chunks : {1, 2, 3, 7})
        for (bool split : {false, true}) {
          SpExecutor chunked(comm, {.head_chunks = chunks,
                                    .split_long_rows = split,
                                    .split_step_heads = split ? 5 : 0,
                                    .min_split_blocks = 2});
          DeviceBf16 out(test::poisoned(c.q.size()));
          const SpTelemetry t = chunked.run_device_bf16(problem, c.mask, partition, c.q.data(),
                                                        c.k.data(), c.v.data(), out.data());
          const std::vector<float> host = out.to_host();
          const std::string what = std::to_string(chunks) + " chunks" +
                                   (split ? ", split rows" : "") + ", density " +
                                   std::to_string(c.mask.density());
          if (!split) {
            EXPECT_EQ(0, std::memcmp(host.data(), expected.data(), host.size() * sizeof(float)))
                << what;
          }
          c.expect_accurate(host, what);
          EXPECT_GE(t.compute_ms, 0.0);
        }
    }
  }
}

TEST_F(Nccl, DeviceBatchElementsEachMatchTheirReference) {
  Communicator& comm = *nccl_;
  SpProblem problem = device_problem(5);
  problem.batch = 2;
  const BlockMask mask = test::make_mask(test::MaskKind::random, 5, problem.geometry, 0.3, 31);
  const SequenceShard shard = sequence_shard(problem.q_layout(), comm.rank(), comm.size());
  std::vector<float> q, k, v;
  for (int b = 0; b < problem.batch; ++b) {
    for (auto [which, tensor] : {std::pair{0, &q}, std::pair{1, &k}, std::pair{2, &v}}) {
      const std::vector<float> part = test::rounded_to_bf16(seeded_tensor(
          kSeed + b, which, shard.first_token, shard.end_token, problem.heads, problem.head_dim));
      tensor->insert(tensor->end(), part.begin(), part.end());
    }
  }
  const DeviceBf16 dq(q), dk(k), dv(v);
  for (const char* name : {"ulysses", "ring", "dbsp"}) {
    SpAttention attention(comm, parse_strategy(name, comm.size()), 1);
    DeviceBf16 out(test::poisoned(q.size()));
    attention.forward_device_bf16(0, problem, mask, dq.data(), dk.data(), dv.data(), out.data());
    const std::vector<float> host = out.to_host();
    const size_t per_element = q.size() / problem.batch;
    for (int b = 0; b < problem.batch; ++b) {
      const std::vector<double> reference =
          reference_rows(problem, mask, kSeed + b, shard.first_block, shard.end_block, true);
      const std::vector<float> naive =
          naive_bf16_rows(problem, mask, kSeed + b, shard.first_block, shard.end_block);
      const std::vector<float> element(host.begin() + b * per_element,
                                       host.begin() + (b + 1) * per_element);
      const AccuracyReport report = compare_with_reference(element, reference, naive);
      EXPECT_TRUE(report.passes()) << name << " batch element " << b << ": " << report.describe();
    }
  }
}

}  // namespace
}  // namespace dbsp
