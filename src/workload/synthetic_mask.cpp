// Synthetic block masks: every (query block, key block) pair of a head gets a score (the family's
// affinity, scaled by content saliency, plus drifting seeded noise) and the head keeps its top
// `density` share of pairs, plus the diagonal. Rows are not forced to equal counts, so dense
// blocks cluster where affinity and content do, as in real masks.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dbsp/workload.hpp"
#include "workload/head_params.hpp"
#include "workload/seeded_hash.hpp"
#include "workload/video_grid.hpp"

namespace dbsp {
namespace {

using workload::HeadParams;

// The per-pair loops run about twice as fast with AVX2 than with baseline SSE2. Both clones give
// bit-identical scores: they use the same IEEE float operations, and no FMA (ISO C++ mode keeps
// floating-point contraction off and the avx2 target does not enable FMA).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DBSP_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DBSP_SIMD_CLONES
#endif

// Scores are quantised into this many bins to find each head's threshold in linear time.
constexpr int kScoreBins = 1 << 14;
constexpr float kTopBin = static_cast<float>(kScoreBins - 1);

// Per-head inputs to the pair scores, laid out for vectorised inner loops.
struct HeadScoring {
  workload::ScaledBlocks position;  // affinity = 1 / (1 + |position_i - position_j|^2)
  std::vector<float> sink;          // 1 for sink key blocks, else 0; affinity = max(affinity, sink)
  std::vector<float> gain;          // 1 + content_gain * saliency
  float noise_amplitude = 0.0f;
  float max_score = 1.0f;
};

HeadScoring prepare(const HeadParams& p, const workload::BlockCentroids& centroids,
                    const std::vector<float>& saliency) {
  const int n = centroids.blocks();
  HeadScoring s;
  s.position = workload::scaled_blocks(p, centroids);
  s.sink.assign(n, 0.0f);
  s.gain.resize(n);
  float max_gain = 1.0f;
  for (int b = 0; b < n; ++b) {
    s.gain[b] = static_cast<float>(1.0 + p.content_gain * saliency[b]);
    max_gain = std::max(max_gain, s.gain[b]);
  }
  for (int b : p.sink_blocks) s.sink[b] = 1.0f;
  s.noise_amplitude = static_cast<float>(p.noise_amplitude);
  s.max_score = (1.0f + s.noise_amplitude) * max_gain * max_gain;
  return s;
}

// Affinity in [0, 1] of query block i with every key block, into `affinity`.
DBSP_SIMD_CLONES void fill_affinity(const HeadParams& p, const HeadScoring& s, uint64_t cell_seed,
                                    int i, std::vector<float>& affinity) {
  const int n = static_cast<int>(affinity.size());
  float* out = affinity.data();
  if (p.family == HeadFamily::scattered) {
    // Square cells of cell_blocks x cell_blocks pairs share one seeded value, cubed so that a
    // few cells stand out: random blocks, but clustered.
    const uint32_t cell_row = static_cast<uint32_t>(i / p.cell_blocks);
    for (int j = 0; j < n; j += p.cell_blocks) {
      const uint32_t h = workload::mix32(
          static_cast<uint32_t>(cell_seed) ^
          workload::mix32(cell_row * 0x9E3779B9u + static_cast<uint32_t>(j / p.cell_blocks)));
      const float u = static_cast<float>(h >> 8) * 0x1.0p-24f;
      const int end = std::min(n, j + p.cell_blocks);
      for (int jj = j; jj < end; ++jj) out[jj] = u * u * u;
    }
    return;
  }
  const float xi = s.position.x[i], yi = s.position.y[i], zi = s.position.z[i];
  const float* x = s.position.x.data();
  const float* y = s.position.y.data();
  const float* z = s.position.z.data();
  const float* sink = s.sink.data();
  for (int j = 0; j < n; ++j) {
    const float dx = xi - x[j], dy = yi - y[j], dz = zi - z[j];
    const float a = 1.0f / (1.0f + dx * dx + dy * dy + dz * dz);
    out[j] = std::max(a, sink[j]);
  }
}

// Score of row i turned into bins. Noise per pair is a triangle wave of a seeded phase that
// advances by a seeded speed per step: uniform in [0, 1] at every step, and it moves by at most
// 2 * speed between consecutive steps.
DBSP_SIMD_CLONES void bin_row(const HeadScoring& s, uint32_t row_key, int step, int i,
                              const std::vector<float>& affinity, uint16_t* bins) {
  const int n = static_cast<int>(affinity.size());
  const float gain_i = s.gain[i];
  const float* gain = s.gain.data();
  const float* a = affinity.data();
  const float to_bin = static_cast<float>(kScoreBins) / s.max_score;
  const float amplitude = s.noise_amplitude;
  const float t = static_cast<float>(step);
  for (int j = 0; j < n; ++j) {
    const uint32_t h = workload::mix32(row_key ^ (static_cast<uint32_t>(j) * 0x9E3779B9u));
    const float phase = static_cast<float>(h >> 8) * 0x1.0p-24f;
    const float speed = 0.002f + static_cast<float>(h & 0xFFu) * (0.014f / 256.0f);
    const float wave = phase + speed * t;
    const float frac = wave - static_cast<float>(static_cast<int>(wave));
    const float noise = std::fabs(2.0f * frac - 1.0f);
    // Content scales noise too, so that even the noise-picked pairs of dense heads favour it.
    const float score = (a[j] + amplitude * noise) * gain_i * gain[j];
    // Clamped in float (one instruction on every SIMD ISA), then truncated.
    bins[j] = static_cast<uint16_t>(static_cast<int>(std::min(score * to_bin, kTopBin)));
  }
}

// Packs n flags (each 0 or 1, readable up to n rounded up to 64) into bits, LSB first.
DBSP_SIMD_CLONES void pack_bits(const uint8_t* flags, int n, uint64_t* words) {
  for (int w = 0; w * 64 < n; ++w) {
    uint64_t word = 0;
    for (int byte = 0; byte < 8; ++byte) {
      uint64_t eight;
      std::memcpy(&eight, flags + w * 64 + byte * 8, 8);
      // Gathers bit 0 of each of the 8 bytes into the top byte (byte k lands on bit 56 + k); the
      // load is little-endian on every target dbsp supports.
      word |= ((eight * 0x0102040810204080ull) >> 56) << (byte * 8);
    }
    words[w] = word;
  }
}

// Flags of one row: above[j] = bin > cut, at[j] = bin == cut; returns how many are at the cut.
DBSP_SIMD_CLONES int compare_row(const uint16_t* row_bins, int n, int cut, uint8_t* above,
                                 uint8_t* at) {
  int count = 0;
  for (int j = 0; j < n; ++j) {
    above[j] = row_bins[j] > cut;
    at[j] = row_bins[j] == cut;
    count += at[j];
  }
  return count;
}

// Keeps the `target` highest-binned pairs of head h. Pairs in the threshold bin (scores equal to
// within 1/kScoreBins of the range) are taken in row-major order until the count is met.
void keep_top(const std::vector<uint16_t>& bins, std::vector<uint32_t>& histogram, int64_t target,
              int h, BlockMask& mask) {
  const int n = mask.q_blocks();
  // Four interleaved histograms, so that runs of equal bins do not serialise on one counter.
  std::fill(histogram.begin(), histogram.end(), 0u);
  uint32_t* counts = histogram.data();
  const size_t pairs = bins.size();
  size_t p = 0;
  for (; p + 4 <= pairs; p += 4) {
    ++counts[bins[p]];
    ++counts[kScoreBins + bins[p + 1]];
    ++counts[2 * kScoreBins + bins[p + 2]];
    ++counts[3 * kScoreBins + bins[p + 3]];
  }
  for (; p < pairs; ++p) ++counts[bins[p]];
  const auto count_of = [&](int bin) {
    return int64_t{counts[bin]} + counts[kScoreBins + bin] + counts[2 * kScoreBins + bin] +
           counts[3 * kScoreBins + bin];
  };
  int cut = kScoreBins - 1;
  int64_t above_cut = 0;
  while (cut > 0 && above_cut + count_of(cut) < target) above_cut += count_of(cut--);
  int64_t take_at_cut = std::max<int64_t>(0, target - above_cut);

  std::vector<uint8_t> above(static_cast<size_t>(n) + 64, 0);
  std::vector<uint8_t> at(static_cast<size_t>(n) + 64, 0);
  for (int i = 0; i < n; ++i) {
    const uint16_t* row = bins.data() + static_cast<size_t>(i) * n;
    const int at_cut = compare_row(row, n, cut, above.data(), at.data());
    if (take_at_cut > 0 && at_cut > 0) {
      if (at_cut <= take_at_cut) {
        for (int j = 0; j < n; ++j) above[j] |= at[j];
        take_at_cut -= at_cut;
      } else {
        for (int j = 0; j < n && take_at_cut > 0; ++j) {
          if (at[j]) {
            above[j] = 1;
            --take_at_cut;
          }
        }
      }
    }
    pack_bits(above.data(), n, mask.row_bits(h, i));
  }
}

}  // namespace

BlockMask SyntheticWorkload::block_mask(int step, int layer) const {
  workload::require_step_and_layer(shape_, step, layer);
  const MaskGeometry g = geometry();
  const int n = g.q_blocks();
  BlockMask mask(shape_.heads, g);
  const workload::BlockCentroids centroids = workload::block_centroids(shape_, block_size_);
  const std::vector<float> saliency =
      workload::block_saliency(shape_, centroids, seed_, step, layer);

#pragma omp parallel
  {
    std::vector<uint16_t> bins(static_cast<size_t>(n) * n);
    std::vector<uint32_t> histogram(4 * kScoreBins);
    std::vector<float> affinity(n);
#pragma omp for schedule(dynamic)
    for (int h = 0; h < shape_.heads; ++h) {
      const HeadParams p = workload::head_params(shape_, seed_, n, step, layer, h);
      const HeadScoring scoring = prepare(p, centroids, saliency);
      const uint64_t cell_seed = workload::hash_of(seed_, workload::Salt::cell, layer, h);
      for (int i = 0; i < n; ++i) {
        const uint32_t row_key =
            static_cast<uint32_t>(workload::hash_of(seed_, workload::Salt::noise_row, layer, h, i));
        fill_affinity(p, scoring, cell_seed, i, affinity);
        bin_row(scoring, row_key, step, i, affinity, bins.data() + static_cast<size_t>(i) * n);
      }
      const int64_t target = std::llround(p.density * static_cast<double>(n) * n);
      keep_top(bins, histogram, target, h, mask);
      for (int i = 0; i < n; ++i) mask.set(h, i, i);
    }
  }
  return mask;
}

}  // namespace dbsp
