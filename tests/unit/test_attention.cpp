// CPU attention (dense, block-sparse, fine, LSE merge) against a naive fp64 triple loop written
// here, on fresh random inputs with odd sizes, poisoned outputs, empty rows and permuted layouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "dbsp/attention.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/error.hpp"
#include "dbsp/fine_mask.hpp"

namespace dbsp {
namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

// Q, K, V of one problem, uniform in [-2, 2] (large enough that softmax rows are far from flat).
struct Inputs {
  std::vector<double> q, k, v;
};

Inputs random_inputs(const AttentionProblem& p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> value(-2.0, 2.0);
  auto fill = [&](int64_t count) {
    std::vector<double> data(count);
    for (double& x : data) x = value(rng);
    return data;
  };
  const int64_t q_count = p.batch * p.seq_q() * p.heads * p.head_dim;
  const int64_t k_count = p.batch * p.seq_k() * p.heads * p.head_dim;
  Inputs in;
  in.q = fill(q_count);
  in.k = fill(k_count);
  in.v = fill(k_count);
  return in;
}

template <class T>
std::vector<T> cast(const std::vector<double>& data) {
  return std::vector<T>(data.begin(), data.end());
}

// An attention result; the constructor poisons it with NaN so that unwritten entries fail.
template <class T>
struct Result {
  std::vector<T> out, lse;
  explicit Result(const AttentionProblem& p)
      : out(p.batch * p.seq_q() * p.heads * p.head_dim, std::numeric_limits<T>::quiet_NaN()),
        lse(p.batch * p.heads * p.seq_q(), std::numeric_limits<T>::quiet_NaN()) {}
};

// keep(head, query token, key token): whether the score enters the softmax.
using Keep = std::function<bool(int64_t, int64_t, int64_t)>;

// The definition (SPEC 1), one query row at a time: softmax over the kept scores only, O = 0 and
// LSE = -inf for a row with none. Arithmetic in `Real` (double: the reference; float: the error a
// plain fp32 implementation makes, to judge the fp32 kernels by), results stored as double.
template <class Real = double>
Result<double> naive_attention(const AttentionProblem& p, const Inputs& input, const Keep& keep) {
  Result<double> r(p);
  const int64_t sq = p.seq_q(), sk = p.seq_k(), h_count = p.heads, d = p.head_dim;
  const Real scale = static_cast<Real>(p.softmax_scale());
  struct {
    std::vector<Real> q, k, v;
  } in{cast<Real>(input.q), cast<Real>(input.k), cast<Real>(input.v)};
  const Real minus_inf = -std::numeric_limits<Real>::infinity();
  std::vector<Real> scores(sk), o(d);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < h_count; ++h) {
      for (int64_t t = 0; t < sq; ++t) {
        const Real* q = &in.q[((b * sq + t) * h_count + h) * d];
        Real max = minus_inf;
        for (int64_t s = 0; s < sk; ++s) {
          scores[s] = minus_inf;
          if (!keep(h, t, s)) continue;
          const Real* k = &in.k[((b * sk + s) * h_count + h) * d];
          Real dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += q[c] * k[c];
          scores[s] = dot * scale;
          max = std::max(max, scores[s]);
        }
        double* out = &r.out[((b * sq + t) * h_count + h) * d];
        double& lse = r.lse[(b * h_count + h) * sq + t];
        std::fill(out, out + d, 0.0);
        if (max == minus_inf) {
          lse = kMinusInf;
          continue;
        }
        std::fill(o.begin(), o.end(), Real(0));
        Real sum = 0;
        for (int64_t s = 0; s < sk; ++s) {
          if (scores[s] == minus_inf) continue;
          const Real weight = std::exp(scores[s] - max);
          sum += weight;
          const Real* v = &in.v[((b * sk + s) * h_count + h) * d];
          for (int64_t c = 0; c < d; ++c) o[c] += weight * v[c];
        }
        for (int64_t c = 0; c < d; ++c) out[c] = o[c] / sum;
        lse = max + std::log(sum);
      }
    }
  }
  return r;
}

