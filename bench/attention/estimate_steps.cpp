// Per-step timing of mask estimation (see estimate_steps.hpp).
#include "estimate_steps.hpp"

#include <cmath>

#include "kernels/cuda/common/device_buffer.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"
#include "timing.hpp"

namespace dbsp::bench {

using cuda::detail::DeviceBuffer;

EstimateSteps time_estimate_steps(const void* q, const void* k, int64_t seq, int heads,
                                  int head_dim, int reps) {
  const int blocks = static_cast<int>((seq + 63) / 64);
  const size_t rows = static_cast<size_t>(heads) * blocks;
  DeviceBuffer pooled_q(rows * head_dim * 4), pooled_k(rows * head_dim * 4),
      scores(rows * blocks * 4), count(rows * 4), offset(rows * 8), index(rows * blocks * 4);
  EstimateSteps steps;
  steps.pool_ms = median_ms(reps, [&] {
    cuda::detail::launch_block_mean(cuda::DType::bf16, q, seq, heads, head_dim, 64, blocks,
                                    pooled_q.get<float>(), nullptr);
    cuda::detail::launch_block_mean(cuda::DType::bf16, k, seq, heads, head_dim, 64, blocks,
                                    pooled_k.get<float>(), nullptr);
  });
  const float scale = static_cast<float>(1.0 / std::sqrt(double(head_dim)));
  steps.scores_ms = median_ms(reps, [&] {
    cuda::detail::launch_block_scores(pooled_q.get<float>(), pooled_k.get<float>(), heads, blocks,
                                      blocks, head_dim, scale, scores.get<float>(), nullptr);
  });
  cuda::detail::TopPConfig config;
  config.heads = heads;
  config.q_blocks = config.k_blocks = blocks;
  config.seq_k = seq;
  config.sink_count = 1;
  steps.top_p_ms = median_ms(reps, [&] {
    cuda::detail::launch_top_p_rows(config, scores.get<float>(), count.get<int32_t>(),
                                    offset.get<int64_t>(), index.get<int32_t>(), nullptr);
  });
  return steps;
}

}  // namespace dbsp::bench
