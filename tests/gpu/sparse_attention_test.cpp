// GPU tests of the block-sparse, fine-grained (FG-Attn), mixed and dense attention kernels
// against the float64 reference, with the bf16/fp16 error bounded by 2x the naive path's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "gpu_support.hpp"

namespace dbsp::gpu_test {
namespace {

struct RunResult {
  std::vector<uint16_t> out;
  std::vector<float> lse;
};

// Uploads Q/K/V, poisons O and LSE, plans and runs the mask, and downloads the outputs.
RunResult run_attention(const Problem& p, const HostMask& mask, const HostTensor& q,
                        const HostTensor& k, const HostTensor& v,
                        cuda::AttentionKernel kernel = cuda::AttentionKernel::automatic,
                        bool pair_rows = false, bool split_rows = false) {
  DeviceArray<uint16_t> dq(q.bits), dk(k.bits), dv(v.bits);
  DeviceArray<uint16_t> dout(q.bits.size());
  DeviceArray<float> dlse(static_cast<size_t>(p.batch * p.heads * p.seq_q));
  dout.poison();
  dlse.poison();
  DeviceMaskStorage device_mask = upload_mask(mask);
  cuda::SparseAttention attention(p.shape(), mask.block_q, mask.custom_layout ? mask.q_blocks() : 0,
                                  kernel);
  attention.pair_query_rows(pair_rows);
  attention.split_long_rows(split_rows, 2);  // every long row, however short
  attention.plan(device_mask.view, nullptr);
  attention.run(device_mask.view, dq.get(), dk.get(), dv.get(), dout.get(), dlse.get(), nullptr);
  return {dout.download(), dlse.download()};
}

// Whether the current device is a Hopper (compute capability 9.x): the sm_90a kernels run there.
bool hopper() {
  int device = 0, major = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
             "cudaDeviceGetAttribute");
  return major == 9;
}

struct Inputs {
  HostTensor q, k, v;
};
Inputs random_inputs(const Problem& p, std::mt19937_64& rng) {
  const size_t q_count = static_cast<size_t>(p.batch * p.seq_q * p.heads * p.head_dim);
  const size_t k_count = static_cast<size_t>(p.batch * p.seq_k * p.heads * p.head_dim);
  return {random_tensor(q_count, p.dtype, rng), random_tensor(k_count, p.dtype, rng),
          random_tensor(k_count, p.dtype, rng)};
}

constexpr cuda::AttentionKernel kKernels[] = {cuda::AttentionKernel::mma_sync,
                                              cuda::AttentionKernel::wgmma,
                                              cuda::AttentionKernel::warp_specialized};

struct Case {
  cuda::DType dtype;
  int head_dim;
  int block_q;
  int block_k;
  cuda::AttentionKernel kernel;
  std::string name() const {
    return std::string(cuda::to_string(kernel)) + "_" + cuda::to_string(dtype) + "_d" +
           std::to_string(head_dim) + "_bq" + std::to_string(block_q) + "_bk" +
           std::to_string(block_k);
  }
};

std::vector<Case> all_cases() {
  struct Shape {
    cuda::DType dtype;
    int head_dim, block_q, block_k;
  };
  const Shape shapes[] = {{cuda::DType::bf16, 128, 64, 64},   {cuda::DType::bf16, 64, 64, 64},
                          {cuda::DType::fp16, 128, 64, 64},   {cuda::DType::fp16, 64, 64, 64},
                          {cuda::DType::bf16, 128, 128, 128}, {cuda::DType::bf16, 64, 128, 64},
                          {cuda::DType::fp16, 64, 64, 128}};
  std::vector<Case> cases;
  for (cuda::AttentionKernel kernel : kKernels)
    for (const Shape& shape : shapes)
      cases.push_back({shape.dtype, shape.head_dim, shape.block_q, shape.block_k, kernel});
  return cases;
}

class SparseAttentionCases : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { DBSP_SKIP_WITHOUT_GPU(); }
  Problem problem(int64_t seq_q, int64_t seq_k, int heads, int64_t batch = 1) const {
    Problem p;
    p.batch = batch;
    p.seq_q = seq_q;
    p.seq_k = seq_k;
    p.heads = heads;
    p.head_dim = GetParam().head_dim;
    p.dtype = GetParam().dtype;
    return p;
  }
};

