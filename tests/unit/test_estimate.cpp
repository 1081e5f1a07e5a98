// Mask estimation from Q/K (SPEC 1a): a hand-computed case, a float64 reference on random inputs,
// the always-kept blocks, determinism, odd sizes, the fine variant and input validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/estimate.hpp"

namespace dbsp {
namespace {

std::vector<float> random_tensor(int64_t seq, int heads, int dim, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(seq) * heads * dim);
  for (float& v : x) v = normal(rng);
  return x;
}

std::vector<double> pooled(const std::vector<float>& x, int64_t seq, int heads, int dim, int head,
                           int block, int b) {
  std::vector<double> mean(dim, 0.0);
  const int64_t end = std::min<int64_t>(seq, int64_t{b + 1} * block);
  for (int64_t t = int64_t{b} * block; t < end; ++t) {
    for (int d = 0; d < dim; ++d) mean[d] += x[(t * heads + head) * dim + d];
  }
  for (double& m : mean) m /= static_cast<double>(end - int64_t{b} * block);
  return mean;
}

// Candidate j is kept iff the softmax mass of the candidates ranked before it (higher score, or
// equal score and lower index) is still below tau; at tau = 1, iff its own mass is nonzero.
std::vector<bool> reference_top_mass(const std::vector<double>& scores, double tau) {
  const double top = *std::max_element(scores.begin(), scores.end());
  std::vector<double> weight(scores.size());
  double total = 0.0;
  for (size_t j = 0; j < scores.size(); ++j) total += weight[j] = std::exp(scores[j] - top);
  std::vector<bool> keep(scores.size());
  for (size_t j = 0; j < scores.size(); ++j) {
    if (tau >= 1.0) {
      keep[j] = weight[j] > 0.0;
      continue;
    }
    double before = 0.0;
    for (size_t k = 0; k < scores.size(); ++k) {
      if (scores[k] > scores[j] || (scores[k] == scores[j] && k < j)) before += weight[k];
    }
    keep[j] = before < tau * total;
  }
  return keep;
}

// Block mask by the definition, without diagonal or sinks.
BlockMask reference_block_mask(const std::vector<float>& q, const std::vector<float>& k,
                               int64_t seq_q, int64_t seq_k, int heads, int dim,
                               const EstimateOptions& options) {
  const MaskGeometry geometry{seq_q, seq_k, options.block_q, options.block_k};
  BlockMask mask(heads, geometry);
  const double scale = options.scale > 0 ? options.scale : 1.0 / std::sqrt(double(dim));
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < geometry.q_blocks(); ++i) {
      const std::vector<double> qi = pooled(q, seq_q, heads, dim, h, options.block_q, i);
      std::vector<double> scores(geometry.k_blocks());
      for (int j = 0; j < geometry.k_blocks(); ++j) {
        const std::vector<double> kj = pooled(k, seq_k, heads, dim, h, options.block_k, j);
        double dot = 0.0;
        for (int d = 0; d < dim; ++d) dot += qi[d] * kj[d];
        scores[j] = scale * dot;
      }
      const std::vector<bool> keep = reference_top_mass(scores, options.tau);
      for (int j = 0; j < geometry.k_blocks(); ++j) mask.set(h, i, j, keep[j]);
    }
  }
  return mask;
}

EstimateOptions plain_options(double tau, int block_q = 64, int block_k = 64) {
  EstimateOptions options;
  options.block_q = block_q;
  options.block_k = block_k;
  options.tau = tau;
  options.sink_blocks = {};
  options.keep_diagonal = false;
  return options;
}

std::vector<int> kept_row(const BlockMask& mask, int head, int q_block) {
  std::vector<int> row;
  for (int j = 0; j < mask.k_blocks(); ++j) {
    if (mask.get(head, q_block, j)) row.push_back(j);
  }
  return row;
}