// Block of each token of a layout.
std::vector<int> block_of_token(const BlockLayout& layout) {
  std::vector<int> block(layout.tokens());
  for (int b = 0; b < layout.blocks(); ++b) {
    for (int64_t t = layout.start[b]; t < layout.start[b + 1]; ++t) block[t] = b;
  }
  return block;
}

Keep block_keep(const AttentionProblem& p, const BlockMask& mask) {
  return [q_block = block_of_token(p.q_layout), k_block = block_of_token(p.k_layout), &mask](
             int64_t h, int64_t t, int64_t s) {
    return mask.get(static_cast<int>(h), q_block[t], k_block[s]);
  };
}

Keep fine_keep(const AttentionProblem& p, const FineMask& mask) {
  const int q_blocks = mask.q_blocks();
  auto kept = std::make_shared<std::vector<char>>(int64_t{mask.heads()} * q_blocks * p.seq_k(), 0);
  for (int h = 0; h < mask.heads(); ++h) {
    for (int i = 0; i < q_blocks; ++i) {
      for (int32_t key : mask.keys(h, i))
        (*kept)[(int64_t{h} * q_blocks + i) * p.seq_k() + key] = 1;
    }
  }
  return [q_block = block_of_token(p.q_layout), kept, q_blocks, sk = p.seq_k()](
             int64_t h, int64_t t, int64_t s) {
    return (*kept)[(h * q_blocks + q_block[t]) * sk + s] != 0;
  };
}

MaskGeometry geometry_of(const AttentionProblem& p, int block_q, int block_k) {
  return MaskGeometry{p.seq_q(), p.seq_k(), block_q, block_k};
}

BlockMask random_block_mask(int heads, MaskGeometry geometry, double density, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution keep(density);
  BlockMask mask(heads, geometry);
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < mask.q_blocks(); ++i) {
      for (int j = 0; j < mask.k_blocks(); ++j) mask.set(h, i, j, keep(rng));
    }
  }
  return mask;
}

// Per row a random share in [0, 0.6] of single keys; every fourth row of head 0 empty.
FineMask random_fine_mask(int heads, MaskGeometry geometry, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> share(0.0, 0.6);
  const int q_blocks = geometry.q_blocks();
  std::vector<int64_t> row_offset{0};
  std::vector<int32_t> keys;
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < q_blocks; ++i) {
      const double density = (h == 0 && i % 4 == 0) ? 0.0 : share(rng);
      std::bernoulli_distribution keep(density);
      for (int32_t s = 0; s < geometry.seq_k; ++s) {
        if (keep(rng)) keys.push_back(s);
      }
      row_offset.push_back(static_cast<int64_t>(keys.size()));
    }
  }
  return FineMask(heads, geometry, std::move(row_offset), std::move(keys));
}

// Largest |a - b| over entries; equal infinities (LSE of empty rows) count as 0, NaN as infinity.
template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    if (x == y) continue;
    const double diff = std::abs(x - y);
    worst = std::max(worst, std::isnan(diff) ? std::numeric_limits<double>::infinity() : diff);
  }
  return worst;
}

// ||a - b||_F / ||b||_F, infinite when a holds NaN.
template <class A>
double relative_error(const std::vector<A>& a, const std::vector<double>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]);
    if (std::isnan(x)) return std::numeric_limits<double>::infinity();
    diff += (x - b[i]) * (x - b[i]);
    norm += b[i] * b[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

template <class T>
void expect_matches(const Result<T>& got, const Result<double>& want, double tolerance) {
  EXPECT_LE(max_abs_diff(got.out, want.out), tolerance);
  EXPECT_LE(max_abs_diff(got.lse, want.lse), tolerance);
}

template <class T>
Result<T> run_dense(const AttentionProblem& p, const Inputs& in) {
  const auto q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v);
  Result<T> r(p);
  attention_dense<T>(p, q.data(), k.data(), v.data(), r.out.data(), r.lse.data());
  return r;
}

template <class T>
Result<T> run_block_sparse(const AttentionProblem& p, const BlockCsr& mask, const Inputs& in) {
  const auto q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v);
  Result<T> r(p);
  attention_block_sparse<T>(p, mask, q.data(), k.data(), v.data(), r.out.data(), r.lse.data());
  return r;
}

