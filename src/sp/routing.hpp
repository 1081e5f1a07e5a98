// Routing of one layer on one rank: which slabs of Q, K, V go where in the all-to-all-v, which K/V
// slabs each ring step moves, and the mask-aware filtering of both. A pure function of the mask,
// the partition and the rank, so every rank derives matching send and receive lists.
#pragma once

#include <vector>

#include "dbsp/block_layout.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/partition.hpp"
#include "dbsp/sp_attention.hpp"
#include "sp/slab.hpp"

namespace dbsp::sp {

struct RingStep {
  int origin = 0;               // ring rank whose key shard this step computes against
  int dest = 0;                 // ring rank that computes against this rank's shard at this step
  std::vector<int> key_blocks;  // global key blocks in the step's K/V buffer, in buffer order
  BlockLayout key_layout;       // their tokens
  std::vector<Slab> send;       // slabs of this rank's held K/V sent to `dest` (step > 0)
  std::vector<Slab> recv;       // slabs of the step buffer received from `origin` (step > 0)
};

struct LayerRouting {
  Grid grid;
  int rank = 0;
  int group = 0;      // Ulysses rank = head group
  int ring_rank = 0;  // ring shard
  SequenceShard q_input, k_input;
  std::vector<int> heads;     // global heads of this rank's group, in the partition's head_order
  std::vector<int> q_blocks;  // query blocks held after the all-to-all, ascending
  // Per local head, the positions in q_blocks of the rows this rank computes: all of them, but
  // for a head it shares with another group (Partition::head_splits: its rows or the others).
  // The other rows of such a head are neither received, computed nor returned.
  std::vector<BlockRange> head_rows;
  // Whether some local Q rows may never be received (mask-aware routing skips rows without a
  // kept key; a shared head's other rows are another group's), so executors zero the local Q.
  bool clear_local_q = false;
  std::vector<int> k_blocks;  // key blocks held after the all-to-all, ascending
  BlockLayout q_local, k_local;
  // The all-to-all, indexed by world rank: slabs of this rank's input tensors to send (heads are
  // global) and slabs of its local tensors to fill (heads index `heads`). K and V share one list.
  // The output return uses the Q lists with the roles swapped.
  std::vector<std::vector<Slab>> send_q, send_kv, recv_q, recv_kv;
  std::vector<RingStep> steps;  // R steps; steps[0] computes against this rank's own shard
  // Token rows (one head each) moved to and from other ranks, and what sending every slab would
  // have moved to them, over the whole layer (Q, K, V, ring, O).
  int64_t rows_sent = 0;
  int64_t rows_received = 0;
  int64_t baseline_rows_sent = 0;
};

// Whether this rank's local tensors are its input shards as they are: every one of the `heads`
// heads, and its own query and key blocks in order (P = 1, and ring grids whose plan moves no
// block). Such a rank neither sends nor receives in the all-to-alls, and its executor may compute
// on the caller's buffers.
bool local_is_input(const LayerRouting& route, int heads);
// Whether this rank's output shard shares no memory with its Q, K or V shards (`row_bytes`: one
// token's row of one head). A rank computing in place writes O while its kernels still read
// Q, K and V, so it does so only then (a caller may write O over Q).
bool output_apart_from_inputs(const LayerRouting& route, int heads, int64_t row_bytes,
                              const void* q, const void* k, const void* v, const void* out);

// The local mask of one ring step: rows (heads[h], q_blocks[i]) restricted to `key_blocks`
// (ascending), with key indices local to that list. Equal to
// mask.slice(heads, q_blocks, key_blocks).to_csr(), but walks only the kept bits.
// With `with_indices` false only kv_count and row_offset are filled (the device path writes
// kv_index itself from the mask bits: sp/cuda/block_indices.hpp). `head_rows`, when given: per
// head the positions in q_blocks of the rows computed here (LayerRouting::head_rows); the others
// are left empty.
BlockCsr local_block_csr(const BlockMask& mask, const std::vector<int>& heads,
                         const std::vector<int>& q_blocks, const std::vector<int>& key_blocks,
                         bool with_indices = true,
                         const std::vector<BlockRange>* head_rows = nullptr);
// route.head_rows of the given local heads (global ids, each one of route.heads).
std::vector<BlockRange> head_rows_of(const LayerRouting& route, const std::vector<int>& heads);

// Throws unless the problem, the mask and the partition describe the same layer on `ranks` ranks.
void check_layer(int ranks, const SpProblem& problem, const BlockMask& mask,
                 const Partition& partition);

LayerRouting build_routing(const BlockMask& mask, const Partition& partition,
                           const BlockLayout& q_layout, const BlockLayout& k_layout, int rank,
                           bool mask_aware);

}  // namespace dbsp::sp