// One head, dim 2, blocks of 2 tokens; key block 2 is a single token (short last block).
// Pooled q: (2, 0), (0, 1). Pooled k: (1, 0), (0, 1), (0, 4) (averaged over its one token).
// Row 0 scores 2, 0, 0: shares 0.787, 0.106, 0.106 (ties broken towards the lower index).
// Row 1 scores 0, 1, 4: shares 0.017, 0.047, 0.936.
TEST(EstimateBlockMask, MatchesHandComputedPooledExample) {
  const std::vector<float> q{1, 0, 3, 0, 0, 1, 0, 1};
  const std::vector<float> k{1, 0, 1, 0, 0, 0, 0, 2, 0, 4};
  EstimateOptions options = plain_options(0.7, 2, 2);
  options.scale = 1.0;
  BlockMask mask = estimate_block_mask(q.data(), k.data(), 4, 5, 1, 2, options);
  EXPECT_EQ(kept_row(mask, 0, 0), (std::vector<int>{0}));
  EXPECT_EQ(kept_row(mask, 0, 1), (std::vector<int>{2}));

  options.tau = 0.8;
  mask = estimate_block_mask(q.data(), k.data(), 4, 5, 1, 2, options);
  EXPECT_EQ(kept_row(mask, 0, 0), (std::vector<int>{0, 1}));
  EXPECT_EQ(kept_row(mask, 0, 1), (std::vector<int>{2}));

  options.tau = 0.95;
  mask = estimate_block_mask(q.data(), k.data(), 4, 5, 1, 2, options);
  EXPECT_EQ(kept_row(mask, 0, 0), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(kept_row(mask, 0, 1), (std::vector<int>{1, 2}));
}

TEST(EstimateBlockMask, MatchesFloat64ReferenceOnOddSizes) {
  // seq 1000 with blocks of 64 leaves a 40-token last block; a second case mixes block sizes.
  struct Case {
    int64_t seq_q, seq_k;
    int block_q, block_k;
    double tau;
  };
  for (const Case& c : {Case{1000, 1000, 64, 64, 0.9}, Case{333, 517, 48, 32, 0.6}}) {
    const int heads = 3, dim = 24;
    const auto q = random_tensor(c.seq_q, heads, dim, 11, 2.0f);
    const auto k = random_tensor(c.seq_k, heads, dim, 12, 2.0f);
    const EstimateOptions options = plain_options(c.tau, c.block_q, c.block_k);
    const BlockMask mask =
        estimate_block_mask(q.data(), k.data(), c.seq_q, c.seq_k, heads, dim, options);
    EXPECT_EQ(mask.geometry(), (MaskGeometry{c.seq_q, c.seq_k, c.block_q, c.block_k}));
    EXPECT_EQ(mask, reference_block_mask(q, k, c.seq_q, c.seq_k, heads, dim, options));
    EXPECT_GT(mask.density(), 0.0);
    EXPECT_LT(mask.density(), 1.0);
  }
}

TEST(EstimateBlockMask, TauOneKeepsEveryBlockWithNonzeroMass) {
  const int64_t seq = 640;
  const int heads = 2, dim = 16;
  const auto q = random_tensor(seq, heads, dim, 21, 1.0f);
  const auto k = random_tensor(seq, heads, dim, 22, 1.0f);
  EstimateOptions options = plain_options(1.0);
  BlockMask mask = estimate_block_mask(q.data(), k.data(), seq, seq, heads, dim, options);
  EXPECT_EQ(mask.kept(), int64_t{heads} * 10 * 10);

  // Logits a thousand apart underflow to zero mass: those blocks must then be dropped.
  options.scale = 1e4;
  mask = estimate_block_mask(q.data(), k.data(), seq, seq, heads, dim, options);
  const BlockMask reference = reference_block_mask(q, k, seq, seq, heads, dim, options);
  EXPECT_EQ(mask, reference);
  EXPECT_LT(mask.kept(), int64_t{heads} * 10 * 10);
}

TEST(EstimateBlockMask, AlwaysKeepsDiagonalAndSinks) {
  const int64_t seq = 1000;
  const int heads = 2, dim = 8;
  const auto q = random_tensor(seq, heads, dim, 31, 3.0f);
  const auto k = random_tensor(seq, heads, dim, 32, 3.0f);
  EstimateOptions options = plain_options(1e-9, 64, 32);  // keeps one block by score alone
  options.keep_diagonal = true;
  options.sink_blocks = {0, 7, -1, 1000};  // out-of-range sinks are ignored
  const BlockMask mask = estimate_block_mask(q.data(), k.data(), seq, seq, heads, dim, options);
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < mask.q_blocks(); ++i) {
      // Query block i covers tokens [64 i, 64 i + 64): key blocks 2i and 2i + 1 (the last query
      // block, tokens 960..999, overlaps key blocks 30 and 31).
      EXPECT_TRUE(mask.get(h, i, 2 * i)) << h << " " << i;
      if (2 * i + 1 < mask.k_blocks()) {
        EXPECT_TRUE(mask.get(h, i, 2 * i + 1)) << h << " " << i;
      }
      EXPECT_TRUE(mask.get(h, i, 0));
      EXPECT_TRUE(mask.get(h, i, 7));
      EXPECT_LE(mask.row_kept(h, i), 5);  // diagonal (2) + sinks (2) + the top block
    }
  }
}

