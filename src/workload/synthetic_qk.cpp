// Synthetic Q and K whose estimated masks show each head's family. Every token carries its
// block's feature vector (random Fourier features of the block position in the head's units, so
// pooled q . k follows a Gaussian kernel of the family's distance; topic vectors for scattered
// heads; a dedicated sink channel) plus per-token noise. The logit scale is calibrated per
// head so that top-p estimation at tau = 0.9 keeps about the head's target density.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <optional>
#include <utility>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/workload.hpp"
#include "workload/head_params.hpp"
#include "workload/seeded_hash.hpp"
#include "workload/video_grid.hpp"

namespace dbsp {
namespace {

using workload::hash_of;
using workload::HeadParams;
using workload::Salt;
using workload::unit_of;

constexpr double kCalibrationTau = 0.9;

// A seeded unit vector of length `dim`.
std::vector<double> unit_vector(uint64_t key, int dim) {
  std::vector<double> v(dim);
  double norm = 0.0;
  for (int d = 0; d < dim; ++d) {
    v[d] = workload::normal_of(hash_of(key, d));
    norm += v[d] * v[d];
  }
  for (double& x : v) x /= std::sqrt(std::max(norm, 1e-30));
  return v;
}

// Share of key blocks that top-p at kCalibrationTau keeps, on average over the sampled rows, when
// the logits are sharpness * kernel (+ bonus on sinks). Rows hold kernel values sorted descending.
double kept_share(const std::vector<std::vector<double>>& sink_rows,
                  const std::vector<std::vector<double>>& other_rows, double sharpness,
                  double bonus, int blocks) {
  double kept = 0.0;
  std::vector<double> sinks, others, logits;
  for (size_t r = 0; r < other_rows.size(); ++r) {
    // Both lists are sorted descending, so their logits are too; merging keeps the top-p order.
    sinks.clear();
    others.clear();
    for (double kernel : sink_rows[r]) sinks.push_back(sharpness * kernel + bonus);
    for (double kernel : other_rows[r]) others.push_back(sharpness * kernel);
    logits.resize(sinks.size() + others.size());
    std::merge(sinks.begin(), sinks.end(), others.begin(), others.end(), logits.begin(),
               std::greater<>());
    const double top = logits.empty() ? 0.0 : logits.front();
    double total = 0.0;
    for (double& x : logits) total += x = std::exp(x - top);
    double mass = 0.0;
    size_t count = 0;
    while (count < logits.size() && mass < kCalibrationTau * total) mass += logits[count++];
    kept += static_cast<double>(count);
  }
  return kept / (static_cast<double>(other_rows.size()) * blocks);
}

// Per-head features: one vector per block for q and one for k, scaled to the calibrated logits.
class HeadFeatures {
 public:
  HeadFeatures(const ModelShape& shape, uint64_t seed, int block_size, int layer, int head,
               const HeadParams& p, const workload::BlockCentroids& centroids)
      : params_(p), dim_(shape.head_dim), blocks_(centroids.blocks()), block_size_(block_size) {
    position_ = workload::scaled_blocks(p, centroids);
    is_sink_.assign(blocks_, false);
    for (int b : p.sink_blocks) is_sink_[b] = true;
    if (p.family == HeadFamily::scattered) {
      const int topics = std::max(2, static_cast<int>(std::lround(1.0 / p.density)));
      const uint64_t key = hash_of(seed, Salt::topic, layer, head);
      for (int b = 0; b < blocks_; ++b) {
        const uint64_t cell = static_cast<uint64_t>(b / p.cell_blocks);
        q_topic_.push_back(static_cast<int>(hash_of(key, 0, cell) % topics));
        k_topic_.push_back(static_cast<int>(hash_of(key, 1, cell) % topics));
      }
      for (int m = 0; m < topics; ++m) topics_.push_back(unit_vector(hash_of(key, 2, m), dim_));
    }
    const auto [sharpness, bonus] = calibrate();
    const double scale = 1.0 / std::sqrt(static_cast<double>(dim_));
    build_block_features(seed, layer, head, std::sqrt(sharpness / scale),
                         std::sqrt(std::max(bonus, 0.0) / scale));
    noise_ = 0.3 * std::sqrt(sharpness / scale) / std::sqrt(static_cast<double>(dim_));
    noise_key_ = hash_of(seed, Salt::features, layer, head, 0xA11CEull);
  }

