// The bf16 yardsticks (attention_block_sparse_bf16_naive, attention_fine_bf16_naive) and the pass
// rule of accuracy.hpp: the naive paths are close to fp64 on bf16 inputs, empty rows give zeros,
// a fine mask of whole blocks gives the block path bit for bit, and the rule rejects NaN, drift
// past 2x the naive error, and relative L2 above the limit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "dbsp/accuracy.hpp"
#include "dbsp/attention.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/error.hpp"
#include "dbsp/fine_mask.hpp"

namespace dbsp {
namespace {

struct Case {
  AttentionProblem problem;
  BlockMask mask;
  BlockCsr csr;
  std::vector<float> q, k, v;
  std::vector<double> reference;
  std::vector<float> naive;
};

// S = 300 (not a multiple of 64), 3 heads, random blocks with row 1 of head 0 left empty.
Case make_case(uint64_t seed) {
  Case c;
  c.problem = AttentionProblem::uniform(1, 300, 300, 3, 64);
  BlockMask mask(3, MaskGeometry{300, 300, 64, 64});
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution keep(0.5);
  for (int h = 0; h < 3; ++h)
    for (int i = 0; i < mask.q_blocks(); ++i)
      for (int j = 0; j < mask.k_blocks(); ++j)
        if (!(h == 0 && i == 1)) mask.set(h, i, j, keep(rng) || i == j);
  c.csr = mask.to_csr();
  c.mask = mask;
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  auto fill = [&] {
    std::vector<float> x(300 * 3 * 64);
    for (float& e : x) e = round_to_bf16(value(rng));
    return x;
  };
  c.q = fill(), c.k = fill(), c.v = fill();
  auto widen = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  c.reference.resize(c.q.size());
  std::vector<double> lse(300 * 3);
  attention_block_sparse<double>(c.problem, c.csr, widen(c.q).data(), widen(c.k).data(),
                                 widen(c.v).data(), c.reference.data(), lse.data());
  c.naive.assign(c.q.size(), std::numeric_limits<float>::quiet_NaN());  // poisoned
  attention_block_sparse_bf16_naive(c.problem, c.csr, c.q.data(), c.k.data(), c.v.data(),
                                    c.naive.data());
  return c;
}

TEST(Accuracy, NaiveBf16PathIsCloseToFp64AndZeroOnEmptyRows) {
  const Case c = make_case(1);
  const AccuracyReport report = compare_with_reference(c.naive, c.reference, c.naive);
  EXPECT_TRUE(report.finite);
  EXPECT_LT(report.relative_l2, 1e-2) << report.describe();
  EXPECT_GT(report.max_error, 0.0);  // it does round
  EXPECT_TRUE(report.passes()) << report.describe();
  for (int64_t t = 64; t < 128; ++t) {
    for (int d = 0; d < 64; ++d) EXPECT_EQ(c.naive[(t * 3 + 0) * 64 + d], 0.0f);
  }
}

TEST(Accuracy, NaiveFinePathEqualsTheBlockPathOnWholeBlocks) {
  const Case c = make_case(3);
  std::vector<float> fine(c.q.size(), std::numeric_limits<float>::quiet_NaN());  // poisoned
  attention_fine_bf16_naive(c.problem, FineMask::from_block(c.mask), c.q.data(), c.k.data(),
                            c.v.data(), fine.data());
  EXPECT_EQ(fine, c.naive);
}

TEST(Accuracy, NaiveFinePathIsCloseToFp64OnSingleKeys) {
  Case c = make_case(4);
  // About a third of each kept block's keys, and row 1 of head 0 still empty.
  const FineMask mask = thin_blocks(c.mask, 0.3, 4);
  std::vector<double> reference(c.q.size()), lse(300 * 3);
  auto widen = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  attention_fine<double>(c.problem, mask, widen(c.q).data(), widen(c.k).data(), widen(c.v).data(),
                         reference.data(), lse.data());
  std::vector<float> naive(c.q.size(), std::numeric_limits<float>::quiet_NaN());
  attention_fine_bf16_naive(c.problem, mask, c.q.data(), c.k.data(), c.v.data(), naive.data());
  const AccuracyReport report = compare_with_reference(naive, reference, naive);
  EXPECT_TRUE(report.finite);
  EXPECT_LT(report.relative_l2, 1e-2) << report.describe();
  EXPECT_GT(report.max_error, 0.0);
  for (int64_t t = 64; t < 128; ++t) {
    for (int d = 0; d < 64; ++d) EXPECT_EQ(naive[(t * 3 + 0) * 64 + d], 0.0f);
  }
  // A fine mask whose keys leave the local K/V is rejected, not read out of bounds.
  FineMask outside = FineMask::from_block(c.mask);
  std::vector<float> out(c.q.size());
  const AttentionProblem shorter = AttentionProblem::uniform(1, 300, 200, 3, 64);
  EXPECT_THROW(
      attention_fine_bf16_naive(shorter, outside, c.q.data(), c.k.data(), c.v.data(), out.data()),
      Error);
}

TEST(Accuracy, RuleRejectsNanDriftAndLargeRelativeError) {
  const Case c = make_case(2);
  std::vector<float> exact(c.reference.begin(), c.reference.end());
  EXPECT_TRUE(compare_with_reference(exact, c.reference, c.naive).passes());

  std::vector<float> with_nan = exact;
  with_nan[17] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(compare_with_reference(with_nan, c.reference, c.naive).passes());

  const double naive_max = compare_with_reference(c.naive, c.reference, c.naive).max_error;
  std::vector<float> drifted = exact;
  drifted[5] += static_cast<float>(3.0 * naive_max);  // one element 3x the naive error
  EXPECT_FALSE(compare_with_reference(drifted, c.reference, c.naive).passes());

  std::vector<float> scaled = exact;
  for (float& x : scaled) x *= 1.05f;  // 5% relative L2
  const AccuracyReport report = compare_with_reference(scaled, c.reference, c.naive);
  EXPECT_FALSE(report.passes()) << report.describe();
}

}  // namespace
}  // namespace dbsp
