// The layer-time model used to pick U x R (SPEC 4), with the extra traffic of moved blocks.
#include <algorithm>
#include <cmath>

#include "dbsp/planner.hpp"

namespace dbsp {

CostModel::Breakdown CostModel::predict(Grid grid, double imbalance_ratio, int64_t kept_blocks,
                                        int heads, int64_t tokens, double moved_blocks) const {
  const double U = grid.ulysses, R = grid.ring, P = grid.ranks();
  const double bytes_per_ms = link_gbytes_per_s * 1e6;
  const double latency_ms = link_latency_us * 1e-3;
  const double token_bytes = double(heads) * head_dim * bytes_per_element;  // one token, all heads
  Breakdown b;
  // One ring step of perfectly balanced compute; per-block time scales with head_dim. A rank
  // holds heads / U heads and q_blocks / R query blocks in every step.
  const double q_blocks = std::ceil(double(tokens) / block_size);
  b.compute_ms = double(kept_blocks) * us_per_block * 1e-3 * (head_dim / 128.0) / P / R +
                 double(heads) / U * q_blocks / R * us_per_row_step * 1e-3;
  // K and V of one ring shard for this rank's heads.
  b.p2p_ms = R > 1 ? 2.0 * (tokens / R) * (token_bytes / U) / bytes_per_ms + latency_ms : 0.0;
  // Q, K, V in and O out, each rank keeping 1/U of what it holds.
  b.all_to_all_ms =
      U > 1 ? 4.0 * (tokens / P) * token_bytes * (U - 1) / U / bytes_per_ms + 2 * latency_ms : 0.0;
  // A moved block carries Q in and O out (query) or K and V in (key), for every head, split
  // over the ranks that send it.
  b.move_ms = moved_blocks > 0 ? 2.0 * moved_blocks * block_size * token_bytes / P /
                                         (std::min(move_gbytes_per_s, link_gbytes_per_s) * 1e6) +
                                     latency_ms
                               : 0.0;
  b.ring_ms = (std::max(b.compute_ms, b.p2p_ms) * (R - 1) + b.compute_ms) * imbalance_ratio;
  b.total_ms = b.all_to_all_ms + b.ring_ms + b.move_ms;
  return b;
}

}  // namespace dbsp