  void write(int64_t token, float* q, float* k) const {
    const size_t block = static_cast<size_t>(token / block_size_);
    const float* q_block = q_features_.data() + block * dim_;
    const float* k_block = k_features_.data() + block * dim_;
    for (int d = 0; d < dim_; ++d) {
      const uint64_t h = workload::mix64(noise_key_ ^ (static_cast<uint64_t>(token) * dim_ + d));
      // Two uniforms in [-1, 1) from one hash, scaled to standard deviation noise_.
      const double q_noise = 2.0 * static_cast<double>(h >> 40) * 0x1.0p-24 - 1.0;
      const double k_noise = 2.0 * static_cast<double>(h & 0xFFFFFFull) * 0x1.0p-24 - 1.0;
      q[d] = q_block[d] + static_cast<float>(noise_ * std::numbers::sqrt3 * q_noise);
      k[d] = k_block[d] + static_cast<float>(noise_ * std::numbers::sqrt3 * k_noise);
    }
  }

 private:
  // What pooled q_i . k_j / (amplitude^2) approximates, in [0, 1] (sinks aside).
  double kernel(int i, int j) const {
    if (params_.family == HeadFamily::scattered) return q_topic_[i] == k_topic_[j] ? 1.0 : 0.0;
    const double dx = position_.x[i] - position_.x[j];
    const double dy = position_.y[i] - position_.y[j];
    const double dz = position_.z[i] - position_.z[j];
    return std::exp(-0.5 * (dx * dx + dy * dy + dz * dz));
  }

  // Logit bonus of sink keys at a given sharpness (averaged over the sampled rows). Sinks hold most
  // of a sparse head's mass, as attention sinks do in real heads, and stay in its top-p set
  // despite the feature noise; dense heads leave more mass to local blocks, or top-p could never
  // reach their density.
  double sink_bonus(const std::vector<std::vector<double>>& sink_rows,
                    const std::vector<std::vector<double>>& other_rows, double sharpness) const {
    if (sink_rows.empty() || sink_rows.front().empty()) return 0.0;
    const double share = std::clamp(kCalibrationTau * (1.0 - params_.density), 0.3, 0.85);
    const double sinks = static_cast<double>(sink_rows.front().size());
    double bonus = 0.0;
    for (const std::vector<double>& row : other_rows) {
      double others = 0.0;
      for (double kernel : row) others += std::exp(sharpness * (kernel - 1.0));
      bonus += sharpness + std::log(std::max(others, 1e-300) * share / (1.0 - share) / sinks);
    }
    return bonus / static_cast<double>(other_rows.size());
  }

  // Logit scale (and sink bonus) at which top-p estimation keeps about the target density
  // (bisection on a sample of rows; the kept share falls as the scale grows).
  std::pair<double, double> calibrate() const {
    const int samples = std::min(blocks_, 24);
    std::vector<std::vector<double>> sink_rows(samples), other_rows(samples);
    for (int s = 0; s < samples; ++s) {
      const int i = static_cast<int>(int64_t{s} * blocks_ / samples);
      for (int j = 0; j < blocks_; ++j) {
        (is_sink_[j] ? sink_rows : other_rows)[s].push_back(kernel(i, j));
      }
      std::sort(sink_rows[s].begin(), sink_rows[s].end(), std::greater<>());
      std::sort(other_rows[s].begin(), other_rows[s].end(), std::greater<>());
    }
    // Capped: random-feature kernels are only accurate to about 0.1, which the scale multiplies.
    double low = 0.0, high = 24.0;
    for (int iteration = 0; iteration < 20; ++iteration) {
      const double mid = 0.5 * (low + high);
      const double bonus = sink_bonus(sink_rows, other_rows, mid);
      const double share = kept_share(sink_rows, other_rows, mid, bonus, blocks_);
      (share > params_.density ? low : high) = mid;
    }
    const double sharpness = std::max(0.5, 0.5 * (low + high));
    return {sharpness, sink_bonus(sink_rows, other_rows, sharpness)};
  }