TEST_P(SparseAttentionCases, BlockSparseMatchesReferenceWithEmptyAndFullRows) {
  std::mt19937_64 rng(11);
  const Problem p = problem(1000, 1000, 3);
  HostMask mask =
      HostMask::uniform(p.heads, p.seq_q, p.seq_k, GetParam().block_q, GetParam().block_k);
  fill_random_blocks(mask, 0.3, rng, /*empty_every=*/5, /*full_every=*/7);
  const Inputs in = random_inputs(p, rng);
  const RunResult got = run_attention(p, mask, in.q, in.k, in.v, GetParam().kernel);
  expect_within_naive_bound(compare_with_reference(p, mask, in.q, in.k, in.v, got.out, got.lse));
}

TEST_P(SparseAttentionCases, FineKeyListsMatchReference) {
  std::mt19937_64 rng(12);
  const Problem p = problem(1000, 1000, 2);
  HostMask mask =
      HostMask::uniform(p.heads, p.seq_q, p.seq_k, GetParam().block_q, GetParam().block_k);
  mask.use_blocks = false;
  fill_random_keys(mask, 0.2, p.seq_k, rng, /*empty_every=*/6);
  const Inputs in = random_inputs(p, rng);
  const RunResult got = run_attention(p, mask, in.q, in.k, in.v, GetParam().kernel);
  expect_within_naive_bound(compare_with_reference(p, mask, in.q, in.k, in.v, got.out, got.lse));
}

TEST_P(SparseAttentionCases, MixedBlockAndKeyListsMatchReference) {
  std::mt19937_64 rng(13);
  const Problem p = problem(1000, 1000, 2, /*batch=*/2);
  HostMask mask =
      HostMask::uniform(p.heads, p.seq_q, p.seq_k, GetParam().block_q, GetParam().block_k);
  fill_random_blocks(mask, 0.15, rng, /*empty_every=*/4);
  fill_random_keys(mask, 0.1, p.seq_k, rng, /*empty_every=*/3);
  const Inputs in = random_inputs(p, rng);
  const RunResult got = run_attention(p, mask, in.q, in.k, in.v, GetParam().kernel);
  expect_within_naive_bound(compare_with_reference(p, mask, in.q, in.k, in.v, got.out, got.lse));
}

INSTANTIATE_TEST_SUITE_P(Kernels, SparseAttentionCases, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           return param_info.param.name();
                         });

class SparseAttention : public ::testing::Test {
 protected:
  void SetUp() override { DBSP_SKIP_WITHOUT_GPU(); }
};

TEST_F(SparseAttention, FullBlockMaskEqualsDenseBitwiseAndMatchesReference) {
  std::mt19937_64 rng(21);
  Problem p;
  p.seq_q = 777;
  p.seq_k = 1000;
  p.heads = 2;
  p.head_dim = 128;
  HostMask full = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
  fill_random_blocks(full, 2.0, rng);  // density above 1: every block
  for (auto& list : full.blocks) std::sort(list.begin(), list.end());
  HostMask dense = full;
  dense.dense = true;
  const Inputs in = random_inputs(p, rng);
  for (cuda::AttentionKernel kernel : kKernels) {
    SCOPED_TRACE(cuda::to_string(kernel));
    const RunResult got_full = run_attention(p, full, in.q, in.k, in.v, kernel);
    const RunResult got_dense = run_attention(p, dense, in.q, in.k, in.v, kernel);
    EXPECT_EQ(got_full.out, got_dense.out);
    expect_within_naive_bound(
        compare_with_reference(p, dense, in.q, in.k, in.v, got_dense.out, got_dense.lse));
  }
}

TEST_F(SparseAttention, EmptyMaskGivesZerosAndNegativeInfinityLse) {
  std::mt19937_64 rng(22);
  Problem p;
  p.seq_q = 200;
  p.seq_k = 300;
  p.heads = 2;
  HostMask mask = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
  mask.use_keys = true;  // empty block lists and empty key lists
  const Inputs in = random_inputs(p, rng);
  for (cuda::AttentionKernel kernel : kKernels) {
    const RunResult got = run_attention(p, mask, in.q, in.k, in.v, kernel);
    for (uint16_t bits : got.out) ASSERT_EQ(from_half_bits(bits, p.dtype), 0.f);
    for (float lse : got.lse) ASSERT_TRUE(std::isinf(lse) && lse < 0) << lse;
  }
}

