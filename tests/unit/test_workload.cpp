// Synthetic video workloads (SPEC 5): presets, determinism, the spread and clustering of head
// densities, drift across steps and layers, and Q/K whose estimated masks show the head's family.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/estimate.hpp"
#include "dbsp/workload.hpp"

namespace dbsp {
namespace {

int64_t differing_blocks(const BlockMask& a, const BlockMask& b) {
  int64_t count = 0;
  for (int h = 0; h < a.heads(); ++h) {
    for (int i = 0; i < a.q_blocks(); ++i) {
      for (int w = 0; w < a.words_per_row(); ++w) {
        count += std::popcount(a.row_bits(h, i)[w] ^ b.row_bits(h, i)[w]);
      }
    }
  }
  return count;
}

TEST(ModelPreset, TokenCountsMatchTheLatentGrids) {
  EXPECT_EQ(model_preset("wan2.1-480p").tokens(), 32760);
  EXPECT_EQ(model_preset("wan2.1-720p").tokens(), 75600);
  EXPECT_EQ(model_preset("cogvideox1.5").tokens(), 85680);
  EXPECT_EQ(model_preset("wan2.1-720p").layers, 40);
  EXPECT_EQ(model_preset("wan2.1-720p").heads, 40);
  EXPECT_EQ(model_preset("cogvideox1.5").heads, 48);
  EXPECT_EQ(model_preset("cogvideox1.5").head_dim, 64);
  const ModelShape& tiny = model_preset("tiny");
  EXPECT_EQ(tiny.tokens(), 975);
  EXPECT_NE(tiny.tokens() % 64, 0);
  EXPECT_EQ(model_preset_names().size(), 4u);
  for (const std::string& name : model_preset_names()) EXPECT_EQ(model_preset(name).name, name);
  EXPECT_THROW(model_preset("wan2.2"), Error);
}

TEST(SyntheticWorkload, RejectsOutOfRangeIndicesAndShapes) {
  const SyntheticWorkload tiny(model_preset("tiny"), 1);
  EXPECT_THROW(tiny.block_mask(4, 0), Error);  // 4 steps: 0..3
  EXPECT_THROW(tiny.block_mask(0, 2), Error);  // 2 layers
  EXPECT_THROW(tiny.block_mask(-1, 0), Error);
  EXPECT_THROW(tiny.head_pattern(0, 0, 5), Error);
  ModelShape empty = model_preset("tiny");
  empty.rows = 0;
  EXPECT_THROW(SyntheticWorkload(empty, 1), Error);
  EXPECT_THROW(SyntheticWorkload(model_preset("tiny"), 1, 0), Error);
}

TEST(SyntheticWorkload, TinyWorksAtEveryStepAndLayer) {
  const SyntheticWorkload tiny(model_preset("tiny"), 3);
  EXPECT_EQ(tiny.geometry(), (MaskGeometry{975, 975, 64, 64}));
  for (int step = 0; step < 4; ++step) {
    for (int layer = 0; layer < 2; ++layer) {
      const BlockMask mask = tiny.block_mask(step, layer);
      EXPECT_EQ(mask.heads(), 5);
      EXPECT_EQ(mask.q_blocks(), 16);
      for (int h = 0; h < 5; ++h) {
        for (int i = 0; i < 16; ++i) EXPECT_TRUE(mask.get(h, i, i));
      }
    }
  }
  std::vector<float> q, k;
  tiny.qk(0, 1, q, k);
  EXPECT_EQ(q.size(), size_t{975} * 5 * 32);
  EXPECT_EQ(k.size(), q.size());
  EXPECT_TRUE(std::all_of(q.begin(), q.end(), [](float x) { return std::isfinite(x); }));
}

TEST(SyntheticWorkload, IsDeterministicAndSeeded) {
  const ModelShape& shape = model_preset("wan2.1-480p");
  const SyntheticWorkload first(shape, 42);
  const SyntheticWorkload second(shape, 42);
  const BlockMask mask = first.block_mask(7, 3);
  EXPECT_EQ(mask, second.block_mask(7, 3));
  EXPECT_NE(mask, SyntheticWorkload(shape, 43).block_mask(7, 3));
  for (int h = 0; h < shape.heads; ++h) {
    EXPECT_EQ(first.head_pattern(7, 3, h).family, second.head_pattern(7, 3, h).family);
    EXPECT_EQ(first.head_pattern(7, 3, h).density, second.head_pattern(7, 3, h).density);
  }
  const SyntheticWorkload tiny(model_preset("tiny"), 9);
  std::vector<float> q1, k1, q2, k2;
  tiny.qk(2, 1, q1, k1);
  SyntheticWorkload(model_preset("tiny"), 9).qk(2, 1, q2, k2);
  EXPECT_EQ(q1, q2);
  EXPECT_EQ(k1, k2);
}

TEST(SyntheticWorkload, ConsecutiveStepsDifferALittleAndLayersDifferALot) {
  const SyntheticWorkload workload(model_preset("wan2.1-480p"), 5);
  const BlockMask step10 = workload.block_mask(10, 0);
  const BlockMask step11 = workload.block_mask(11, 0);
  const int64_t step_change = differing_blocks(step10, step11);
  EXPECT_GT(step_change, 0);
  EXPECT_LT(step_change, step10.kept() * 15 / 100);
  const BlockMask step30 = workload.block_mask(30, 0);
  EXPECT_GT(differing_blocks(step10, step30), step_change);  // drift accumulates
  const BlockMask layer1 = workload.block_mask(10, 1);
  EXPECT_GT(differing_blocks(step10, layer1), step10.kept() * 30 / 100);
}

// The 720p mask is the expensive one: generated once for all the checks on it.
class Wan720Layer0 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    workload_ = new SyntheticWorkload(model_preset("wan2.1-720p"), 2024);
    mask_ = new BlockMask(workload_->block_mask(0, 0));
  }
  static void TearDownTestSuite() {
    delete mask_;
    delete workload_;
  }
  static SyntheticWorkload* workload_;
  static BlockMask* mask_;
};
SyntheticWorkload* Wan720Layer0::workload_ = nullptr;
BlockMask* Wan720Layer0::mask_ = nullptr;

