// GPU tests of mask estimation: the device top-p lists against a float64 implementation of SPEC
// 1a (differences allowed only where the float64 cut itself is within rounding of tau),
// determinism, and the estimated lists feeding the sparse kernel with no host round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "dbsp/cuda_attention.hpp"
#include "dbsp/estimate.hpp"
#include "gpu_support.hpp"

namespace dbsp::gpu_test {
namespace {

class MaskEstimation : public ::testing::Test {
 protected:
  void SetUp() override { DBSP_SKIP_WITHOUT_GPU(); }
};

// Tokens = noise + a strong per-block direction, so pooled scores are far from uniform.
HostTensor structured_tensor(int64_t seq, int heads, int head_dim, int block, cuda::DType dtype,
                             std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  const int64_t blocks = (seq + block - 1) / block;
  std::vector<float> direction(static_cast<size_t>(blocks * heads * head_dim));
  for (auto& x : direction) x = 1.5f * normal(rng);
  HostTensor t;
  t.values.resize(static_cast<size_t>(seq * heads * head_dim));
  t.bits.resize(t.values.size());
  for (int64_t s = 0; s < seq; ++s)
    for (int h = 0; h < heads; ++h)
      for (int c = 0; c < head_dim; ++c) {
        const size_t i = static_cast<size_t>((s * heads + h) * head_dim + c);
        const float x = normal(rng) + direction[((s / block) * heads + h) * head_dim + c];
        t.bits[i] = to_half_bits(x, dtype);
        t.values[i] = from_half_bits(t.bits[i], dtype);
      }
  return t;
}

struct ReferenceRow {
  std::vector<int> kept;            // ascending
  std::vector<double> mass_before;  // per entry: sorted mass before it
};

// The scaled score of a pooled query against one key (or pooled key) row, in float64.
template <class Key>
double reference_score(const double* query, const Key* key, int head_dim) {
  double dot = 0;
  for (int c = 0; c < head_dim; ++c) dot += query[c] * key[c];
  return dot * (1.0 / std::sqrt(static_cast<double>(head_dim)));
}

// Float64 top-p of one row of scores (SPEC 1a): entries ranked (score desc, index asc) are kept
// while the mass ranked before them is below tau; `kept` comes in holding the entries kept anyway.
ReferenceRow reference_top_p(std::vector<double> score, double tau, std::vector<char> kept) {
  const double m = *std::max_element(score.begin(), score.end());
  double sum = 0;
  for (double& x : score) sum += (x = std::exp(x - m));
  std::vector<int> order(score.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
  ReferenceRow row;
  row.mass_before.resize(score.size());
  double before = 0;
  for (int j : order) {
    row.mass_before[j] = before;
    if (before < tau) kept[j] = 1;
    before += score[j] / sum;
  }
  for (size_t j = 0; j < kept.size(); ++j)
    if (kept[j]) row.kept.push_back(static_cast<int>(j));
  return row;
}

ReferenceRow reference_row(const std::vector<double>& pooled_q, const std::vector<double>& pooled_k,
                           int head, int q_block, int q_blocks, int k_blocks, int head_dim,
                           const cuda::EstimateConfig& config) {
  std::vector<double> score(k_blocks);
  const double* qp = pooled_q.data() + (int64_t{head} * q_blocks + q_block) * head_dim;
  for (int j = 0; j < k_blocks; ++j)
    score[j] =
        reference_score(qp, pooled_k.data() + (int64_t{head} * k_blocks + j) * head_dim, head_dim);
  std::vector<char> kept(k_blocks, 0);
  if (config.keep_diagonal && q_block < k_blocks) kept[q_block] = 1;
  for (int sink : config.sink_blocks)
    if (sink < k_blocks) kept[sink] = 1;
  return reference_top_p(std::move(score), config.tau, std::move(kept));
}

std::vector<double> pooled(const HostTensor& x, int64_t seq, int heads, int head_dim, int block) {
  const int64_t blocks = (seq + block - 1) / block;
  std::vector<double> out(static_cast<size_t>(heads * blocks * head_dim), 0.0);
  for (int h = 0; h < heads; ++h)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t end = std::min(seq, (b + 1) * block);
      for (int64_t s = b * block; s < end; ++s)
        for (int c = 0; c < head_dim; ++c)
          out[(h * blocks + b) * head_dim + c] += x.values[(s * heads + h) * head_dim + c];
      for (int c = 0; c < head_dim; ++c)
        out[(h * blocks + b) * head_dim + c] /= double(end - b * block);
    }
  return out;
}

// The estimator's lists (block or key lists alike: fixed-capacity rows), on the host.
struct EstimatedLists {
  std::vector<int32_t> count, index;
  std::vector<int64_t> offset;