TEST_F(SparseAttention, LongOddSequenceMatchesReferenceOnSampledBlocks) {
  std::mt19937_64 rng(23);
  for (int head_dim : {128, 64}) {
    Problem p;
    p.seq_q = p.seq_k = 32760;
    p.heads = 2;
    p.head_dim = head_dim;
    HostMask mask = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
    fill_random_blocks(mask, 0.05, rng, /*empty_every=*/97, /*full_every=*/101);
    if (head_dim == 64) fill_random_keys(mask, 0.01, p.seq_k, rng);
    const Inputs in = random_inputs(p, rng);
    for (cuda::AttentionKernel kernel : kKernels) {
      SCOPED_TRACE(cuda::to_string(kernel));
      const RunResult got = run_attention(p, mask, in.q, in.k, in.v, kernel);
      // First, last (short) and a few full or empty query blocks, every head.
      const std::vector<int> sampled{0, 1, 97, 102, 300, mask.q_blocks() - 1};
      expect_within_naive_bound(
          compare_with_reference(p, mask, in.q, in.k, in.v, got.out, got.lse, sampled));
    }
  }
}

TEST_F(SparseAttention, NonUniformShardLayoutMatchesReference) {
  // A permuted db-SP shard: short blocks in the middle of the query and key tensors.
  std::mt19937_64 rng(24);
  Problem p;
  p.heads = 3;
  p.head_dim = 64;
  HostMask mask;
  mask.heads = p.heads;
  mask.custom_layout = true;
  mask.q_start = {0, 64, 101, 165, 229, 250, 314};
  mask.k_start = {0, 17, 81, 145, 209, 230, 294, 358};
  p.seq_q = mask.q_start.back();
  p.seq_k = mask.k_start.back();
  mask.blocks.assign(static_cast<size_t>(p.heads) * mask.q_blocks(), {});
  mask.keys.assign(mask.blocks.size(), {});
  fill_random_blocks(mask, 0.5, rng, 0, /*full_every=*/4);
  fill_random_keys(mask, 0.1, p.seq_k, rng);
  const Inputs in = random_inputs(p, rng);
  for (cuda::AttentionKernel kernel : kKernels) {
    SCOPED_TRACE(cuda::to_string(kernel));
    const RunResult got = run_attention(p, mask, in.q, in.k, in.v, kernel);
    expect_within_naive_bound(compare_with_reference(p, mask, in.q, in.k, in.v, got.out, got.lse));
  }
}

TEST_F(SparseAttention, AutomaticFamilyMatchesReferenceForBlockAndKeyLists) {
  std::mt19937_64 rng(25);
  Problem p;
  p.seq_q = p.seq_k = 500;
  p.heads = 2;
  p.head_dim = 128;
  HostMask blocks = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
  fill_random_blocks(blocks, 0.4, rng, /*empty_every=*/5);
  HostMask mixed = blocks;
  fill_random_keys(mixed, 0.1, p.seq_k, rng);
  const Inputs in = random_inputs(p, rng);
  for (const HostMask* mask : {&blocks, &mixed}) {
    const RunResult got = run_attention(p, *mask, in.q, in.k, in.v);
    expect_within_naive_bound(compare_with_reference(p, *mask, in.q, in.k, in.v, got.out, got.lse));
  }
  if (!hopper()) return;
  DeviceMaskStorage block_lists = upload_mask(blocks), key_lists = upload_mask(mixed);
  const cuda::SparseAttention attention(p.shape(), 64);
  EXPECT_EQ(attention.kernel_for(block_lists.view), cuda::AttentionKernel::warp_specialized);
  EXPECT_EQ(attention.kernel_for(key_lists.view), cuda::AttentionKernel::wgmma);
}

