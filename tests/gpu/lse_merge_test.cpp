// GPU tests of the LSE merge kernel: the float64 merge formula on random partials (empty rows
// included), and two disjoint key halves merged equal one attention over both.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "dbsp/cuda_attention.hpp"
#include "gpu_support.hpp"

namespace dbsp::gpu_test {
namespace {

class MergePartial : public ::testing::Test {
 protected:
  void SetUp() override { DBSP_SKIP_WITHOUT_GPU(); }
};

TEST_F(MergePartial, MatchesFloat64FormulaIncludingEmptyParts) {
  const int64_t batch = 2, seq = 131, heads = 3, head_dim = 64;
  const int64_t rows = batch * seq * heads;
  std::mt19937_64 rng(31);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> out(rows * head_dim), part(rows * head_dim);
  for (auto& x : out) x = normal(rng);
  for (auto& x : part) x = normal(rng);
  const HostTensor part_bf16 = random_tensor(rows * head_dim, cuda::DType::bf16, rng);
  std::vector<float> lse(rows), part_lse(rows);
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    lse[r] = r % 7 == 0 ? -inf : 3.f * normal(rng);
    part_lse[r] = r % 5 == 0 ? -inf : 3.f * normal(rng);
  }
  for (const bool bf16_part : {false, true}) {
    DeviceArray<float> d_out(out), d_lse(lse), d_part(part), d_part_lse(part_lse);
    DeviceArray<uint16_t> d_part_bf16(part_bf16.bits);
    cuda::merge_partial(batch, seq, static_cast<int>(heads), static_cast<int>(head_dim),
                        cuda::DType::fp32, d_out.get(), d_lse.get(),
                        bf16_part ? cuda::DType::bf16 : cuda::DType::fp32,
                        bf16_part ? static_cast<const void*>(d_part_bf16.get()) : d_part.get(),
                        d_part_lse.get(), nullptr);
    const std::vector<float> got = d_out.download();
    const std::vector<float> got_lse = d_lse.download();
    const std::vector<float>& part_values = bf16_part ? part_bf16.values : part;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < seq; ++t)
        for (int64_t h = 0; h < heads; ++h) {
          const int64_t lse_index = (b * heads + h) * seq + t;
          const int64_t row = (b * seq + t) * heads + h;
          const double a = lse[lse_index], p = part_lse[lse_index];
          const double m = std::max(a, p);
          double wa = 0, wp = 0, merged = -std::numeric_limits<double>::infinity();
          if (!std::isinf(m)) {
            wa = std::exp(a - m);
            wp = std::exp(p - m);
            merged = m + std::log(wa + wp);
            const double total = wa + wp;
            wa /= total;
            wp /= total;
          }
          if (std::isinf(merged))
            ASSERT_TRUE(std::isinf(got_lse[lse_index]) && got_lse[lse_index] < 0);
          else
            ASSERT_NEAR(got_lse[lse_index], merged, 1e-5 * (1 + std::abs(merged)));
          for (int64_t c = 0; c < head_dim; ++c) {
            const double want = wa * out[row * head_dim + c] + wp * part_values[row * head_dim + c];
            ASSERT_NEAR(got[row * head_dim + c], want, 1e-5 * (1 + std::abs(want)))
                << "row " << row << " channel " << c;
          }
        }
  }
}

TEST_F(MergePartial, TwoDisjointKeyHalvesEqualOneAttentionOverBoth) {
  std::mt19937_64 rng(32);
  Problem p;
  p.seq_q = 500;
  p.seq_k = 700;
  p.heads = 2;
  p.head_dim = 128;
  const size_t q_count = static_cast<size_t>(p.seq_q * p.heads * p.head_dim);
  const size_t k_count = static_cast<size_t>(p.seq_k * p.heads * p.head_dim);
  const HostTensor q = random_tensor(q_count, p.dtype, rng);
  const HostTensor k = random_tensor(k_count, p.dtype, rng);
  const HostTensor v = random_tensor(k_count, p.dtype, rng);
  HostMask both = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
  fill_random_blocks(both, 0.6, rng, /*empty_every=*/5);
  // Half A: even positions of each row's list; half B: the rest (some rows empty in one half).
  HostMask half_a = both, half_b = both;
  for (size_t r = 0; r < both.blocks.size(); ++r) {
    half_a.blocks[r].clear();
    half_b.blocks[r].clear();
    for (size_t i = 0; i < both.blocks[r].size(); ++i)
      (i % 2 == 0 ? half_a : half_b).blocks[r].push_back(both.blocks[r][i]);
  }
  DeviceArray<uint16_t> dq(q.bits), dk(k.bits), dv(v.bits), d_out_b(q_count), d_out_a(q_count);
  DeviceArray<float> d_acc(q_count), d_lse(p.seq_q * p.heads), d_lse_b(p.seq_q * p.heads);
  cuda::SparseAttention attention(p.shape(), 64);
  DeviceMaskStorage mask_a = upload_mask(half_a), mask_b = upload_mask(half_b);
  attention.plan(mask_a.view, nullptr);
  attention.run(mask_a.view, dq.get(), dk.get(), dv.get(), d_out_a.get(), d_lse.get(), nullptr);
  attention.plan(mask_b.view, nullptr);
  attention.run(mask_b.view, dq.get(), dk.get(), dv.get(), d_out_b.get(), d_lse_b.get(), nullptr);
  // fp32 accumulator starting from half A's output.
  std::vector<float> acc(q_count);
  const std::vector<uint16_t> out_a = d_out_a.download();
  for (size_t i = 0; i < q_count; ++i) acc[i] = from_half_bits(out_a[i], p.dtype);
  d_acc.upload(acc);
  cuda::merge_partial(1, p.seq_q, p.heads, p.head_dim, cuda::DType::fp32, d_acc.get(), d_lse.get(),
                      p.dtype, d_out_b.get(), d_lse_b.get(), nullptr);
  const std::vector<float> merged = d_acc.download();
  std::vector<uint16_t> merged_bits(q_count);
  for (size_t i = 0; i < q_count; ++i) merged_bits[i] = to_half_bits(merged[i], p.dtype);
  const ErrorReport report =
      compare_with_reference(p, both, q, k, v, merged_bits, d_lse.download());
  // Each half's output is rounded to bf16 before the merge, one rounding more than one pass.
  EXPECT_EQ(report.nonfinite_outputs, 0) << report.describe();
  EXPECT_LE(report.ours_max, 3 * report.naive_max + 1e-5) << report.describe();
  EXPECT_LE(report.ours_rel_l2, 3 * report.naive_rel_l2) << report.describe();
  EXPECT_LE(report.lse_max, 2e-3) << report.describe();
  EXPECT_EQ(report.lse_infinite_mismatch, 0) << report.describe();
}

}  // namespace
}  // namespace dbsp::gpu_test
