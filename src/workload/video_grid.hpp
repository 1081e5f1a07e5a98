// Where the blocks of raster-ordered video tokens lie: tokens run (frame, row, col) with col
// fastest; block b holds tokens [b * block_size, (b + 1) * block_size).
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/workload.hpp"

namespace dbsp::workload {

struct TokenPosition {
  int frame = 0;
  int row = 0;
  int col = 0;
};

inline TokenPosition token_position(const ModelShape& shape, int64_t token) {
  const int64_t per_frame = int64_t{shape.rows} * shape.cols;
  const int64_t in_frame = token % per_frame;
  return {static_cast<int>(token / per_frame), static_cast<int>(in_frame / shape.cols),
          static_cast<int>(in_frame % shape.cols)};
}

// Mean (frame, row, col) of each block's tokens. A block that wraps a row (or a frame) gets the
// mean of both parts: a smooth stand-in for its extent that keeps per-pair work to a few flops.
struct BlockCentroids {
  std::vector<float> frame;
  std::vector<float> row;
  std::vector<float> col;
  int blocks() const { return static_cast<int>(frame.size()); }
};

BlockCentroids block_centroids(const ModelShape& shape, int block_size);

// Where the video's content is (moving blobs, plus the first frame that video models attend to
// heavily), per block in [0, 1]. Shared by all heads of a layer, as real content is; it drifts
// slowly with the step.
std::vector<float> block_saliency(const ModelShape& shape, const BlockCentroids& centroids,
                                  uint64_t seed, int step, int layer);

}  // namespace dbsp::workload