template <class T>
Result<T> run_fine(const AttentionProblem& p, const FineMask& mask, const Inputs& in) {
  const auto q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v);
  Result<T> r(p);
  attention_fine<T>(p, mask, q.data(), k.data(), v.data(), r.out.data(), r.lse.data());
  return r;
}

const Keep kKeepAll = [](int64_t, int64_t, int64_t) { return true; };

struct Shape {
  int64_t seq_q, seq_k, head_dim;
};

class DenseAttention : public ::testing::TestWithParam<Shape> {};

TEST_P(DenseAttention, MatchesNaiveReference) {
  const Shape s = GetParam();
  const auto p = AttentionProblem::uniform(2, s.seq_q, s.seq_k, 3, s.head_dim);
  const Inputs in = random_inputs(p, 1000 + s.seq_q * 7 + s.head_dim);
  expect_matches(run_dense<double>(p, in), naive_attention(p, in, kKeepAll), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Attention, DenseAttention,
                         ::testing::Values(Shape{1000, 1000, 16}, Shape{130, 130, 64},
                                           Shape{1, 1, 16}, Shape{1, 130, 64},
                                           Shape{130, 1000, 16}));

TEST(AttentionProblem, UniformLayoutsAndDefaultScale) {
  const auto p = AttentionProblem::uniform(2, 130, 70, 3, 16, 64, 32);
  EXPECT_EQ(p.q_layout, BlockLayout::uniform(130, 64));
  EXPECT_EQ(p.k_layout, BlockLayout::uniform(70, 32));
  EXPECT_EQ(p.seq_q(), 130);
  EXPECT_EQ(p.seq_k(), 70);
  EXPECT_DOUBLE_EQ(p.softmax_scale(), 0.25);
  auto scaled = p;
  scaled.scale = 0.3;
  EXPECT_DOUBLE_EQ(scaled.softmax_scale(), 0.3);
}

TEST(Attention, ExplicitScaleIsUsed) {
  auto p = AttentionProblem::uniform(1, 70, 90, 2, 16);
  p.scale = 0.7;
  const Inputs in = random_inputs(p, 5);
  expect_matches(run_dense<double>(p, in), naive_attention(p, in, kKeepAll), 1e-12);
}

// Query blocks larger than a tile of rows and key blocks larger than a tile of keys exercise the
// sub-tiling; a short last block on both sides.
TEST(BlockSparse, MatchesNaiveWithMaskedScoresRemoved) {
  for (auto [block_q, block_k] : {std::pair{64, 64}, std::pair{128, 96}, std::pair{32, 200}}) {
    const auto p = AttentionProblem::uniform(2, 1000, 700, 3, 16, block_q, block_k);
    const Inputs in = random_inputs(p, 11 + block_q);
    const BlockMask mask = random_block_mask(3, geometry_of(p, block_q, block_k), 0.4, 12);
    SCOPED_TRACE(testing::Message() << "blocks " << block_q << " x " << block_k);
    expect_matches(run_block_sparse<double>(p, mask.to_csr(), in),
                   naive_attention(p, in, block_keep(p, mask)), 1e-12);
  }
}

TEST(BlockSparse, FullMaskEqualsDense) {
  const auto p = AttentionProblem::uniform(2, 130, 1000, 3, 64, 64, 96);
  const Inputs in = random_inputs(p, 21);
  const BlockMask full(3, geometry_of(p, 64, 96), true);
  expect_matches(run_block_sparse<double>(p, full.to_csr(), in), naive_attention(p, in, kKeepAll),
                 1e-12);
  const auto dense = run_dense<double>(p, in);
  const auto sparse = run_block_sparse<double>(p, full.to_csr(), in);
  EXPECT_LE(max_abs_diff(sparse.out, dense.out), 1e-13);
  EXPECT_LE(max_abs_diff(sparse.lse, dense.lse), 1e-13);
}

TEST(BlockSparse, EmptyMaskGivesZerosAndMinusInfLse) {
  const auto p = AttentionProblem::uniform(2, 130, 130, 3, 16);
  const Inputs in = random_inputs(p, 31);
  const BlockMask empty(3, geometry_of(p, 64, 64), false);
  const auto r = run_block_sparse<float>(p, empty.to_csr(), in);
  for (float x : r.out) ASSERT_EQ(x, 0.0f);
  for (float x : r.lse) ASSERT_EQ(x, -std::numeric_limits<float>::infinity());
}

// No key tokens at all (K/V may then be null): every row is empty; no batch: nothing to do.
TEST(Attention, NoKeysGivesZerosAndMinusInfLse) {
  const auto p = AttentionProblem::uniform(2, 70, 0, 3, 16);
  const Inputs in = random_inputs(p, 35);
  Result<float> r(p);
  const auto q = cast<float>(in.q);
  attention_dense<float>(p, q.data(), nullptr, nullptr, r.out.data(), r.lse.data());
  for (float x : r.out) ASSERT_EQ(x, 0.0f);
  for (float x : r.lse) ASSERT_EQ(x, -std::numeric_limits<float>::infinity());
  const auto nobody = AttentionProblem::uniform(0, 70, 70, 3, 16);
  EXPECT_NO_THROW(attention_dense<float>(nobody, nullptr, nullptr, nullptr, nullptr, nullptr));
}

TEST(BlockSparse, EmptyRowsMixedWithFullRows) {
  const auto p = AttentionProblem::uniform(2, 1000, 1000, 3, 16);
  const Inputs in = random_inputs(p, 41);
  BlockMask mask(3, geometry_of(p, 64, 64), false);
  for (int h = 0; h < 3; ++h) {
    for (int i = (h + 1) % 2; i < mask.q_blocks(); i += 2) {
      for (int j = 0; j < mask.k_blocks(); ++j) mask.set(h, i, j);
    }
  }
  const auto got = run_block_sparse<double>(p, mask.to_csr(), in);
  const auto want = naive_attention(p, in, block_keep(p, mask));
  expect_matches(got, want, 1e-12);
  // The reference itself must show both kinds of row, or this test would prove nothing.
  EXPECT_EQ(std::count(want.lse.begin(), want.lse.end(), kMinusInf),
            2 * (8 * 64 + (7 * 64 + 40) + 8 * 64));
}

TEST(FineAttention, FromBlockEqualsBlockSparse) {
  const auto p = AttentionProblem::uniform(2, 1000, 700, 3, 16, 64, 64);
  const Inputs in = random_inputs(p, 51);
  const BlockMask mask = random_block_mask(3, geometry_of(p, 64, 64), 0.3, 52);
  const auto fine = run_fine<double>(p, FineMask::from_block(mask), in);
  const auto block = run_block_sparse<double>(p, mask.to_csr(), in);
  EXPECT_LE(max_abs_diff(fine.out, block.out), 1e-13);
  EXPECT_LE(max_abs_diff(fine.lse, block.lse), 1e-13);
}

TEST(FineAttention, RandomKeysMatchNaive) {
  for (int block_q : {64, 100}) {
    const auto p = AttentionProblem::uniform(2, 1000, 333, 3, 16, block_q, 64);
    const Inputs in = random_inputs(p, 61 + block_q);
    const FineMask mask = random_fine_mask(3, geometry_of(p, block_q, 64), 62);
    SCOPED_TRACE(testing::Message() << "block_q " << block_q);
    expect_matches(run_fine<double>(p, mask, in), naive_attention(p, in, fine_keep(p, mask)),
                   1e-12);
  }
}

// fp32 (fp32 accumulation) within 1e-4 relative Frobenius error of the fp64 path on every
// variant (the contract), and at most twice the error of a plain fp32 triple loop plus a small
// floor (so that a sloppy exp or sum cannot hide under the contract's tolerance).
TEST(AttentionPrecision, Fp32WithinRelativeErrorOfFp64AndOfNaiveFp32) {
  const auto p = AttentionProblem::uniform(2, 200, 700, 3, 64);
  const Inputs in = random_inputs(p, 71);
  const BlockMask mask = random_block_mask(3, geometry_of(p, 64, 64), 0.5, 72);
  const FineMask fine = random_fine_mask(3, geometry_of(p, 64, 64), 73);
  auto check = [](const Result<float>& got, const Result<double>& want,
                  const Result<double>& naive_fp32, const char* name) {
    SCOPED_TRACE(name);
    const double error = relative_error(got.out, want.out);
    EXPECT_LE(error, 1e-4);
    EXPECT_LE(error, 2 * relative_error(naive_fp32.out, want.out) + 1e-7);
    EXPECT_LE(max_abs_diff(got.lse, want.lse), 1e-4);
  };
  check(run_dense<float>(p, in), naive_attention(p, in, kKeepAll),
        naive_attention<float>(p, in, kKeepAll), "dense");
  check(run_block_sparse<float>(p, mask.to_csr(), in), naive_attention(p, in, block_keep(p, mask)),
        naive_attention<float>(p, in, block_keep(p, mask)), "block sparse");
  check(run_fine<float>(p, fine, in), naive_attention(p, in, fine_keep(p, fine)),
        naive_attention<float>(p, in, fine_keep(p, fine)), "fine");
}

// Key blocks split into two disjoint random halves (some rows empty in one half or in both);
// attention over each half merged through LSE equals attention over their union.
template <class T>
void check_merge_of_disjoint_halves(double tolerance) {
  const auto p = AttentionProblem::uniform(2, 1000, 1000, 3, 16);
  const Inputs in = random_inputs(p, 81);
  const MaskGeometry geometry = geometry_of(p, 64, 64);
  BlockMask first(3, geometry), second(3, geometry), both(3, geometry);
  std::mt19937_64 rng(82);
  std::uniform_int_distribution<int> pick(0, 2);  // 0: neither, 1: first, 2: second
  for (int h = 0; h < 3; ++h) {
    for (int i = 0; i < geometry.q_blocks(); ++i) {
      const int row_kind = i % 4;  // 0: random, 1: only first, 2: only second, 3: none
      for (int j = 0; j < geometry.k_blocks(); ++j) {
        const int side = row_kind == 0 ? pick(rng) : (row_kind == 3 ? 0 : row_kind);
        if (side == 1) first.set(h, i, j);
        if (side == 2) second.set(h, i, j);
        if (side != 0) both.set(h, i, j);
      }
    }
  }
  auto merged = run_block_sparse<T>(p, first.to_csr(), in);
  const auto part = run_block_sparse<T>(p, second.to_csr(), in);
  merge_partial<T>(p.batch, p.seq_q(), p.heads, p.head_dim, merged.out.data(), merged.lse.data(),
                   part.out.data(), part.lse.data());
  const auto want = naive_attention(p, in, block_keep(p, both));
  EXPECT_LE(max_abs_diff(merged.out, want.out), tolerance);
  EXPECT_LE(max_abs_diff(merged.lse, want.lse), tolerance);
  EXPECT_GT(std::count(want.lse.begin(), want.lse.end(), kMinusInf), 0);
}

TEST(MergePartial, DisjointKeyHalvesEqualOneShotFp64) {
  check_merge_of_disjoint_halves<double>(1e-12);
}
TEST(MergePartial, DisjointKeyHalvesEqualOneShotFp32) {
  check_merge_of_disjoint_halves<float>(1e-4);
}

TEST(MergePartial, EmptyPartLeavesResultAndEmptyAccumulatorTakesPart) {
  const auto p = AttentionProblem::uniform(1, 130, 130, 3, 16);
  const Inputs in = random_inputs(p, 91);
  const auto dense = run_dense<double>(p, in);
  const BlockMask empty(3, geometry_of(p, 64, 64), false);
  const auto nothing = run_block_sparse<double>(p, empty.to_csr(), in);

  auto acc = dense;
  merge_partial<double>(1, 130, 3, 16, acc.out.data(), acc.lse.data(), nothing.out.data(),
                        nothing.lse.data());
  EXPECT_EQ(acc.out, dense.out);
  EXPECT_EQ(acc.lse, dense.lse);

  auto from_empty = nothing;
  merge_partial<double>(1, 130, 3, 16, from_empty.out.data(), from_empty.lse.data(),
                        dense.out.data(), dense.lse.data());
  EXPECT_EQ(from_empty.out, dense.out);
  EXPECT_EQ(from_empty.lse, dense.lse);

  auto still_empty = nothing;
  merge_partial<double>(1, 130, 3, 16, still_empty.out.data(), still_empty.lse.data(),
                        nothing.out.data(), nothing.lse.data());
  for (double x : still_empty.out) ASSERT_EQ(x, 0.0);
  for (double x : still_empty.lse) ASSERT_EQ(x, kMinusInf);
}

// A ring runtime may start its accumulator as LSE = -inf over an unwritten output buffer: merging
// must then take the part where it has keys and give zeros where neither side has any.
TEST(MergePartial, AccumulatorWithMinusInfLseIgnoresItsOutputValues) {
  const auto p = AttentionProblem::uniform(1, 130, 130, 3, 16);
  const Inputs in = random_inputs(p, 95);
  BlockMask half(3, geometry_of(p, 64, 64), false);
  for (int j = 0; j < half.k_blocks(); ++j) half.set(1, 0, j);  // only head 1, query block 0
  const auto part = run_block_sparse<double>(p, half.to_csr(), in);
  Result<double> acc(p);  // NaN everywhere
  std::fill(acc.lse.begin(), acc.lse.end(), kMinusInf);
  merge_partial<double>(1, 130, 3, 16, acc.out.data(), acc.lse.data(), part.out.data(),
                        part.lse.data());
  EXPECT_EQ(acc.out, part.out);
  EXPECT_EQ(acc.lse, part.lse);
}

// Copies token blocks of a [batch, seq, heads, head_dim] tensor into the order of `blocks`.
std::vector<double> gather_tokens(const std::vector<double>& data, int64_t batch,
                                  const BlockLayout& base, const std::vector<int>& blocks,
                                  int64_t row_size) {
  std::vector<double> gathered;
  gathered.reserve(data.size());
  for (int64_t b = 0; b < batch; ++b) {
    for (int block : blocks) {
      const auto first = data.begin() + (b * base.tokens() + base.start[block]) * row_size;
      gathered.insert(gathered.end(), first, first + base.size(block) * row_size);
    }
  }
  return gathered;
}

// Original token index of each token of the gathered order.
std::vector<int64_t> gathered_token_origin(const BlockLayout& base,
                                           const std::vector<int>& blocks) {
  std::vector<int64_t> origin;
  for (int block : blocks) {
    for (int64_t t = base.start[block]; t < base.start[block + 1]; ++t) origin.push_back(t);
  }
  return origin;
}

// db-SP shards hold blocks in a permuted order with the short last block anywhere: attention on
// the permuted tensors and layouts equals attention in the original order, token by token.
TEST(AttentionLayout, GatheredBlocksMatchOriginalOrder) {
  const int64_t batch = 2, heads = 3, dim = 16;
  const auto p = AttentionProblem::uniform(batch, 1000, 900, heads, dim);  // short blocks 40, 4
  const Inputs in = random_inputs(p, 101);
  const BlockMask mask = random_block_mask(3, geometry_of(p, 64, 64), 0.5, 102);

  std::vector<int> q_order(p.q_layout.blocks()), k_order(p.k_layout.blocks());
  std::iota(q_order.begin(), q_order.end(), 0);
  std::iota(k_order.begin(), k_order.end(), 0);
  std::mt19937_64 rng(103);
  std::shuffle(q_order.begin(), q_order.end(), rng);
  std::shuffle(k_order.begin(), k_order.end(), rng);
  // Put the short last blocks in the middle of the shard.
  std::swap(*std::find(q_order.begin(), q_order.end(), p.q_layout.blocks() - 1), q_order[5]);
  std::swap(*std::find(k_order.begin(), k_order.end(), p.k_layout.blocks() - 1), k_order[7]);

  AttentionProblem permuted = p;
  permuted.q_layout = BlockLayout::gather(p.q_layout, q_order);
  permuted.k_layout = BlockLayout::gather(p.k_layout, k_order);
  Inputs moved;
  moved.q = gather_tokens(in.q, batch, p.q_layout, q_order, heads * dim);
  moved.k = gather_tokens(in.k, batch, p.k_layout, k_order, heads * dim);
  moved.v = gather_tokens(in.v, batch, p.k_layout, k_order, heads * dim);
  std::vector<int> all_heads{0, 1, 2};
  const BlockMask moved_mask = mask.slice(all_heads, q_order, k_order);

  const auto want = naive_attention(p, in, block_keep(p, mask));
  const auto q_origin = gathered_token_origin(p.q_layout, q_order);
  const auto k_origin = gathered_token_origin(p.k_layout, k_order);
  // Fine mask of the permuted shard: local key tokens of every kept key block.
  const FineMask fine = [&] {
    std::vector<int64_t> row_offset{0};
    std::vector<int32_t> keys;
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < moved_mask.q_blocks(); ++i) {
        for (int j = 0; j < moved_mask.k_blocks(); ++j) {
          if (!moved_mask.get(h, i, j)) continue;
          for (int64_t s = permuted.k_layout.start[j]; s < permuted.k_layout.start[j + 1]; ++s) {
            keys.push_back(static_cast<int32_t>(s));
          }
        }
        std::sort(keys.begin() + row_offset.back(), keys.end());
        row_offset.push_back(static_cast<int64_t>(keys.size()));
      }
    }
    MaskGeometry geometry{moved_mask.q_blocks() * 64, p.seq_k(), 64, 64};
    return FineMask(heads, geometry, std::move(row_offset), std::move(keys));
  }();
  const auto block_result = run_block_sparse<double>(permuted, moved_mask.to_csr(), moved);
  const auto fine_result = run_fine<double>(permuted, fine, moved);

  for (const auto* got : {&block_result, &fine_result}) {
    double worst = 0;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < p.seq_q(); ++t) {
        const int64_t t0 = q_origin[t];
        for (int64_t h = 0; h < heads; ++h) {
          const double lse = got->lse[(b * heads + h) * p.seq_q() + t];
          const double lse0 = want.lse[(b * heads + h) * p.seq_q() + t0];
          if (lse != lse0) worst = std::max(worst, std::abs(lse - lse0));
          for (int64_t c = 0; c < dim; ++c) {
            const double x = got->out[((b * p.seq_q() + t) * heads + h) * dim + c];
            const double x0 = want.out[((b * p.seq_q() + t0) * heads + h) * dim + c];
            worst = std::max(worst, std::isnan(x) ? 1e300 : std::abs(x - x0));
          }
        }
      }
    }
    EXPECT_LE(worst, 1e-12) << (got == &block_result ? "block sparse" : "fine");
  }
  EXPECT_NE(k_origin.front(), 0);  // the key order really moved
}

