// The layer-time model used to pick U x R (SPEC 4), with the extra traffic of moved blocks.
#include <algorithm>
#include <cmath>

#include "dbsp/planner.hpp"

namespace dbsp {

namespace {

// Milliseconds one head of a rank's group costs in the all-to-all (Q, K, V in and O out): the
// four tensors of its ring shard, less its own slice, on the link; and staged, every byte sent
// packed and every byte received unpacked, the kept slice copied across.
double all_to_all_head_ms(Grid grid, int64_t tokens, const CostModel& c) {
  const double U = grid.ulysses, R = grid.ring;
  if (U <= 1) return 0.0;
  const double shard_bytes = 4.0 * (double(tokens) / R) * double(c.head_dim) * c.bytes_per_element;
  const double link_ms = shard_bytes * (U - 1) / U / (c.link_gbytes_per_s * 1e6);
  const double staging_ms =
      c.copy_gbytes_per_s > 0 ? shard_bytes * (2.0 - 1.0 / U) / (c.copy_gbytes_per_s * 1e6) : 0.0;
  return link_ms + staging_ms;
}

}  // namespace

CostModel::Breakdown CostModel::predict(Grid grid, double imbalance_ratio, int64_t kept_blocks,
                                        int heads, int64_t tokens, double moved_blocks,
                                        int max_group_heads) const {
  const double U = grid.ulysses, R = grid.ring, P = grid.ranks();
  const double bytes_per_ms = link_gbytes_per_s * 1e6;
  const double latency_ms = link_latency_us * 1e-3;
  const double token_bytes = double(heads) * head_dim * bytes_per_element;  // one token, all heads
  // The largest group's heads decide the all-to-all and the rows on the critical path.
  const double group_heads = max_group_heads > 0 ? double(max_group_heads) : double(heads) / U;
  Breakdown b;
  // One ring step of perfectly balanced compute; per-block time scales with head_dim. A rank
  // holds group_heads heads and q_blocks / R query blocks in every step.
  const double q_blocks = std::ceil(double(tokens) / block_size);
  b.compute_ms = double(kept_blocks) * us_per_block * 1e-3 * (head_dim / 128.0) / P / R +
                 group_heads * q_blocks / R * us_per_row_step * 1e-3;
  // K and V of one ring shard for this rank's heads, packed, sent and unpacked.
  const double shard_kv_bytes =
      2.0 * (double(tokens) / R) * group_heads * head_dim * bytes_per_element;
  const double staging_ms =
      copy_gbytes_per_s > 0 ? 2.0 * shard_kv_bytes / (copy_gbytes_per_s * 1e6) : 0.0;
  b.p2p_ms = R > 1 ? shard_kv_bytes / bytes_per_ms + staging_ms + latency_ms : 0.0;
  // Q, K, V in and O out of the largest group's heads, each rank keeping 1/U of what it holds.
  b.all_to_all_ms =
      U > 1 ? group_heads * all_to_all_head_ms(grid, tokens, *this) + 2 * latency_ms : 0.0;
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

double CostModel::extra_head_blocks(Grid grid, int64_t tokens) const {
  const double q_blocks = std::ceil(double(tokens) / block_size);
  const double extra_ms =
      all_to_all_head_ms(grid, tokens, *this) + q_blocks * us_per_row_step * 1e-3;
  // A group's blocks spread over its R ranks: each block costs us_per_block / R of group time.
  const double ms_per_block = us_per_block * 1e-3 * (head_dim / 128.0) / grid.ring;
  return ms_per_block > 0 ? extra_ms / ms_per_block : 0.0;
}

double CostModel::shared_head_blocks(Grid grid, int64_t tokens) const {
  const double ms_per_block = us_per_block * 1e-3 * (head_dim / 128.0) / grid.ring;
  // K and V: half of the four tensors one head moves.
  return ms_per_block > 0 ? 0.5 * all_to_all_head_ms(grid, tokens, *this) / ms_per_block : 0.0;
}

}  // namespace dbsp
