// Where a layer's work runs on a U x R grid: heads to Ulysses ranks, query and key blocks to ring
// shards. Rank p sits at Ulysses rank p % U and ring rank p / U; head group g is the set of heads
// that Ulysses rank g holds, and each head group may use its own block-to-shard assignment (the
// Ulysses all-to-all moves tokens anyway, so a per-group assignment costs no extra collective).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dbsp {

struct Grid {
  int ulysses = 1;
  int ring = 1;
  int ranks() const { return ulysses * ring; }
  std::string name() const;  // "U4R2"
  bool operator==(const Grid&) const = default;
};

// Every U x R with U * R == ranks, Ulysses-only first.
std::vector<Grid> factorizations(int ranks);
// Parses "UxR", "4x2" or "U4R2".
Grid parse_grid(const std::string& text);

// Query blocks [begin, end).
struct BlockRange {
  int begin = 0;
  int end = 0;
  int size() const { return end > begin ? end - begin : 0; }
  bool contains(int block) const { return block >= begin && block < end; }
  bool operator==(const BlockRange&) const = default;
};

// A head whose query rows two groups share (grids without a ring only): `group` computes the
// head's query blocks `rows`, a prefix or a suffix of them, against all of its keys; the group
// that owns the head (Partition::head_group) computes the others. Both receive the head's K and V.
// With 40 heads on 16 ranks whole heads cannot balance (2 or 3 heads a rank, of unequal weight);
// a share of the heaviest group's head moved to the lightest group can.
struct HeadSplit {
  int head = 0;
  int group = 0;
  BlockRange rows;
  bool operator==(const HeadSplit&) const = default;
};

struct Partition {
  Grid grid;
  int heads = 0;
  int q_blocks = 0;
  int k_blocks = 0;
  std::vector<int> head_group;            // [heads]: Ulysses rank that owns the head
  std::vector<std::vector<int>> q_shard;  // [ulysses][q_blocks]: ring shard of each query block
  std::vector<std::vector<int>> k_shard;  // [ulysses][k_blocks]: ring shard of each key block
  // The order in which every group holds its heads (a permutation of all heads; empty: ascending).
  // A rank's local tensors and its pipelined head chunks (SpOptions::head_chunks) follow it, so
  // the planner puts a group's heavy heads where they hide the all-to-all (pipeline_head_order).
  std::vector<int> head_order;
  // Heads whose query rows a second group shares (at most one split per head; no ring).
  std::vector<HeadSplit> head_splits;

  // Static USP split: contiguous head groups (sizes differ by at most one when U does not divide
  // H) and contiguous home shards (home_shard in block_layout.hpp).
  static Partition contiguous(Grid grid, int heads, int q_blocks, int k_blocks);

  // The heads group `group` computes rows of: its own in head_order, then the heads it shares
  // (head_splits order).
  std::vector<int> heads_of(int group) const;
  // The query blocks of `head` that `group` computes: all for its own unsplit heads, the split's
  // rows or the others for a shared one, none for the rest.
  BlockRange rows_of(int group, int head) const;
  int max_group_heads() const;  // heads of the largest Ulysses group, shared ones included
  std::vector<int> q_blocks_of(int group, int shard) const;  // ascending
  std::vector<int> k_blocks_of(int group, int shard) const;  // ascending
  // Query plus key blocks that leave their home shard, each group weighted by its share of heads
  // (so a plan that moves one block for every head counts that block once).
  double moved_blocks() const;
  // Throws dbsp::Error unless every head and block is assigned exactly once to a valid place.
  void validate() const;
  uint64_t hash() const;  // stable across processes and platforms
};

}  // namespace dbsp