TEST(AttentionBadInput, MaskShapeMismatchesThrow) {
  const auto p = AttentionProblem::uniform(1, 130, 130, 3, 16);
  const Inputs in = random_inputs(p, 111);
  const BlockMask wrong_heads(2, geometry_of(p, 64, 64), true);
  EXPECT_THROW(run_block_sparse<double>(p, wrong_heads.to_csr(), in), Error);
  const BlockMask wrong_blocks(3, MaskGeometry{130, 130, 32, 64}, true);
  EXPECT_THROW(run_block_sparse<double>(p, wrong_blocks.to_csr(), in), Error);
  const BlockMask wrong_k_blocks(3, MaskGeometry{130, 200, 64, 64}, true);
  EXPECT_THROW(run_block_sparse<double>(p, wrong_k_blocks.to_csr(), in), Error);

  BlockCsr out_of_range = BlockMask(3, geometry_of(p, 64, 64), true).to_csr();
  out_of_range.kv_index[4] = 3;
  EXPECT_THROW(run_block_sparse<double>(p, out_of_range, in), Error);
  BlockCsr negative = BlockMask(3, geometry_of(p, 64, 64), true).to_csr();
  negative.kv_index[0] = -1;
  EXPECT_THROW(run_block_sparse<double>(p, negative, in), Error);
  BlockCsr unsorted = BlockMask(3, geometry_of(p, 64, 64), true).to_csr();
  std::swap(unsorted.kv_index[0], unsorted.kv_index[1]);
  EXPECT_THROW(run_block_sparse<double>(p, unsorted, in), Error);
  BlockCsr bad_count = BlockMask(3, geometry_of(p, 64, 64), true).to_csr();
  bad_count.kv_count[2] = 1;
  EXPECT_THROW(run_block_sparse<double>(p, bad_count, in), Error);

  // Keys valid for the mask's own geometry (seq_k 300) but not for this problem (seq_k 130).
  const FineMask too_long =
      FineMask::from_block(BlockMask(3, MaskGeometry{130, 300, 64, 64}, true));
  EXPECT_THROW(run_fine<double>(p, too_long, in), Error);
  const FineMask wrong_q_blocks = FineMask::from_block(BlockMask(3, MaskGeometry{300, 130}, true));
  EXPECT_THROW(run_fine<double>(p, wrong_q_blocks, in), Error);
}