TEST_F(Wan720Layer0, HeadDensitiesSpreadWidelyAndHitTheirTargets) {
  const BlockMask& mask = *mask_;
  ASSERT_EQ(mask.heads(), 40);
  ASSERT_EQ(mask.q_blocks(), 1182);
  double low = 1.0, high = 0.0;
  std::set<HeadFamily> families;
  for (int h = 0; h < mask.heads(); ++h) {
    const HeadPattern pattern = workload_->head_pattern(0, 0, h);
    families.insert(pattern.family);
    const double density = mask.density(h);
    low = std::min(low, density);
    high = std::max(high, density);
    // Bin-boundary rounding and the forced diagonal cost at most about 1 / 1182.
    EXPECT_NEAR(density, pattern.density, 0.002) << h << " " << to_string(pattern.family);
    for (int i = 0; i < mask.q_blocks(); ++i) ASSERT_TRUE(mask.get(h, i, i)) << h << " " << i;
  }
  EXPECT_GE(high / low, 4.0);
  EXPECT_LT(low, 0.10);
  EXPECT_GT(high, 0.50);
  EXPECT_GE(families.size(), 4u);
}

// Kept blocks have kept neighbours far more often than the density alone would give: dense
// blocks cluster (what unbalances Ring).
TEST_F(Wan720Layer0, KeptBlocksCluster) {
  const BlockMask& mask = *mask_;
  for (int h = 0; h < mask.heads(); ++h) {
    const double density = mask.density(h);
    if (density > 0.3) continue;
    int64_t kept = 0, neighbour_kept = 0;
    for (int i = 0; i + 1 < mask.q_blocks(); ++i) {
      for (int j = 0; j + 1 < mask.k_blocks(); ++j) {
        if (i == j || !mask.get(h, i, j)) continue;
        ++kept;
        neighbour_kept += mask.get(h, i, j + 1) || mask.get(h, i + 1, j);
      }
    }
    const double neighbour_share = double(neighbour_kept) / double(kept);
    EXPECT_GT(neighbour_share, std::min(0.95, 2.0 * density + 0.1))
        << h << " " << to_string(workload_->head_pattern(0, 0, h).family) << " " << density;
  }
}

// Q/K of a small custom video (3072 tokens = 48 blocks): estimated masks must show the structure
// of the head's family.
ModelShape small_video() { return ModelShape{"small-video", 1, 40, 64, 8, 16, 24, 4}; }

// The head of `family` with the lowest (or highest) target density, or -1.
int pick_head(const SyntheticWorkload& workload, HeadFamily family, bool sparsest) {
  int best = -1;
  for (int h = 0; h < workload.shape().heads; ++h) {
    const HeadPattern pattern = workload.head_pattern(0, 0, h);
    if (pattern.family != family) continue;
    if (best < 0 || (pattern.density < workload.head_pattern(0, 0, best).density) == sparsest) {
      best = h;
    }
  }
  return best;
}