// Paired rows (warp-specialised kernel): each row computes its own blocks in its own list order,
// so the result equals the one-row-per-item kernel's bit for bit. Odd query-block count (the last
// pair has one short row), batch 2, pairs with one or both rows empty, identical rows, full rows,
// sorted and shuffled lists.
TEST_F(SparseAttention, PairedRowsEqualSeparateRowsBitwiseAndMatchReference) {
  if (!hopper()) GTEST_SKIP() << "the warp-specialised kernel needs sm_90a";
  std::mt19937_64 rng(26);
  for (int head_dim : {128, 64})
    for (bool sorted : {true, false}) {
      SCOPED_TRACE(std::to_string(head_dim) + (sorted ? " sorted" : " shuffled"));
      Problem p;
      p.batch = 2;
      p.seq_q = 900;  // 15 query blocks, the last of 4 rows
      p.seq_k = 1000;
      p.heads = 3;
      p.head_dim = head_dim;
      p.dtype = sorted ? cuda::DType::bf16 : cuda::DType::fp16;  // every paired instantiation
      HostMask mask = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
      fill_random_blocks(mask, 0.3, rng, /*empty_every=*/4, /*full_every=*/6);
      const int q_blocks = mask.q_blocks();
      ASSERT_EQ(q_blocks % 2, 1);
      mask.blocks[6].clear();  // a pair with both rows empty (rows 6 and 7 of head 0)
      mask.blocks[7].clear();
      mask.blocks[q_blocks + 3] = mask.blocks[q_blocks + 2];  // identical rows (head 1)
      if (sorted)
        for (auto& list : mask.blocks) std::sort(list.begin(), list.end());
      const Inputs in = random_inputs(p, rng);
      const auto kernel = cuda::AttentionKernel::warp_specialized;
      const RunResult paired = run_attention(p, mask, in.q, in.k, in.v, kernel, true);
      const RunResult separate = run_attention(p, mask, in.q, in.k, in.v, kernel, false);
      EXPECT_EQ(paired.out, separate.out);
      EXPECT_EQ(paired.lse, separate.lse);
      expect_within_naive_bound(
          compare_with_reference(p, mask, in.q, in.k, in.v, paired.out, paired.lse));
    }
  // Pairing is opt-in and applies only to uniform 64 x 64 block lists.
  Problem p;
  p.seq_q = p.seq_k = 256;
  HostMask blocks = HostMask::uniform(1, 256, 256, 64, 64);
  fill_random_blocks(blocks, 0.5, rng);
  HostMask mixed = blocks;
  fill_random_keys(mixed, 0.1, p.seq_k, rng);
  DeviceMaskStorage block_lists = upload_mask(blocks), key_lists = upload_mask(mixed);
  cuda::SparseAttention attention(p.shape(), 64);
  EXPECT_FALSE(attention.pairs_query_rows(block_lists.view));  // opt-in
  attention.pair_query_rows(true);
  EXPECT_TRUE(attention.pairs_query_rows(block_lists.view));
  EXPECT_FALSE(attention.pairs_query_rows(key_lists.view));
}

// Split long rows (warp-specialised kernel): every row over the threshold runs as two items whose
// halves merge by LSE after the kernel. On these small problems the threshold (a sixth of a
// consumer's share) is below one tile, so every row of two blocks or more splits: odd block
// counts, one-block rows (kept whole), empty and full rows, a short last query block, 128-token
// blocks (two items per row, two tiles per block), batch 2 and several heads, both dtypes.
TEST_F(SparseAttention, SplitLongRowsMatchReferenceAndWholeRows) {
  if (!hopper()) GTEST_SKIP() << "the warp-specialised kernel needs sm_90a";
  std::mt19937_64 rng(41);
  struct Shape {
    int head_dim, block;
    cuda::DType dtype;
    int64_t batch;
    int heads;
  };
  for (const Shape& shape :
       {Shape{128, 64, cuda::DType::bf16, 1, 1}, Shape{64, 64, cuda::DType::fp16, 2, 3},
        Shape{128, 128, cuda::DType::bf16, 1, 2}}) {
    SCOPED_TRACE("d" + std::to_string(shape.head_dim) + " block " + std::to_string(shape.block));
    Problem p;
    p.batch = shape.batch;
    p.seq_q = 1000;  // the last query block is short
    p.seq_k = 2100;
    p.heads = shape.heads;
    p.head_dim = shape.head_dim;
    p.dtype = shape.dtype;
    HostMask mask = HostMask::uniform(p.heads, p.seq_q, p.seq_k, shape.block, shape.block);
    fill_random_blocks(mask, 0.5, rng, /*empty_every=*/5, /*full_every=*/4);
    mask.blocks[1] = {3};     // one block: kept whole
    mask.blocks[2] = {7, 2};  // two blocks, unsorted
    const Inputs in = random_inputs(p, rng);
    const auto kernel = cuda::AttentionKernel::warp_specialized;
    const RunResult split = run_attention(p, mask, in.q, in.k, in.v, kernel, false, true);
    const RunResult whole = run_attention(p, mask, in.q, in.k, in.v, kernel, false, false);
    expect_within_naive_bound(
        compare_with_reference(p, mask, in.q, in.k, in.v, split.out, split.lse));
    ASSERT_EQ(split.out.size(), whole.out.size());
    double largest = 0, difference = 0;
    for (size_t i = 0; i < split.out.size(); ++i) {
      const double a = from_half_bits(split.out[i], p.dtype);
      const double b = from_half_bits(whole.out[i], p.dtype);
      largest = std::max(largest, std::abs(b));
      difference = std::max(difference, std::abs(a - b));
    }
    EXPECT_LE(difference, 1e-2 * largest);  // at most a rounding or two apart
    for (size_t i = 0; i < split.lse.size(); ++i) {
      if (std::isinf(whole.lse[i])) {
        EXPECT_EQ(split.lse[i], whole.lse[i]) << i;
      } else {
        EXPECT_NEAR(split.lse[i], whole.lse[i], 1e-4 * std::max(1.0f, std::abs(whole.lse[i]))) << i;
      }
    }
  }
}

