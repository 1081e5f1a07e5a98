// Block centroids on the video grid and the seeded content (saliency) field.
#include "workload/video_grid.hpp"

#include <algorithm>
#include <cmath>

#include "workload/seeded_hash.hpp"

namespace dbsp::workload {

BlockCentroids block_centroids(const ModelShape& shape, int block_size) {
  const int64_t tokens = shape.tokens();
  const int blocks = static_cast<int>((tokens + block_size - 1) / block_size);
  BlockCentroids centroids;
  centroids.frame.resize(blocks);
  centroids.row.resize(blocks);
  centroids.col.resize(blocks);
  for (int b = 0; b < blocks; ++b) {
    const int64_t begin = int64_t{b} * block_size;
    const int64_t end = std::min<int64_t>(begin + block_size, tokens);
    double frame = 0.0, row = 0.0, col = 0.0;
    for (int64_t t = begin; t < end; ++t) {
      const TokenPosition p = token_position(shape, t);
      frame += p.frame;
      row += p.row;
      col += p.col;
    }
    const double count = static_cast<double>(end - begin);
    centroids.frame[b] = static_cast<float>(frame / count);
    centroids.row[b] = static_cast<float>(row / count);
    centroids.col[b] = static_cast<float>(col / count);
  }
  return centroids;
}

std::vector<float> block_saliency(const ModelShape& shape, const BlockCentroids& centroids,
                                  uint64_t seed, int step, int layer) {
  // Two blobs per video, each moving on a straight line across frames and present over a span of
  // frames (so content, and with it work, is uneven along the sequence); their paths creep with
  // the denoising step and shift a little from layer to layer.
  constexpr int kBlobs = 2;
  struct Blob {
    double row0, col0, row_speed, col_speed, row_sigma, col_sigma, frame_center, frame_sigma;
  };
  Blob blobs[kBlobs];
  const double progress = shape.steps > 1 ? static_cast<double>(step) / (shape.steps - 1) : 0.0;
  for (int k = 0; k < kBlobs; ++k) {
    const auto u = [&](int what) { return unit_of(hash_of(seed, Salt::saliency, k, what)); };
    const double layer_shift = 0.05 * (unit_of(hash_of(seed, Salt::saliency, k, 9, layer)) - 0.5);
    const double frames = std::max(1, shape.frames - 1);
    blobs[k].row0 = shape.rows * (0.2 + 0.6 * u(0) + layer_shift + 0.05 * progress);
    blobs[k].col0 = shape.cols * (0.2 + 0.6 * u(1) - layer_shift + 0.08 * progress);
    blobs[k].row_speed = shape.rows * 0.4 * (u(2) - 0.5) / frames;
    blobs[k].col_speed = shape.cols * 0.6 * (u(3) - 0.5) / frames;
    blobs[k].row_sigma = shape.rows * (0.08 + 0.12 * u(4));
    blobs[k].col_sigma = shape.cols * (0.08 + 0.12 * u(5));
    blobs[k].frame_center = frames * u(6);
    blobs[k].frame_sigma = std::max(1.0, frames * (0.08 + 0.17 * u(7)));
  }
  std::vector<float> saliency(centroids.blocks());
  for (int b = 0; b < centroids.blocks(); ++b) {
    double value = centroids.frame[b] < 1.0f ? 1.0 : 0.0;
    for (const Blob& blob : blobs) {
      const double dr =
          (centroids.row[b] - blob.row0 - blob.row_speed * centroids.frame[b]) / blob.row_sigma;
      const double dc =
          (centroids.col[b] - blob.col0 - blob.col_speed * centroids.frame[b]) / blob.col_sigma;
      const double df = (centroids.frame[b] - blob.frame_center) / blob.frame_sigma;
      value += std::exp(-0.5 * (dr * dr + dc * dc + df * df));
    }
    saliency[b] = static_cast<float>(std::min(1.0, value));
  }
  return saliency;
}

}  // namespace dbsp::workload
