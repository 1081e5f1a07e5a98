// Sharded mask estimation on the device (label gpu; mpirun -np 1 and 2, one GPU per rank): every
// rank's mask equals cuda::MaskEstimator's on the whole Q and K bit for bit (short last blocks,
// ranks without a block, head_dim 64 and 128, two thresholds, sink sets, unequal block sizes,
// cross-attention lengths); a NaN or Inf on one rank and bad arguments fail on every rank, and
// the communicator still works afterwards.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "dbsp/attention.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "dbsp/sp_estimate.hpp"
#include "dbsp/sp_reference.hpp"
#include "mpi_test_support.hpp"
#include "nccl_fixture.hpp"

namespace dbsp {
namespace {

constexpr uint64_t kSeed = 41;

SpProblem problem_of(int heads, int head_dim, int64_t seq_q, int64_t seq_k, int block_q,
                     int block_k) {
  SpProblem problem;
  problem.heads = heads;
  problem.head_dim = head_dim;
  problem.geometry = MaskGeometry{seq_q, seq_k, block_q, block_k};
  return problem;
}

EstimateOptions options_of(const SpProblem& problem, double tau, std::vector<int> sinks) {
  EstimateOptions options;
  options.block_q = problem.geometry.block_q;
  options.block_k = problem.geometry.block_k;
  options.tau = tau;
  options.sink_blocks = std::move(sinks);
  return options;
}

// Tensor `which` (0 Q, 1 K) of the whole sequence [seq, heads, head_dim], rounded to bf16: the
// seeded values in [-1, 1) plus a vector per (block, head) in [-2.5, 2.5), so that pooled blocks
// differ (scores of spread ~2) and top-p keeps a real subset. Every rank builds the same tensor.
std::vector<float> structured_tensor(int which, int64_t seq, int heads, int head_dim, int block) {
  std::vector<float> x = seeded_tensor(kSeed, which, 0, seq, heads, head_dim);
  size_t at = 0;
  for (int64_t t = 0; t < seq; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int d = 0; d < head_dim; ++d, ++at) {
        const float offset = 2.5f * seeded_value(kSeed + 1, which, t / block, h, d);
        x[at] = round_to_bf16(x[at] + offset);
      }
    }
  }
  return x;
}

// Tokens [shard.first_token, shard.end_token) of a whole [seq, heads, head_dim] tensor.
std::span<const float> shard_of(const std::vector<float>& whole, const SequenceShard& shard,
                                int heads, int head_dim) {
  const size_t row = static_cast<size_t>(heads) * head_dim;
  return std::span<const float>(whole).subspan(shard.first_token * row, shard.tokens() * row);
}