// A kernel object that splits plans each mask afresh (the split rows are counted anew) and only
// splits block lists of the unpaired warp-specialised kernel.
TEST_F(SparseAttention, SplitLongRowsReplanAndApplyOnlyToUnpairedBlockLists) {
  if (!hopper()) GTEST_SKIP() << "the warp-specialised kernel needs sm_90a";
  std::mt19937_64 rng(42);
  Problem p;
  p.seq_q = 700;
  p.seq_k = 1500;
  p.heads = 2;
  const Inputs in = random_inputs(p, rng);
  cuda::SparseAttention attention(p.shape(), 64, 0, cuda::AttentionKernel::warp_specialized);
  attention.split_long_rows(true, 2);
  DeviceArray<uint16_t> dq(in.q.bits), dk(in.k.bits), dv(in.v.bits), dout(in.q.bits.size());
  DeviceArray<float> dlse(static_cast<size_t>(p.heads * p.seq_q));
  for (double density : {0.9, 0.2, 0.6}) {
    SCOPED_TRACE(density);
    HostMask mask = HostMask::uniform(p.heads, p.seq_q, p.seq_k, 64, 64);
    fill_random_blocks(mask, density, rng, /*empty_every=*/3);
    DeviceMaskStorage device_mask = upload_mask(mask);
    EXPECT_TRUE(attention.splits_long_rows(device_mask.view));
    dout.poison();
    dlse.poison();
    attention.plan(device_mask.view, nullptr);
    attention.run(device_mask.view, dq.get(), dk.get(), dv.get(), dout.get(), dlse.get(), nullptr);
    expect_within_naive_bound(
        compare_with_reference(p, mask, in.q, in.k, in.v, dout.download(), dlse.download()));
  }
  HostMask blocks = HostMask::uniform(1, 256, 256, 64, 64);
  fill_random_blocks(blocks, 0.5, rng);
  HostMask mixed = blocks;
  fill_random_keys(mixed, 0.1, 256, rng);
  DeviceMaskStorage block_lists = upload_mask(blocks), key_lists = upload_mask(mixed);
  EXPECT_FALSE(attention.splits_long_rows(key_lists.view));
  attention.pair_query_rows(true);
  EXPECT_FALSE(attention.splits_long_rows(block_lists.view));
  attention.pair_query_rows(false);
  EXPECT_TRUE(attention.splits_long_rows(block_lists.view));
  attention.split_long_rows(false);
  EXPECT_FALSE(attention.splits_long_rows(block_lists.view));
}

TEST_F(SparseAttention, RunWithoutPlanIsRejected) {
  Problem p;
  p.seq_q = p.seq_k = 128;
  HostMask mask = HostMask::uniform(1, 128, 128, 64, 64);
  DeviceMaskStorage device_mask = upload_mask(mask);
  DeviceArray<uint16_t> buffer(128 * 64);
  cuda::SparseAttention attention(p.shape(), 64);
  EXPECT_THROW(attention.run(device_mask.view, buffer.get(), buffer.get(), buffer.get(),
                             buffer.get(), nullptr, nullptr),
               dbsp::Error);
}

// Shape checks happen before any device call, so these run without a GPU too.
TEST(SparseAttentionSupport, RejectsUnsupportedHeadDimAndBlockSize) {
  cuda::AttentionShape shape;
  shape.seq_q = shape.seq_k = 256;
  shape.head_dim = 96;
  cuda::DeviceMask mask;
  mask.dense = true;
  EXPECT_NE(cuda::unsupported_reason(shape, mask).find("head_dim 96"), std::string::npos);
  EXPECT_THROW(cuda::SparseAttention(shape, 64), dbsp::Error);
  shape.head_dim = 128;
  EXPECT_TRUE(cuda::unsupported_reason(shape, mask).empty());
  mask.block_q = 32;
  EXPECT_NE(cuda::unsupported_reason(shape, mask).find("block_q 32"), std::string::npos);
  shape.dtype = cuda::DType::fp32;
  mask.block_q = 64;
  EXPECT_NE(cuda::unsupported_reason(shape, mask).find("fp32"), std::string::npos);
}

}  // namespace
}  // namespace dbsp::gpu_test