TEST(AttentionBadInput, NullPointersAndBadScaleThrow) {
  const auto p = AttentionProblem::uniform(1, 130, 130, 3, 16);
  const Inputs in = random_inputs(p, 121);
  Result<double> r(p);
  EXPECT_THROW(
      attention_dense<double>(p, nullptr, in.k.data(), in.v.data(), r.out.data(), r.lse.data()),
      Error);
  EXPECT_THROW(
      attention_dense<double>(p, in.q.data(), in.k.data(), nullptr, r.out.data(), r.lse.data()),
      Error);
  EXPECT_THROW(
      attention_dense<double>(p, in.q.data(), in.k.data(), in.v.data(), r.out.data(), nullptr),
      Error);
  for (double scale :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    auto bad = p;
    bad.scale = scale;
    EXPECT_THROW(run_dense<double>(bad, in), Error);
  }
  auto broken_layout = p;
  broken_layout.k_layout.start = {0, 64, 32, 130};
  EXPECT_THROW(run_dense<double>(broken_layout, in), Error);
  EXPECT_THROW(
      merge_partial<double>(1, 130, 3, 16, r.out.data(), nullptr, r.out.data(), r.lse.data()),
      Error);
}

TEST(CheckFinite, NamesTensorAndFirstBadIndex) {
  std::vector<float> data(1000, 1.0f);
  EXPECT_NO_THROW(check_finite(data.data(), 1000, "q"));
  data[617] = std::numeric_limits<float>::infinity();
  data[800] = std::numeric_limits<float>::quiet_NaN();
  try {
    check_finite(data.data(), 1000, "value tensor");
    FAIL() << "expected dbsp::Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("value tensor"), std::string::npos) << message;
    EXPECT_NE(message.find("617"), std::string::npos) << message;
  }
  std::vector<double> nan_first(10, 0.0);
  nan_first[3] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(check_finite(nan_first.data(), 10, "k"), Error);
  EXPECT_THROW(check_finite<double>(nullptr, 10, "k"), Error);
}

// NaN in an input must surface in the output, never be silently dropped by the max or the mask.
TEST(Attention, NanInputPropagatesToItsRows) {
  const auto p = AttentionProblem::uniform(1, 70, 70, 2, 16);
  Inputs in = random_inputs(p, 131);
  in.k[(5 * 2 + 1) * 16 + 3] = std::numeric_limits<double>::quiet_NaN();  // token 5, head 1
  const auto r32 = run_dense<float>(p, in);
  const auto r64 = run_dense<double>(p, in);
  for (int64_t t = 0; t < 70; ++t) {
    EXPECT_TRUE(std::isnan(r32.out[(t * 2 + 1) * 16])) << t;
    EXPECT_TRUE(std::isnan(r64.out[(t * 2 + 1) * 16])) << t;
    EXPECT_FALSE(std::isnan(r32.out[(t * 2 + 0) * 16])) << t;
  }
}

}  // namespace
}  // namespace dbsp
