// How the warp-specialised kernel's two consumer warpgroups share work (host and device).
#pragma once

namespace dbsp::cuda::detail {

// separate: one pipeline per consumer, 64-query items, any mask. shared_dense: both consumers take
// halves of a 128-query item of a dense mask and read the same K/V stages. paired: both consumers
// take the two adjacent 64-query rows of a block-list mask (a 128-query item); the producer walks
// the union of the two rows' key-block lists once and each stage tells which rows keep it, so a
// key block both rows keep is loaded once for 128 queries.
enum class WsMode { separate, shared_dense, paired };

// Queries per work item.
constexpr int ws_item_rows(WsMode mode) { return mode == WsMode::separate ? 64 : 128; }

}  // namespace dbsp::cuda::detail