// cuda::MaskEstimator on the whole Q and K, its lists downloaded into a BlockMask.
BlockMask whole_sequence_mask(const SpProblem& problem, const DeviceBf16& q, const DeviceBf16& k,
                              const EstimateOptions& options) {
  const MaskGeometry& g = problem.geometry;
  cuda::EstimateConfig config;
  config.block_q = options.block_q;
  config.block_k = options.block_k;
  config.tau = options.tau;
  config.sink_blocks = options.sink_blocks;
  config.keep_diagonal = options.keep_diagonal;
  config.scale = options.scale;
  cuda::MaskEstimator estimator(g.seq_q, g.seq_k, problem.heads, problem.head_dim,
                                cuda::DType::bf16, config);
  estimator.estimate(q.data(), k.data(), nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const cuda::DeviceMask lists = estimator.mask();
  const int q_blocks = estimator.q_blocks();
  const int k_blocks = estimator.k_blocks();
  const size_t rows = static_cast<size_t>(problem.heads) * q_blocks;
  std::vector<int32_t> count(rows), index(rows * k_blocks);
  EXPECT_EQ(
      cudaMemcpy(count.data(), lists.kv_count, rows * sizeof(int32_t), cudaMemcpyDeviceToHost),
      cudaSuccess);
  EXPECT_EQ(cudaMemcpy(index.data(), lists.kv_index, index.size() * sizeof(int32_t),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  BlockMask mask(problem.heads, g);
  for (size_t r = 0; r < rows; ++r) {
    for (int i = 0; i < count[r]; ++i) {
      mask.set(static_cast<int>(r / q_blocks), static_cast<int>(r % q_blocks),
               index[r * k_blocks + i]);
    }
  }
  return mask;
}

std::string first_difference(const BlockMask& a, const BlockMask& b) {
  if (!(a.geometry() == b.geometry()) || a.heads() != b.heads()) return "different shapes";
  for (int h = 0; h < a.heads(); ++h) {
    for (int i = 0; i < a.q_blocks(); ++i) {
      for (int j = 0; j < a.k_blocks(); ++j) {
        if (a.get(h, i, j) != b.get(h, i, j)) {
          std::ostringstream out;
          out << "first difference at head " << h << ", query block " << i << ", key block " << j
              << " (sharded " << a.get(h, i, j) << ")";
          return out.str();
        }
      }
    }
  }
  return "none";
}

// Q and K of one problem: whole on every rank (for the reference) and this rank's shards.
struct Inputs {
  std::vector<float> q, k;
  DeviceBf16 whole_q, whole_k, shard_q, shard_k;

  Inputs(const SpProblem& p, int rank, int ranks)
      : q(structured_tensor(0, p.geometry.seq_q, p.heads, p.head_dim, p.geometry.block_q)),
        k(structured_tensor(1, p.geometry.seq_k, p.heads, p.head_dim, p.geometry.block_k)),
        whole_q(q),
        whole_k(k),
        shard_q(shard_of(q, sequence_shard(p.q_layout(), rank, ranks), p.heads, p.head_dim)),
        shard_k(shard_of(k, sequence_shard(p.k_layout(), rank, ranks), p.heads, p.head_dim)) {}
};

// The message of the dbsp::Error `call` throws ("" when it returns).
template <class Call>
std::string error_of(Call&& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST_F(Nccl, ShardedDeviceEstimateEqualsMaskEstimatorOnTheWholeSequence) {
  Communicator& comm = *nccl_;
  const int P = comm.size();
  const int64_t seq = 64 * P * 10 + 37;  // a short last block
  struct Shape {
    int head_dim;
    int64_t seq_q, seq_k;
    int block_q, block_k;
  };
  std::vector<std::pair<Shape, EstimateOptions>> cases;
  for (int head_dim : {128, 64}) {
    for (double tau : {0.9, 0.5}) {
      for (std::vector<int> sinks : {std::vector<int>{0}, std::vector<int>{0, 3}}) {
        const SpProblem p = problem_of(5, head_dim, seq, seq, 64, 64);
        cases.push_back({{head_dim, seq, seq, 64, 64}, options_of(p, tau, sinks)});
      }
    }
  }
  // Query blocks of two key blocks (two diagonal blocks per row); cross-attention lengths (no
  // diagonal, query and key shards cut differently); one short block (ranks without a block when
  // P > 1).
  const Shape more[] = {
      {64, seq, seq, 128, 64}, {128, seq, 64 * 7 + 5, 64, 64}, {64, 37, 37, 64, 64}};
  for (const Shape& s : more) {
    const SpProblem p = problem_of(5, s.head_dim, s.seq_q, s.seq_k, s.block_q, s.block_k);
    cases.push_back({s, options_of(p, 0.9, {0, 3})});
  }

  // One kept workspace serves every case (its buffers grow and are reused at other shapes).
  const std::shared_ptr<EstimateWorkspace> workspace = make_estimate_workspace();
  for (const auto& [s, options] : cases) {
    const SpProblem problem = problem_of(5, s.head_dim, s.seq_q, s.seq_k, s.block_q, s.block_k);
    const Inputs in(problem, comm.rank(), P);
    const BlockMask expected = whole_sequence_mask(problem, in.whole_q, in.whole_k, options);
    const BlockMask sharded = estimate_mask_sharded_device_bf16(comm, problem, in.shard_q.data(),
                                                                in.shard_k.data(), options);
    const BlockMask kept = estimate_mask_sharded_device_bf16(
        comm, problem, in.shard_q.data(), in.shard_k.data(), options, workspace.get());
    std::ostringstream what;
    what << "rank " << comm.rank() << " of " << P << ", head_dim " << s.head_dim << ", seq "
         << s.seq_q << " x " << s.seq_k << ", blocks " << s.block_q << " x " << s.block_k
         << ", tau " << options.tau << ", " << options.sink_blocks.size() << " sinks, density "
         << expected.density();
    EXPECT_TRUE(sharded == expected) << what.str() << ": " << first_difference(sharded, expected);
    EXPECT_TRUE(kept == expected) << what.str()
                                  << ", kept workspace: " << first_difference(kept, expected);
    // The inputs are built so that top-p keeps a real subset (not every block).
    if (expected.k_blocks() >= 8) {
      EXPECT_LT(expected.density(), 1.0) << what.str();
    }
  }
}

TEST_F(Nccl, ShardedDeviceEstimateFailsOnEveryRankForNonFiniteInput) {
  Communicator& comm = *nccl_;
  const int P = comm.size();
  const SpProblem problem = problem_of(3, 64, 64 * P * 3 + 11, 64 * P * 3 + 11, 64, 64);
  const EstimateOptions options = options_of(problem, 0.9, {0});
  const SequenceShard q_shard = sequence_shard(problem.q_layout(), comm.rank(), P);
  const SequenceShard k_shard = sequence_shard(problem.k_layout(), comm.rank(), P);
  const Inputs in(problem, comm.rank(), P);
  const std::shared_ptr<EstimateWorkspace> workspace = make_estimate_workspace();
  const float poison[] = {std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity()};
  for (int c = 0; c < 2; ++c) {
    // Case 0: a NaN in the last rank's Q; case 1: an Inf in rank 0's K.
    const int bad_rank = c == 0 ? P - 1 : 0;
    const std::span<const float> q_part = shard_of(in.q, q_shard, problem.heads, problem.head_dim);
    const std::span<const float> k_part = shard_of(in.k, k_shard, problem.heads, problem.head_dim);
    std::vector<float> q(q_part.begin(), q_part.end()), k(k_part.begin(), k_part.end());
    std::vector<float>& poisoned = c == 0 ? q : k;
    if (comm.rank() == bad_rank) poisoned[poisoned.size() / 2 + 5] = poison[c];
    const DeviceBf16 dq(q), dk(k);
    const std::string message = error_of([&] {
      estimate_mask_sharded_device_bf16(comm, problem, dq.data(), dk.data(), options,
                                        workspace.get());
    });
    const std::string named =
        std::string(c == 0 ? "Q" : "K") + " on rank " + std::to_string(bad_rank);
    EXPECT_NE(message.find("NaN or Inf"), std::string::npos) << message;
    EXPECT_NE(message.find(named), std::string::npos) << message;
  }
  // Nothing was left half-done: the communicator and the workspace still serve a good call.
  const BlockMask expected = whole_sequence_mask(problem, in.whole_q, in.whole_k, options);
  EXPECT_TRUE(estimate_mask_sharded_device_bf16(comm, problem, in.shard_q.data(), in.shard_k.data(),
                                                options, workspace.get()) == expected);
}

TEST_F(Nccl, ShardedDeviceEstimateRejectsBadArgumentsOnEveryRank) {
  Communicator& comm = *nccl_;
  const SpProblem problem = problem_of(2, 64, 300, 300, 64, 64);
  const Inputs in(problem, comm.rank(), comm.size());
  auto message = [&](const SpProblem& p, const EstimateOptions& o) {
    return error_of([&] {
      estimate_mask_sharded_device_bf16(comm, p, in.shard_q.data(), in.shard_k.data(), o);
    });
  };
  EstimateOptions blocks = options_of(problem, 0.9, {0});
  blocks.block_q = 128;
  EXPECT_NE(message(problem, blocks).find("must equal the problem's geometry"), std::string::npos);
  SpProblem head_dim = problem;
  head_dim.head_dim = 96;
  EXPECT_NE(message(head_dim, options_of(problem, 0.9, {0})).find("head_dim must be 64 or 128"),
            std::string::npos);
  EXPECT_NE(message(problem, options_of(problem, 0.9, {0, 1, 2, 3, 4, 5, 6, 7, 8}))
                .find("at most 8 sink blocks"),
            std::string::npos);
  EXPECT_NE(message(problem, options_of(problem, 0.0, {0})).find("tau must be in (0, 1]"),
            std::string::npos);
  // The host communicator that bootstrapped NCCL is not a device communicator.
  EXPECT_NE(error_of([&] {
              estimate_mask_sharded_device_bf16(test::world(), problem, in.shard_q.data(),
                                                in.shard_k.data(), options_of(problem, 0.9, {0}));
            }).find("needs an NCCL communicator"),
            std::string::npos);
  // Still usable after the rejections.
  const EstimateOptions options = options_of(problem, 0.9, {0});
  EXPECT_TRUE(estimate_mask_sharded_device_bf16(comm, problem, in.shard_q.data(), in.shard_k.data(),
                                                options) ==
              whole_sequence_mask(problem, in.whole_q, in.whole_k, options));
}

}  // namespace
}  // namespace dbsp
