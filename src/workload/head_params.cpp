// Seeded draws of synthetic head parameters (family, density, widths) and their drift over steps.
#include "workload/head_params.hpp"

#include <algorithm>
#include <cmath>

#include "dbsp/error.hpp"
#include "workload/seeded_hash.hpp"

namespace dbsp::workload {
namespace {

// Uniform in [0, 1), fixed per (layer, head).
double fixed_unit(uint64_t seed, Salt salt, int layer, int head) {
  return unit_of(hash_of(seed, salt, layer, head));
}

// In [0, 1), moving smoothly with the step: seeded anchors every kAnchorSteps, smoothstep between,
// so the slope is zero at each anchor and at most 1.5 / kAnchorSteps per step.
double drifting_unit(uint64_t seed, Salt salt, int layer, int head, int step) {
  const int anchor = step / kAnchorSteps;
  const double t = static_cast<double>(step % kAnchorSteps) / kAnchorSteps;
  const double smooth = t * t * (3.0 - 2.0 * t);
  const double from = unit_of(hash_of(seed, salt, layer, head, anchor));
  const double to = unit_of(hash_of(seed, salt, layer, head, anchor + 1));
  return from + (to - from) * smooth;
}

double log_uniform(double u, double low, double high) {
  return low * std::exp(u * std::log(high / low));
}

// Multiplies `base` by a factor in [1 - spread, 1 + spread] (log-symmetric) that drifts.
double drifted(double base, double spread, double u) {
  return base * std::exp((2.0 * u - 1.0) * std::log1p(spread));
}

HeadFamily draw_family(double u) {
  // Shares loosely follow what PAROAttention / SpargeAttn papers show for video DiTs: local
  // spatial windows dominate, temporal stripes next, a minority of sink and scattered heads.
  if (u < 0.34) return HeadFamily::spatial_window;
  if (u < 0.54) return HeadFamily::temporal_stripe;
  if (u < 0.66) return HeadFamily::sink_global;
  if (u < 0.80) return HeadFamily::diagonal_band;
  return HeadFamily::scattered;
}

// A wide three-part mixture: ~35% sparse heads (3-12%), ~40% medium (15-50%), ~25% dense
// (50-85%); mean about 0.33. The spread between heads is what unbalances Ulysses.
double draw_base_density(double kind, double value) {
  if (kind < 0.35) return log_uniform(value, 0.03, 0.12);
  if (kind < 0.75) return 0.15 + 0.35 * value;
  return 0.50 + 0.35 * value;
}

}  // namespace

void require_step_and_layer(const ModelShape& shape, int step, int layer) {
  require(step >= 0 && step < shape.steps, "SyntheticWorkload: step must be in [0, ", shape.steps,
          ") for ", shape.name, ", got ", step);
  require(layer >= 0 && layer < shape.layers, "SyntheticWorkload: layer must be in [0, ",
          shape.layers, ") for ", shape.name, ", got ", layer);
}

HeadParams head_params(const ModelShape& shape, uint64_t seed, int blocks, int step, int layer,
                       int head) {
  HeadParams p;
  const auto fixed = [&](Salt salt) { return fixed_unit(seed, salt, layer, head); };
  const auto drifting = [&](Salt salt) { return drifting_unit(seed, salt, layer, head, step); };

  p.family = draw_family(fixed(Salt::family));
  const double base_density =
      draw_base_density(fixed(Salt::density_kind), fixed(Salt::density_value));
  p.density = std::clamp(drifted(base_density, 0.12, drifting(Salt::density_drift)), 0.005, 0.95);
  p.noise_amplitude = log_uniform(fixed(Salt::noise_amplitude), 0.03, 0.25);
  p.content_gain = 0.5 + 2.5 * fixed(Salt::content_gain);

  const double width_drift = drifting(Salt::width_drift);
  const double a = fixed(Salt::width_a);
  const double b = fixed(Salt::width_b);
  const double c = fixed(Salt::width_c);
  switch (p.family) {
    case HeadFamily::spatial_window:
      p.row_width = drifted(shape.rows * log_uniform(a, 0.04, 0.3), 0.1, width_drift);
      p.col_width = p.row_width * shape.cols / shape.rows * log_uniform(b, 0.7, 1.4);
      p.frame_width =
          drifted(log_uniform(c, 0.4, std::max(0.5, 1.0 * shape.frames)), 0.1, width_drift);
      break;
    case HeadFamily::temporal_stripe:
      p.row_width = drifted(log_uniform(a, 0.5, 2.0), 0.1, width_drift);
      p.col_width = p.row_width * log_uniform(b, 1.0, 3.0);
      p.frame_width = shape.frames * log_uniform(c, 1.0, 4.0);
      break;
    case HeadFamily::diagonal_band:
      p.band_width = drifted(log_uniform(a, 1.0, std::max(1.5, 0.15 * blocks)), 0.1, width_drift);
      break;
    case HeadFamily::sink_global: {
      p.band_width = drifted(log_uniform(a, 1.0, std::max(1.5, 0.05 * blocks)), 0.1, width_drift);
      p.sink_blocks.push_back(0);
      const int extra = static_cast<int>(3.0 * b);
      for (int s = 0; s < extra; ++s) {
        const uint64_t h = hash_of(seed, Salt::sinks, layer, head, s);
        p.sink_blocks.push_back(static_cast<int>(h % static_cast<uint64_t>(blocks)));
      }
      break;
    }
    case HeadFamily::scattered:
      p.cell_blocks =
          static_cast<int>(std::lround(log_uniform(a, 2.0, std::clamp(0.1 * blocks, 2.0, 16.0))));
      break;
  }
  return p;
}

ScaledBlocks scaled_blocks(const HeadParams& p, const BlockCentroids& centroids) {
  const int n = centroids.blocks();
  ScaledBlocks s;
  s.x.assign(n, 0.0f);
  s.y.assign(n, 0.0f);
  s.z.assign(n, 0.0f);
  for (int b = 0; b < n; ++b) {
    switch (p.family) {
      case HeadFamily::spatial_window:
      case HeadFamily::temporal_stripe:
        s.x[b] = static_cast<float>(centroids.frame[b] / p.frame_width);
        s.y[b] = static_cast<float>(centroids.row[b] / p.row_width);
        s.z[b] = static_cast<float>(centroids.col[b] / p.col_width);
        break;
      case HeadFamily::diagonal_band:
      case HeadFamily::sink_global:
        s.x[b] = static_cast<float>(b / p.band_width);
        break;
      case HeadFamily::scattered:
        break;
    }
  }
  return s;
}

}  // namespace dbsp::workload
