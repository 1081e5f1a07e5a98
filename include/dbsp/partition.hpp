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

  // Static USP split: contiguous head groups (sizes differ by at most one when U does not divide
  // H) and contiguous home shards (home_shard in block_layout.hpp).
  static Partition contiguous(Grid grid, int heads, int q_blocks, int k_blocks);

  std::vector<int> heads_of(int group) const;                // in head_order
  int max_group_heads() const;                               // heads of the largest Ulysses group
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
