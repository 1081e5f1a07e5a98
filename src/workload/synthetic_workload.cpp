// SyntheticWorkload: construction, geometry and the per-head pattern summary.
#include <utility>

#include "dbsp/error.hpp"
#include "dbsp/workload.hpp"
#include "workload/head_params.hpp"

namespace dbsp {

SyntheticWorkload::SyntheticWorkload(ModelShape shape, uint64_t seed, int block_size)
    : shape_(std::move(shape)), seed_(seed), block_size_(block_size) {
  require(shape_.layers > 0 && shape_.heads > 0 && shape_.head_dim > 0 && shape_.steps > 0,
          "SyntheticWorkload: layers, heads, head_dim and steps must be > 0, got ", shape_.layers,
          ", ", shape_.heads, ", ", shape_.head_dim, ", ", shape_.steps);
  require(shape_.frames > 0 && shape_.rows > 0 && shape_.cols > 0,
          "SyntheticWorkload: the latent grid must be non-empty, got ", shape_.frames, " x ",
          shape_.rows, " x ", shape_.cols);
  require(block_size_ > 0, "SyntheticWorkload: block_size must be > 0, got ", block_size_);
  require(shape_.tokens() < (int64_t{1} << 31),
          "SyntheticWorkload: at most 2^31 - 1 tokens supported, got ", shape_.tokens());
}

MaskGeometry SyntheticWorkload::geometry() const {
  return MaskGeometry{shape_.tokens(), shape_.tokens(), block_size_, block_size_};
}

HeadPattern SyntheticWorkload::head_pattern(int step, int layer, int head) const {
  workload::require_step_and_layer(shape_, step, layer);
  require(head >= 0 && head < shape_.heads, "SyntheticWorkload: head must be in [0, ", shape_.heads,
          "), got ", head);
  const workload::HeadParams params =
      workload::head_params(shape_, seed_, geometry().q_blocks(), step, layer, head);
  return HeadPattern{params.family, params.density};
}

}  // namespace dbsp