TEST(EstimateBlockMask, IsDeterministic) {
  const int64_t seq = 777;
  const int heads = 5, dim = 32;
  const auto q = random_tensor(seq, heads, dim, 41, 1.5f);
  const auto k = random_tensor(seq, heads, dim, 42, 1.5f);
  const EstimateOptions options;
  const BlockMask first = estimate_block_mask(q.data(), k.data(), seq, seq, heads, dim, options);
  const BlockMask second = estimate_block_mask(q.data(), k.data(), seq, seq, heads, dim, options);
  EXPECT_EQ(first, second);
}

TEST(EstimateBlockMask, RejectsBadTauAndShapes) {
  const std::vector<float> x(64 * 2 * 4, 1.0f);
  const float* p = x.data();
  for (double tau : {0.0, -0.5, 1.0000001, std::numeric_limits<double>::quiet_NaN()}) {
    EstimateOptions options;
    options.tau = tau;
    EXPECT_THROW(estimate_block_mask(p, p, 64, 64, 2, 4, options), Error) << tau;
    EXPECT_THROW(estimate_fine_mask(p, p, 64, 64, 2, 4, options), Error) << tau;
  }
  const EstimateOptions options;
  EXPECT_THROW(estimate_block_mask(p, p, 0, 64, 2, 4, options), Error);
  EXPECT_THROW(estimate_block_mask(p, p, 64, -1, 2, 4, options), Error);
  EXPECT_THROW(estimate_block_mask(p, p, 64, 64, 0, 4, options), Error);
  EXPECT_THROW(estimate_block_mask(p, p, 64, 64, 2, 0, options), Error);
  EXPECT_THROW(estimate_block_mask(nullptr, p, 64, 64, 2, 4, options), Error);
  EstimateOptions zero_block;
  zero_block.block_k = 0;
  EXPECT_THROW(estimate_block_mask(p, p, 64, 64, 2, 4, zero_block), Error);
  EstimateOptions negative_scale;
  negative_scale.scale = -1.0;
  EXPECT_THROW(estimate_fine_mask(p, p, 64, 64, 2, 4, negative_scale), Error);
}

// Fine mask by the definition: per query block, its pooled query against every single key.
std::vector<std::vector<int32_t>> reference_fine_rows(const std::vector<float>& q,
                                                      const std::vector<float>& k, int64_t seq,
                                                      int heads, int dim, int block, double tau) {
  std::vector<std::vector<int32_t>> rows;
  const int blocks = static_cast<int>((seq + block - 1) / block);
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < blocks; ++i) {
      const std::vector<double> qi = pooled(q, seq, heads, dim, h, block, i);
      std::vector<double> scores(seq);
      for (int64_t t = 0; t < seq; ++t) {
        double dot = 0.0;
        for (int d = 0; d < dim; ++d) dot += qi[d] * k[(t * heads + h) * dim + d];
        scores[t] = dot / std::sqrt(double(dim));
      }
      const std::vector<bool> keep = reference_top_mass(scores, tau);
      std::vector<int32_t> keys;
      for (int64_t t = 0; t < seq; ++t) {
        if (keep[t]) keys.push_back(static_cast<int32_t>(t));
      }
      rows.push_back(keys);
    }
  }
  return rows;
}

TEST(EstimateFineMask, KeysSortedAndIncludeDiagonalAndSinkBlocks) {
  const int64_t seq = 300;  // 5 blocks of 64, the last one 44 tokens
  const int heads = 2, dim = 16;
  const auto q = random_tensor(seq, heads, dim, 51, 2.0f);
  const auto k = random_tensor(seq, heads, dim, 52, 2.0f);
  EstimateOptions options;
  options.tau = 0.5;
  options.sink_blocks = {1};
  const FineMask mask = estimate_fine_mask(q.data(), k.data(), seq, seq, heads, dim, options);
  const auto reference = reference_fine_rows(q, k, seq, heads, dim, 64, options.tau);
  ASSERT_EQ(mask.heads(), heads);
  ASSERT_EQ(mask.q_blocks(), 5);
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < 5; ++i) {
      const auto keys = mask.keys(h, i);
      EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
      EXPECT_EQ(std::adjacent_find(keys.begin(), keys.end()), keys.end());
      std::vector<int32_t> expected = reference[static_cast<size_t>(h) * 5 + i];
      for (int32_t t = 64 * i; t < std::min<int32_t>(64 * i + 64, seq); ++t) expected.push_back(t);
      for (int32_t t = 64; t < 128; ++t) expected.push_back(t);
      std::sort(expected.begin(), expected.end());
      expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
      EXPECT_EQ(std::vector<int32_t>(keys.begin(), keys.end()), expected) << h << " " << i;
      // The score-selected part alone is a strict subset: the mask is really sparse.
      EXPECT_LT(reference[static_cast<size_t>(h) * 5 + i].size(), size_t{seq});
    }
  }
}

