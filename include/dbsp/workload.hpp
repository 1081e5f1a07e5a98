// Synthetic video-DiT workloads (SPEC 5): model shapes and seeded masks / Q-K tensors with the
// structure of real video attention heads (spatial windows, temporal stripes, sinks, bands).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dbsp/block_mask.hpp"

namespace dbsp {

struct ModelShape {
  std::string name;
  int layers = 1;
  int heads = 1;
  int head_dim = 64;
  int frames = 1;  // latent grid after patching: tokens = frames * rows * cols
  int rows = 1;
  int cols = 1;
  int steps = 50;  // denoising steps
  int64_t tokens() const { return int64_t{frames} * rows * cols; }
};

// Presets: "wan2.1-480p", "wan2.1-720p", "cogvideox1.5", "tiny". Throws on an unknown name.
const ModelShape& model_preset(std::string_view name);
std::vector<std::string> model_preset_names();

enum class HeadFamily { spatial_window, temporal_stripe, sink_global, diagonal_band, scattered };
const char* to_string(HeadFamily family);

struct HeadPattern {
  HeadFamily family;
  double density;  // target share of kept blocks
};

class SyntheticWorkload {
 public:
  SyntheticWorkload(ModelShape shape, uint64_t seed, int block_size = 64);

  const ModelShape& shape() const { return shape_; }
  uint64_t seed() const { return seed_; }
  int block_size() const { return block_size_; }
  MaskGeometry geometry() const;

  HeadPattern head_pattern(int step, int layer, int head) const;
  BlockMask block_mask(int step, int layer) const;
  // Q and K [tokens, heads, head_dim] (float) whose estimated masks show the head's pattern.
  void qk(int step, int layer, std::vector<float>& q, std::vector<float>& k) const;
  // Tokens [first_token, end_token) of qk, [end - first, heads, head_dim], equal bit for bit to
  // that slice of qk's tensors: a rank generates only its sequence shard. Every token's values
  // depend on its block and its own index alone, but each call redoes the per-head calibration.
  void qk_tokens(int step, int layer, int64_t first_token, int64_t end_token, std::vector<float>& q,
                 std::vector<float>& k) const;

 private:
  ModelShape shape_;
  uint64_t seed_;
  int block_size_;
};

}  // namespace dbsp