  void build_block_features(uint64_t seed, int layer, int head, double amplitude,
                            double sink_amplitude) {
    q_features_.assign(static_cast<size_t>(blocks_) * dim_, 0.0f);
    k_features_.assign(q_features_.size(), 0.0f);
    // Sink heads put the sink signal in channel 0 alone and the local features in the others, so
    // that the large sink component adds no cross terms to local scores.
    const bool sinks = params_.family == HeadFamily::sink_global && dim_ > 1;
    const int first = sinks ? 1 : 0;
    const int feature_dim = dim_ - first;
    // Random Fourier features: phi(x) . phi(y) ~ exp(-|x - y|^2 / 2) for standard normal
    // frequencies and uniform phases.
    std::vector<double> frequency(static_cast<size_t>(dim_) * 3), phase(dim_);
    for (int d = 0; d < dim_; ++d) {
      for (int axis = 0; axis < 3; ++axis) {
        frequency[d * 3 + axis] =
            workload::normal_of(hash_of(seed, Salt::features, layer, head, d, axis));
      }
      phase[d] = 2.0 * std::numbers::pi * unit_of(hash_of(seed, Salt::features, layer, head, d, 7));
    }
    const double fourier_norm = amplitude * std::sqrt(2.0 / feature_dim);
    for (int b = 0; b < blocks_; ++b) {
      float* q = q_features_.data() + static_cast<size_t>(b) * dim_;
      float* k = k_features_.data() + static_cast<size_t>(b) * dim_;
      for (int d = first; d < dim_; ++d) {
        if (params_.family == HeadFamily::scattered) {
          q[d] = static_cast<float>(amplitude * topics_[q_topic_[b]][d]);
          k[d] = static_cast<float>(amplitude * topics_[k_topic_[b]][d]);
        } else {
          const double* w = frequency.data() + d * 3;
          q[d] = k[d] = static_cast<float>(fourier_norm *
                                           std::cos(w[0] * position_.x[b] + w[1] * position_.y[b] +
                                                    w[2] * position_.z[b] + phase[d]));
        }
      }
      if (sinks) {
        q[0] = static_cast<float>(sink_amplitude);
        k[0] = is_sink_[b] ? static_cast<float>(sink_amplitude) : 0.0f;
      }
    }
  }

  HeadParams params_;
  int dim_;
  int blocks_;
  int block_size_;
  workload::ScaledBlocks position_;
  std::vector<bool> is_sink_;
  std::vector<int> q_topic_, k_topic_;  // scattered: topic of each block's cell
  std::vector<std::vector<double>> topics_;
  std::vector<float> q_features_, k_features_;  // [blocks][dim]
  double noise_ = 0.0;
  uint64_t noise_key_ = 0;
};

}  // namespace

void SyntheticWorkload::qk(int step, int layer, std::vector<float>& q,
                           std::vector<float>& k) const {
  qk_tokens(step, layer, 0, shape_.tokens(), q, k);
}

void SyntheticWorkload::qk_tokens(int step, int layer, int64_t first_token, int64_t end_token,
                                  std::vector<float>& q, std::vector<float>& k) const {
  workload::require_step_and_layer(shape_, step, layer);
  const int64_t tokens = shape_.tokens();
  require(first_token >= 0 && first_token <= end_token && end_token <= tokens,
          "qk_tokens: tokens [", first_token, ", ", end_token, ") outside the ", tokens,
          " tokens of ", shape_.name);
  const int heads = shape_.heads;
  const int dim = shape_.head_dim;
  q.resize(static_cast<size_t>(end_token - first_token) * heads * dim);
  k.resize(q.size());
  if (q.empty()) return;
  const workload::BlockCentroids centroids = workload::block_centroids(shape_, block_size_);
  // Each head's features (its calibration alone is ~10 ms at 720p) depend on the head only, so
  // they are built in parallel; any thread count gives the same values.
  std::vector<std::optional<HeadFeatures>> features(static_cast<size_t>(heads));
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    features[h].emplace(shape_, seed_, block_size_, layer, h,
                        workload::head_params(shape_, seed_, centroids.blocks(), step, layer, h),
                        centroids);
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = first_token; t < end_token; ++t) {
    for (int h = 0; h < heads; ++h) {
      const size_t offset = (static_cast<size_t>(t - first_token) * heads + h) * dim;
      features[h]->write(t, q.data() + offset, k.data() + offset);
    }
  }
}

}  // namespace dbsp