TEST(EstimateFineMask, TauOneKeepsEveryKeyAndIsDeterministic) {
  const int64_t seq = 200;
  const int heads = 3, dim = 8;
  const auto q = random_tensor(seq, heads, dim, 61, 1.0f);
  const auto k = random_tensor(seq, heads, dim, 62, 1.0f);
  EstimateOptions options;
  options.tau = 1.0;
  const FineMask mask = estimate_fine_mask(q.data(), k.data(), seq, seq, heads, dim, options);
  EXPECT_EQ(mask.kept(), int64_t{heads} * 4 * seq);
  options.tau = 0.3;
  EXPECT_EQ(estimate_fine_mask(q.data(), k.data(), seq, seq, heads, dim, options),
            estimate_fine_mask(q.data(), k.data(), seq, seq, heads, dim, options));
}

// Sort-based top-p (O(n log n)), for rows too long for the quadratic reference.
std::vector<int32_t> sorted_top_mass(const std::vector<double>& scores, double tau) {
  std::vector<int32_t> order(scores.size());
  for (size_t j = 0; j < order.size(); ++j) order[j] = static_cast<int32_t>(j);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  const double top = scores[order.front()];
  double total = 0.0;
  for (double x : scores) total += std::exp(x - top);
  std::vector<int32_t> kept;
  double before = 0.0;
  for (int32_t j : order) {
    if (before >= tau * total) break;
    kept.push_back(j);
    before += std::exp(scores[j] - top);
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

TEST(EstimateFineMask, MatchesSortedReferenceOnLongRows) {
  const int64_t seq = 5000;  // 79 query blocks, the last one 8 tokens
  const int heads = 2, dim = 32;
  const auto q = random_tensor(seq, heads, dim, 71, 1.5f);
  const auto k = random_tensor(seq, heads, dim, 72, 1.5f);
  EstimateOptions options;
  options.tau = 0.8;
  options.sink_blocks = {};
  options.keep_diagonal = false;
  const FineMask mask = estimate_fine_mask(q.data(), k.data(), seq, seq, heads, dim, options);
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < mask.q_blocks(); i += 13) {
      const std::vector<double> qi = pooled(q, seq, heads, dim, h, 64, i);
      std::vector<double> scores(seq);
      for (int64_t t = 0; t < seq; ++t) {
        double dot = 0.0;
        for (int d = 0; d < dim; ++d) dot += qi[d] * k[(t * heads + h) * dim + d];
        scores[t] = dot / std::sqrt(double(dim));
      }
      const auto keys = mask.keys(h, i);
      EXPECT_EQ(std::vector<int32_t>(keys.begin(), keys.end()), sorted_top_mass(scores, 0.8))
          << h << " " << i;
    }
  }
}

// Equal scores everywhere: candidate j has j / n of the mass before it, so top-p keeps exactly
// the first ceil(tau * n) candidates (ties go to the lower index).
TEST(EstimateTopMass, BreaksTiesTowardsLowerIndex) {
  const int64_t seq = 640;  // 10 blocks
  const std::vector<float> ones(seq * 4, 1.0f);
  const EstimateOptions options = plain_options(0.35);
  const BlockMask mask = estimate_block_mask(ones.data(), ones.data(), seq, seq, 1, 4, options);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(kept_row(mask, 0, i), (std::vector<int>{0, 1, 2, 3}));
  const FineMask fine = estimate_fine_mask(ones.data(), ones.data(), seq, seq, 1, 4, options);
  for (int i = 0; i < 10; ++i) {
    const auto keys = fine.keys(0, i);
    ASSERT_EQ(keys.size(), 224u);  // ceil(0.35 * 640)
    EXPECT_EQ(keys.front(), 0);
    EXPECT_EQ(keys.back(), 223);
  }
}

}  // namespace
}  // namespace dbsp