  std::vector<int32_t> row(size_t r) const {
    return {index.begin() + offset[r], index.begin() + offset[r] + count[r]};
  }
};

EstimatedLists download_lists(const int32_t* count, const int64_t* offset, const int32_t* index,
                              size_t rows, int64_t row_capacity) {
  EstimatedLists lists;
  lists.count.resize(rows);
  lists.offset.resize(rows);
  lists.index.resize(rows * row_capacity);
  check_cuda(cudaDeviceSynchronize(), "estimate");
  check_cuda(cudaMemcpy(lists.count.data(), count, rows * 4, cudaMemcpyDeviceToHost), "dl");
  check_cuda(cudaMemcpy(lists.offset.data(), offset, rows * 8, cudaMemcpyDeviceToHost), "dl");
  check_cuda(cudaMemcpy(lists.index.data(), index, lists.index.size() * 4, cudaMemcpyDeviceToHost),
             "dl");
  return lists;
}

EstimatedLists download(const cuda::MaskEstimator& estimator, int heads) {
  const cuda::DeviceMask mask = estimator.mask();
  return download_lists(mask.kv_count, mask.block_row_offset, mask.kv_index,
                        static_cast<size_t>(heads) * estimator.q_blocks(), estimator.k_blocks());
}

EstimatedLists download_fine(const cuda::MaskEstimator& estimator, int heads, int64_t seq_k) {
  const cuda::DeviceMask mask = estimator.fine_mask();
  return download_lists(mask.key_count, mask.key_row_offset, mask.key_index,
                        static_cast<size_t>(heads) * estimator.q_blocks(), seq_k);
}

// Every row of `got` against `reference(head, q_block)`: lists in place at row * row_capacity,
// ascending, and differing from the float64 lists only where its cut is within rounding of tau.
// Counts those borderline entries and the kept entries.
template <class Reference>
void compare_with_float64(const EstimatedLists& got, int heads, int q_blocks, int64_t row_capacity,
                          double tau, const Reference& reference, int64_t& borderline,
                          int64_t& kept_total) {
  borderline = kept_total = 0;
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < q_blocks; ++i) {
      const int row = h * q_blocks + i;
      ASSERT_EQ(got.offset[row], row * row_capacity);
      const std::vector<int> have = got.row(row);
      ASSERT_TRUE(std::is_sorted(have.begin(), have.end()));
      const ReferenceRow want = reference(h, i);
      kept_total += static_cast<int64_t>(have.size());
      std::vector<int> differ;
      std::set_symmetric_difference(have.begin(), have.end(), want.kept.begin(), want.kept.end(),
                                    std::back_inserter(differ));
      for (int j : differ) {
        ASSERT_NEAR(want.mass_before[j], tau, 1e-4)
            << "head " << h << " query block " << i << " entry " << j
            << " differs from the float64 top-p far from the cut";
        ++borderline;
      }
    }
}

TEST_F(MaskEstimation, TopPListsMatchFloat64ReferenceAwayFromTheCut) {
  std::mt19937_64 rng(41);
  const int64_t seq = 3000;  // 47 blocks, the last one short
  const int heads = 3, head_dim = 128;
  cuda::EstimateConfig config;
  config.tau = 0.9;
  config.sink_blocks = {0, 5};
  const HostTensor q = structured_tensor(seq, heads, head_dim, 64, cuda::DType::bf16, rng);
  const HostTensor k = structured_tensor(seq, heads, head_dim, 64, cuda::DType::bf16, rng);
  DeviceArray<uint16_t> dq(q.bits), dk(k.bits);
  cuda::MaskEstimator estimator(seq, seq, heads, head_dim, cuda::DType::bf16, config);
  estimator.estimate(dq.get(), dk.get(), nullptr);
  const EstimatedLists got = download(estimator, heads);

  const int qb = estimator.q_blocks(), kb = estimator.k_blocks();
  const std::vector<double> pq = pooled(q, seq, heads, head_dim, 64);
  const std::vector<double> pk = pooled(k, seq, heads, head_dim, 64);
  int64_t borderline = 0, kept_total = 0;
  ASSERT_NO_FATAL_FAILURE(compare_with_float64(
      got, heads, qb, kb, config.tau,
      [&](int h, int i) { return reference_row(pq, pk, h, i, qb, kb, head_dim, config); },
      borderline, kept_total));
  EXPECT_LE(borderline, 3);
  // Structured inputs give a real selection: neither almost empty nor almost dense.
  const double density = double(kept_total) / (double(heads) * qb * kb);
  EXPECT_GT(density, 0.05);
  EXPECT_LT(density, 0.8);

  // Same inputs, same lists (fixed reduction orders).
  estimator.estimate(dq.get(), dk.get(), nullptr);
  const EstimatedLists again = download(estimator, heads);
  EXPECT_EQ(again.count, got.count);
  EXPECT_EQ(again.index, got.index);
}

// Self attention over structured Q and K and random V, on the device (outputs poisoned), for the
// tests that feed estimated lists to the sparse kernel.
struct AttentionInputs {
  Problem p;
  HostTensor q, k, v;
  DeviceArray<uint16_t> dq, dk, dv, dout;
  DeviceArray<float> dlse;

