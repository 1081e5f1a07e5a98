// Sharded mask estimation under mpirun: every rank's mask equals estimate_block_mask on the whole
// Q and K bit for bit (odd head counts and lengths, short last blocks, ranks without blocks, top-p
// and tau = 1, sinks, no diagonal, cross-attention lengths); bad input makes every rank throw
// (none waits for the others); SpAttention with EstimateOptions equals SpAttention on the
// precomputed mask bit for bit.
#include "dbsp/sp_estimate.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/sp_reference.hpp"
#include "mpi_test_support.hpp"

namespace dbsp {
namespace {

constexpr uint64_t kSeed = 2024;

struct Case {
  std::string name;
  int heads = 1, head_dim = 8;
  int64_t seq_q = 0, seq_k = 0;
  int block_q = 64, block_k = 64;
  EstimateOptions options;
  float input_scale = 1;        // peaked scores when large
  bool integer_inputs = false;  // many equal scores: the tie order matters
};

Case make_case(std::string name, int heads, int head_dim, int64_t seq_q, int64_t seq_k, int block_q,
               int block_k, EstimateOptions options, float input_scale = 1,
               bool integer_inputs = false) {
  Case c;
  c.name = std::move(name);
  c.heads = heads;
  c.head_dim = head_dim;
  c.seq_q = seq_q;
  c.seq_k = seq_k;
  c.block_q = block_q;
  c.block_k = block_k;
  c.options = std::move(options);
  c.input_scale = input_scale;
  c.integer_inputs = integer_inputs;
  return c;
}

SpProblem problem_of(const Case& c) {
  SpProblem problem;
  problem.heads = c.heads;
  problem.head_dim = c.head_dim;
  problem.geometry = MaskGeometry{c.seq_q, c.seq_k, c.block_q, c.block_k};
  return problem;
}

// Tokens [first, end) of tensor `which` (0 Q, 1 K) of a case, the same values on every rank.
std::vector<float> tokens(const Case& c, int which, int64_t first, int64_t end) {
  std::vector<float> x = seeded_tensor(kSeed, which, first, end, c.heads, c.head_dim);
  for (float& v : x) v = c.integer_inputs ? std::round(2 * v) : v * c.input_scale;
  return x;
}

struct Shards {
  std::vector<float> q, k;
  explicit Shards(const Case& c) {
    Communicator& world = test::world();
    const SpProblem problem = problem_of(c);
    const SequenceShard qs = sequence_shard(problem.q_layout(), world.rank(), world.size());
    const SequenceShard ks = sequence_shard(problem.k_layout(), world.rank(), world.size());
    q = tokens(c, 0, qs.first_token, qs.end_token);
    k = tokens(c, 1, ks.first_token, ks.end_token);
  }
};

EstimateOptions estimate_options(double tau, std::vector<int> sinks, bool diagonal,
                                 int block_q = 64, int block_k = 64, double scale = 0) {
  EstimateOptions o;
  o.block_q = block_q;
  o.block_k = block_k;
  o.tau = tau;
  o.sink_blocks = std::move(sinks);
  o.keep_diagonal = diagonal;
  o.scale = scale;
  return o;
}

std::vector<Case> cases() {
  std::vector<Case> all;
  // Five heads, 16 blocks with a short last one (1000 = 15 * 64 + 40).
  all.push_back(
      make_case("h5_s1000_tau09", 5, 8, 1000, 1000, 64, 64, estimate_options(0.9, {0}, true)));
  // Three heads, 11 blocks of 32 (short last block of 13), top-half, several sinks (some outside
  // the mask), no diagonal, peaked scores.
  all.push_back(make_case("h3_s333_tau05_sinks", 3, 5, 333, 333, 32, 32,
                          estimate_options(0.5, {0, 3, 10, 99, -1}, false, 32, 32), 6));
  // Three blocks (150 = 2 * 64 + 22): with more ranks than blocks some ranks hold nothing.
  all.push_back(
      make_case("h3_s150_tau1", 3, 16, 150, 150, 64, 64, estimate_options(1.0, {0, 2}, true)));
  // Different block sizes: a query block's diagonal spans several key blocks.
  all.push_back(make_case("h5_s1000_q32_k96", 5, 4, 1000, 1000, 32, 96,
                          estimate_options(0.7, {1}, true, 32, 96, 0.3)));
  // Cross-attention lengths (no diagonal applies), integer inputs with many tied scores.
  all.push_back(make_case("h3_q300_k500_ties", 3, 6, 300, 500, 32, 64,
                          estimate_options(0.6, {}, true, 32, 64), 1, true));
  // One block in all.
  all.push_back(
      make_case("h5_s10_one_block", 5, 3, 10, 10, 64, 64, estimate_options(0.5, {0}, false)));
  return all;
}

TEST(ShardedEstimate, EqualsSingleProcessEstimatorBitForBitOnEveryRank) {
  Communicator& world = test::world();
  for (const Case& c : cases()) {
    const SpProblem problem = problem_of(c);
    const Shards shards(c);
    const BlockMask sharded =
        estimate_mask_sharded(world, problem, shards.q.data(), shards.k.data(), c.options);
    const std::vector<float> q = tokens(c, 0, 0, c.seq_q), k = tokens(c, 1, 0, c.seq_k);
    const BlockMask whole =
        estimate_block_mask(q.data(), k.data(), c.seq_q, c.seq_k, c.heads, c.head_dim, c.options);
    EXPECT_TRUE(sharded == whole) << c.name << ": density " << sharded.density() << " vs "
                                  << whole.density();
    // Not a trivial mask: something dropped by top-p below tau = 1.
    if (c.options.tau < 1 && c.name != "h5_s10_one_block") {
      EXPECT_LT(whole.density(), 1.0) << c.name;
    }
    const std::vector<uint64_t> hashes = world.all_gather(mask_hash(sharded));
    for (int p = 0; p < world.size(); ++p)
      EXPECT_EQ(hashes[p], hashes[0]) << c.name << " rank " << p;
  }
}

TEST(ShardedEstimate, NullPointersAreFineOnRanksWithoutTokens) {
  Communicator& world = test::world();
  const Case c = make_case("h3_s150", 3, 16, 150, 150, 64, 64, estimate_options(0.8, {0}, true));
  const SpProblem problem = problem_of(c);
  const Shards shards(c);
  const bool empty = shards.q.empty();
  const BlockMask sharded = estimate_mask_sharded(world, problem, empty ? nullptr : shards.q.data(),
                                                  empty ? nullptr : shards.k.data(), c.options);
  const std::vector<float> q = tokens(c, 0, 0, c.seq_q), k = tokens(c, 1, 0, c.seq_k);
  EXPECT_TRUE(sharded ==
              estimate_block_mask(q.data(), k.data(), c.seq_q, c.seq_k, 3, 16, c.options));
}

// Runs the estimator expecting dbsp::Error on this rank; returns its message ("" if none).
std::string error_of(const SpProblem& problem, const float* q, const float* k,
                     const EstimateOptions& o) {
  try {
    estimate_mask_sharded(test::world(), problem, q, k, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ShardedEstimate, BlockSizesOtherThanTheProblemsFailOnEveryRank) {
  const Case c =
      make_case("h5", 5, 8, 1000, 1000, 64, 64, estimate_options(0.9, {0}, true, 32, 64));
  const Shards shards(c);
  const std::string message = error_of(problem_of(c), shards.q.data(), shards.k.data(), c.options);
  EXPECT_NE(message.find("differ from the problem's geometry"), std::string::npos) << message;
}

// The last rank holding tokens gets a bad value in `which` (0 Q, 1 K): every rank must throw an
// error naming that rank, the tensor, the token and the head.
void expect_every_rank_names(int which, float bad) {
  Communicator& world = test::world();
  const Case c = make_case("h5", 5, 8, 150, 150, 32, 32, estimate_options(0.9, {0}, true, 32, 32));
  const SpProblem problem = problem_of(c);
  Shards shards(c);
  int culprit = 0;
  for (int p = 0; p < world.size(); ++p) {
    if (sequence_shard(problem.q_layout(), p, world.size()).tokens() > 0) culprit = p;
  }
  const SequenceShard shard = sequence_shard(problem.q_layout(), culprit, world.size());
  const int64_t token = shard.end_token - 1;  // the last token of the short last block
  const int head = 3, dim = 5;
  if (world.rank() == culprit) {
    std::vector<float>& x = which == 0 ? shards.q : shards.k;
    x[((token - shard.first_token) * c.heads + head) * c.head_dim + dim] = bad;
  }
  const std::string message = error_of(problem, shards.q.data(), shards.k.data(), c.options);
  const std::string expected = "rank " + std::to_string(culprit) + " of " +
                               std::to_string(world.size()) + ": its " + (which ? "K" : "Q") +
                               " shard holds a NaN or Inf (token " + std::to_string(token) +
                               ", head " + std::to_string(head) + ")";
  EXPECT_NE(message.find(expected), std::string::npos) << "got '" << message << "'";
  // The communicator is still usable: nothing was left in flight.
  const Shards clean(c);
  EXPECT_NO_THROW(estimate_mask_sharded(world, problem, clean.q.data(), clean.k.data(), c.options));
}

TEST(ShardedEstimate, NanInOneRanksQueriesFailsOnEveryRankNamingIt) {
  expect_every_rank_names(0, std::numeric_limits<float>::quiet_NaN());
}

TEST(ShardedEstimate, InfInOneRanksKeysFailsOnEveryRankNamingIt) {
  expect_every_rank_names(1, -std::numeric_limits<float>::infinity());
}

TEST(ShardedEstimate, NullShardWithTokensAndMismatchedOptionsFailOnEveryRank) {
  Communicator& world = test::world();
  const Case c = make_case("h5", 5, 8, 1000, 1000, 64, 64, estimate_options(0.9, {0}, true));
  const SpProblem problem = problem_of(c);
  const Shards shards(c);
  const int last = world.size() - 1;  // 16 blocks: the last rank of up to 8 holds tokens
  const bool culprit = world.rank() == last;
  std::string message =
      error_of(problem, culprit ? nullptr : shards.q.data(), shards.k.data(), c.options);
  EXPECT_NE(message.find("rank " + std::to_string(last) + " of " + std::to_string(world.size()) +
                         ": q or k is null"),
            std::string::npos)
      << message;
  if (world.size() < 2) return;
  EstimateOptions other = c.options;
  if (culprit) other.tau = 0.8;
  message = error_of(problem, shards.q.data(), shards.k.data(), other);
  EXPECT_NE(message.find("another problem or options than rank 0"), std::string::npos) << message;
}

TEST(ShardedEstimate, SpAttentionWithEstimateOptionsEqualsTheRunOnThePrecomputedMask) {
  Communicator& world = test::world();
  const Case c = make_case("h5_s1000", 5, 8, 1000, 1000, 64, 64, estimate_options(0.7, {0}, true));
  SpProblem problem = problem_of(c);
  problem.batch = 2;  // the mask comes from element 0's Q and K
  const SequenceShard shard = sequence_shard(problem.q_layout(), world.rank(), world.size());
  std::vector<float> q, k, v;
  for (int b = 0; b < problem.batch; ++b) {
    for (auto [which, tensor] : {std::pair{0, &q}, std::pair{1, &k}, std::pair{2, &v}}) {
      const std::vector<float> part =
          seeded_tensor(kSeed + b, which, shard.first_token, shard.end_token, c.heads, c.head_dim);
      tensor->insert(tensor->end(), part.begin(), part.end());
    }
  }
  const std::vector<float> whole_q = seeded_tensor(kSeed, 0, 0, c.seq_q, c.heads, c.head_dim);
  const std::vector<float> whole_k = seeded_tensor(kSeed, 1, 0, c.seq_k, c.heads, c.head_dim);
  const BlockMask mask = estimate_block_mask(whole_q.data(), whole_k.data(), c.seq_q, c.seq_k,
                                             c.heads, c.head_dim, c.options);
  ASSERT_LT(mask.density(), 1.0);
  for (const char* name : {"dbsp", "ring", "ulysses"}) {
    SpAttention estimating(world, parse_strategy(name, world.size()), 2);
    SpAttention given(world, parse_strategy(name, world.size()), 2);
    for (int layer = 0; layer < 2; ++layer) {
      std::vector<float> out_estimated(q.size(), std::numeric_limits<float>::quiet_NaN());
      std::vector<float> out_given(q.size(), std::numeric_limits<float>::quiet_NaN());
      const SpLayerReport a = estimating.forward(layer, problem, c.options, q.data(), k.data(),
                                                 v.data(), out_estimated.data());
      const SpLayerReport b =
          given.forward(layer, problem, mask, q.data(), k.data(), v.data(), out_given.data());
      ASSERT_TRUE(a.estimated_mask.has_value());
      EXPECT_TRUE(*a.estimated_mask == mask) << name;
      EXPECT_GE(a.estimate_ms, 0.0);
      EXPECT_FALSE(b.estimated_mask.has_value());
      EXPECT_EQ(b.estimate_ms, 0.0);
      EXPECT_EQ(a.plan_hash, b.plan_hash) << name;
      EXPECT_EQ(
          0, std::memcmp(out_estimated.data(), out_given.data(), out_given.size() * sizeof(float)))
          << name << " layer " << layer;
    }
  }
}

}  // namespace
}  // namespace dbsp
