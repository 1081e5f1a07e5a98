// The seeded parameters of one synthetic attention head at one denoising step: its pattern family,
// target density and shape. Family and sinks are fixed per (layer, head); the rest wanders smoothly
// between seeded anchors so that consecutive steps differ by a few percent of blocks.
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/workload.hpp"
#include "workload/video_grid.hpp"

namespace dbsp::workload {

struct HeadParams {
  HeadFamily family = HeadFamily::spatial_window;
  double density = 0.1;  // target share of kept blocks
  // spatial_window / temporal_stripe: affinity 1 / (1 + (df/frame_width)^2 + (dr/row_width)^2 +
  // (dc/col_width)^2) between block centroids (frames, rows, cols of the latent grid).
  double frame_width = 1.0;
  double row_width = 1.0;
  double col_width = 1.0;
  // diagonal_band / sink_global: width of the local band, in blocks.
  double band_width = 1.0;
  // sink_global: key blocks every query attends to.
  std::vector<int> sink_blocks;
  // scattered: side of the square cells, in blocks, within which blocks are kept together.
  int cell_blocks = 1;
  // Weight of per-pair noise against the family's affinity (which lies in [0, 1]).
  double noise_amplitude = 0.1;
  // How strongly salient content (video_grid.hpp) attracts and emits attention: 0 = not at all.
  double content_gain = 0.0;
};

// Anchors of the smooth drift lie this many steps apart.
inline constexpr int kAnchorSteps = 10;

// Throws unless 0 <= step < shape.steps and 0 <= layer < shape.layers.
void require_step_and_layer(const ModelShape& shape, int step, int layer);

// blocks: block count of the (square) mask.
HeadParams head_params(const ModelShape& shape, uint64_t seed, int blocks, int step, int layer,
                       int head);

// Block positions in the head's own units, where distance 1 is the head's window width:
// (frame, row, col) over the widths for spatial_window / temporal_stripe, (block index over the
// band width, 0, 0) for diagonal_band / sink_global, all zero for scattered.
struct ScaledBlocks {
  std::vector<float> x, y, z;
};
ScaledBlocks scaled_blocks(const HeadParams& params, const BlockCentroids& centroids);

}  // namespace dbsp::workload