  AttentionInputs(int64_t seq, int heads, int head_dim, std::mt19937_64& rng)
      : p{.seq_q = seq, .seq_k = seq, .heads = heads, .head_dim = head_dim},
        q(structured_tensor(seq, heads, head_dim, 64, p.dtype, rng)),
        k(structured_tensor(seq, heads, head_dim, 64, p.dtype, rng)),
        v(random_tensor(k.values.size(), p.dtype, rng)),
        dq(q.bits),
        dk(k.bits),
        dv(v.bits),
        dout(q.bits.size()),
        dlse(static_cast<size_t>(seq * heads)) {
    dout.poison();
    dlse.poison();
  }

  void run(cuda::SparseAttention& attention, const cuda::DeviceMask& mask) {
    attention.plan(mask, nullptr);
    attention.run(mask, dq.get(), dk.get(), dv.get(), dout.get(), dlse.get(), nullptr);
  }

  void expect_matches_reference(const HostMask& mask) {
    expect_within_naive_bound(
        compare_with_reference(p, mask, q, k, v, dout.download(), dlse.download()));
  }
};

TEST_F(MaskEstimation, EstimatedListsDriveSparseAttentionOnTheDevice) {
  std::mt19937_64 rng(42);
  AttentionInputs in(2000, 2, 64, rng);
  const Problem& p = in.p;
  cuda::MaskEstimator estimator(p.seq_q, p.seq_k, p.heads, p.head_dim, p.dtype, {});
  cuda::SparseAttention attention(p.shape(), 64);
  estimator.estimate(in.dq.get(), in.dk.get(), nullptr);
  in.run(attention, estimator.mask());

  const EstimatedLists lists = download(estimator, p.heads);
  HostMask mask = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
  for (size_t r = 0; r < mask.blocks.size(); ++r) mask.blocks[r] = lists.row(r);
  in.expect_matches_reference(mask);
}

// Float64 fine (M x 1) reference for one query block: every key scored by the pooled query,
// ranked (score desc, index asc); per key the mass ranked before it.
ReferenceRow reference_fine_row(const std::vector<double>& pooled_q, const HostTensor& k,
                                int64_t seq, int heads, int head, int q_block, int q_blocks,
                                int head_dim, const cuda::EstimateConfig& config) {
  const double* qp = pooled_q.data() + (int64_t{head} * q_blocks + q_block) * head_dim;
  std::vector<double> score(seq);
  for (int64_t j = 0; j < seq; ++j)
    score[j] = reference_score(qp, k.values.data() + (j * heads + head) * head_dim, head_dim);
  std::vector<char> kept(seq, 0);
  const int64_t blocks = (seq + 63) / 64;
  auto keep_block = [&](int64_t b) {
    if (b < 0 || b >= blocks) return;
    for (int64_t j = b * 64; j < std::min(seq, (b + 1) * 64); ++j) kept[j] = 1;
  };
  if (config.keep_diagonal) keep_block(q_block);
  for (int sink : config.sink_blocks) keep_block(sink);
  return reference_top_p(std::move(score), config.tau, std::move(kept));
}

TEST_F(MaskEstimation, FineTopPListsMatchFloat64ReferenceAwayFromTheCut) {
  std::mt19937_64 rng(43);
  const int64_t seq = 1000;  // 16 blocks, the last one short
  const int heads = 2, head_dim = 64;
  cuda::EstimateConfig config;
  config.tau = 0.8;
  config.sink_blocks = {0, 9};
  const HostTensor q = structured_tensor(seq, heads, head_dim, 64, cuda::DType::bf16, rng);
  const HostTensor k = structured_tensor(seq, heads, head_dim, 64, cuda::DType::bf16, rng);
  DeviceArray<uint16_t> dq(q.bits), dk(k.bits);
  cuda::MaskEstimator estimator(seq, seq, heads, head_dim, cuda::DType::bf16, config);
  estimator.estimate_fine(dq.get(), dk.get(), nullptr);
  const EstimatedLists got = download_fine(estimator, heads, seq);
  const std::vector<double> pq = pooled(q, seq, heads, head_dim, 64);
  const int qb = estimator.q_blocks();
  int64_t borderline = 0, kept_total = 0;
  ASSERT_NO_FATAL_FAILURE(compare_with_float64(
      got, heads, qb, seq, config.tau,
      [&](int h, int i) {
        return reference_fine_row(pq, k, seq, heads, h, i, qb, head_dim, config);
      },
      borderline, kept_total));
  EXPECT_LE(borderline, 6);
  const double density = double(kept_total) / (double(heads) * qb * seq);
  EXPECT_GT(density, 0.05);
  EXPECT_LT(density, 0.9);
}

TEST_F(MaskEstimation, BlockListsAgreeWithTheCpuEstimator) {
  std::mt19937_64 rng(44);
  const int64_t seq = 2500;
  const int heads = 3, head_dim = 64;
  const HostTensor q = structured_tensor(seq, heads, head_dim, 64, cuda::DType::bf16, rng);
  const HostTensor k = structured_tensor(seq, heads, head_dim, 64, cuda::DType::bf16, rng);
  DeviceArray<uint16_t> dq(q.bits), dk(k.bits);
  cuda::EstimateConfig config;
  config.tau = 0.85;
  cuda::MaskEstimator estimator(seq, seq, heads, head_dim, cuda::DType::bf16, config);
  estimator.estimate(dq.get(), dk.get(), nullptr);
  const EstimatedLists got = download(estimator, heads);
  EstimateOptions options;
  options.tau = config.tau;
  const BlockMask cpu =
      estimate_block_mask(q.values.data(), k.values.data(), seq, seq, heads, head_dim, options);
  int64_t differ = 0;
  const int qb = estimator.q_blocks(), kb = estimator.k_blocks();
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < qb; ++i) {
      std::vector<char> gpu(kb, 0);
      const int row = h * qb + i;
      for (int n = 0; n < got.count[row]; ++n) gpu[got.index[got.offset[row] + n]] = 1;
      for (int j = 0; j < kb; ++j) differ += gpu[j] != static_cast<char>(cpu.get(h, i, j));
    }
  // Same definition; only fp32 vs fp64 rounding at the cut may differ.
  EXPECT_LE(differ, std::max<int64_t>(2, cpu.kept() / 500)) << "of " << cpu.kept() << " kept";
}

TEST_F(MaskEstimation, FineListsDriveSparseAttentionOnTheDevice) {
  std::mt19937_64 rng(45);
  AttentionInputs in(1500, 2, 128, rng);
  const Problem& p = in.p;
  cuda::EstimateConfig config;
  config.tau = 0.7;
  cuda::MaskEstimator estimator(p.seq_q, p.seq_k, p.heads, p.head_dim, p.dtype, config);
  cuda::SparseAttention attention(p.shape(), 64);
  estimator.estimate_fine(in.dq.get(), in.dk.get(), nullptr);
  in.run(attention, estimator.fine_mask());
  const EstimatedLists lists = download_fine(estimator, p.heads, p.seq_k);
  HostMask mask = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
  mask.use_blocks = false;
  mask.use_keys = true;
  for (size_t r = 0; r < mask.keys.size(); ++r) mask.keys[r] = lists.row(r);
  in.expect_matches_reference(mask);
}

}  // namespace
}  // namespace dbsp::gpu_test