TEST(SyntheticQk, EstimatedMasksShowSpatialWindowsAndSinks) {
  const SyntheticWorkload workload(small_video(), 77);
  const int spatial = pick_head(workload, HeadFamily::spatial_window, true);
  const int sink = pick_head(workload, HeadFamily::sink_global, false);
  ASSERT_GE(spatial, 0);
  ASSERT_GE(sink, 0);
  std::vector<float> q, k;
  workload.qk(0, 0, q, k);
  EstimateOptions options;
  options.tau = 0.9;
  options.sink_blocks = {};  // the sink must come from Q/K, not from the estimator
  options.keep_diagonal = false;
  const int64_t tokens = small_video().tokens();
  const BlockMask mask = estimate_block_mask(q.data(), k.data(), tokens, tokens, 40, 64, options);
  const int n = mask.q_blocks();
  ASSERT_EQ(n, 48);

  int64_t near = 0, near_kept = 0, far = 0, far_kept = 0;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      const int distance = std::abs(i - j);
      if (distance <= 1) {
        ++near;
        near_kept += mask.get(spatial, i, j);
      } else if (distance >= n / 4) {
        ++far;
        far_kept += mask.get(spatial, i, j);
      }
    }
  }
  const double near_density = double(near_kept) / near;
  const double far_density = double(far_kept) / far;
  EXPECT_GT(near_density, 0.3);
  EXPECT_GT(near_density, 3.0 * far_density);

  int sink_rows = 0, spatial_rows = 0;
  for (int i = 0; i < n; ++i) {
    sink_rows += mask.get(sink, i, 0);
    spatial_rows += mask.get(spatial, i, 0);
  }
  EXPECT_GE(sink_rows, n * 9 / 10);
  EXPECT_LT(spatial_rows, n / 4);  // block 0 is the sink head's structure, not the estimator's
}

// A rank's shard of Q and K is the slice of the whole tensors, bit for bit: empty ranges, ranges
// inside a block, across blocks, and the last partial block (tiny: 975 tokens, 64-token blocks).
TEST(SyntheticQk, TokenRangesAreSlicesOfTheWholeTensors) {
  const SyntheticWorkload tiny(model_preset("tiny"), 21);
  const ModelShape& shape = tiny.shape();
  const size_t per_token = static_cast<size_t>(shape.heads) * shape.head_dim;
  std::vector<float> q, k;
  tiny.qk(1, 1, q, k);
  const int64_t tokens = shape.tokens();
  // Compared as bits: equal floats are not enough (and NaN would compare unequal).
  const auto same_bits = [](float a, float b) {
    return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
  };
  const std::vector<std::pair<int64_t, int64_t>> ranges = {
      {0, 0},    {500, 500}, {tokens, tokens}, {0, 1},        {3, 60},
      {64, 128}, {50, 330},  {960, tokens},    {901, tokens}, {0, tokens}};
  for (const auto& [first, end] : ranges) {
    std::vector<float> q_part = {1.0f}, k_part = {1.0f};  // stale contents must go
    tiny.qk_tokens(1, 1, first, end, q_part, k_part);
    ASSERT_EQ(q_part.size(), static_cast<size_t>(end - first) * per_token) << first << ".." << end;
    ASSERT_EQ(k_part.size(), q_part.size());
    const auto from = static_cast<std::ptrdiff_t>(first * per_token);
    const auto to = static_cast<std::ptrdiff_t>(end * per_token);
    EXPECT_TRUE(
        std::equal(q_part.begin(), q_part.end(), q.begin() + from, q.begin() + to, same_bits))
        << "q, tokens " << first << ".." << end;
    EXPECT_TRUE(
        std::equal(k_part.begin(), k_part.end(), k.begin() + from, k.begin() + to, same_bits))
        << "k, tokens " << first << ".." << end;
  }
  EXPECT_THROW(tiny.qk_tokens(1, 1, -1, 10, q, k), Error);
  EXPECT_THROW(tiny.qk_tokens(1, 1, 10, 9, q, k), Error);
  EXPECT_THROW(tiny.qk_tokens(1, 1, 0, tokens + 1, q, k), Error);
  EXPECT_THROW(tiny.qk_tokens(4, 1, 0, 10, q, k), Error);  // 4 steps: 0..3
}

// Estimated densities follow the heads' targets: sparse heads estimate sparse, dense heads dense.
TEST(SyntheticQk, EstimatedDensityTracksTheTarget) {
  const SyntheticWorkload workload(small_video(), 78);
  std::vector<float> q, k;
  workload.qk(0, 0, q, k);
  EstimateOptions options;
  options.sink_blocks = {};
  options.keep_diagonal = false;
  const int64_t tokens = small_video().tokens();
  const BlockMask mask = estimate_block_mask(q.data(), k.data(), tokens, tokens, 40, 64, options);
  double sparse_sum = 0.0, dense_sum = 0.0;
  int sparse = 0, dense = 0;
  for (int h = 0; h < 40; ++h) {
    const double target = workload.head_pattern(0, 0, h).density;
    if (target < 0.15) {
      sparse_sum += mask.density(h);
      ++sparse;
    } else if (target > 0.5) {
      dense_sum += mask.density(h);
      ++dense;
    }
  }
  ASSERT_GT(sparse, 0);
  ASSERT_GT(dense, 0);
  EXPECT_LT(sparse_sum / sparse, 0.15);
  EXPECT_GT(dense_sum / dense, 0.45);
}

}  // namespace
}  // namespace dbsp
