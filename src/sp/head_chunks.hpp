// How a head group is cut into pipelined chunks (SpOptions::head_chunks, grids without a ring).
// The device executor and the emulator cut the same way, and every rank cuts every group alike so
// that sender and receiver agree on each slab's chunk.
//
// A head has two chunks. Its input chunk says which all-to-all brings its Q, K and V and which
// kernel computes it; its output chunk says which all-to-all returns its O. They differ only for
// the heads a rank computes last (see HeadChunks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/partition.hpp"
#include "dbsp/sp_attention.hpp"

namespace dbsp::sp {

// First of the group's `heads` (in its order) that input chunk `c` of `chunks` holds; c == chunks
// gives `heads`. With three chunks or more, the first and the last chunk take half a middle
// chunk's share: the first chunk's inputs arrive with no kernel to hide them and the last chunk's
// output returns with none, so smaller ends expose less of the all-to-all (at 720p, 5 heads per
// rank: 1 + 3 + 1 instead of 2 + 2 + 1). Two chunks split evenly. A group with heads never leaves
// the first chunk empty: its rank would wait for the second chunk's inputs before computing
// anything (a heavy head alone on its rank is the slowest rank's whole work).
inline int head_chunk_begin(int c, int heads, int chunks) {
  if (c <= 0) return 0;
  if (c >= chunks) return heads;
  int64_t begin = 0;
  if (chunks <= 2) {
    begin = int64_t{c} * heads / chunks;
  } else {
    // Shares in halves: 1 for the first chunk, 2 for each middle one, 1 for the last.
    const int64_t total = 2 * int64_t{chunks - 1};
    const int64_t before = 1 + 2 * int64_t{c - 1};
    begin = (int64_t{heads} * before + total / 2) / total;
  }
  return static_cast<int>(std::max<int64_t>(begin, std::min(heads, 1)));
}

// Whether the kernel of a head chunk of `chunk_heads` heads splits its long rows; `last`: no later
// chunk of the rank launches a kernel. A rank's last kernel of one head has nothing to fill the
// ragged last wave of its long rows (measured: ranks holding one heavy head alone ran 5.6% over
// their prediction, BENCHMARKS.md session 14); an earlier one's tail is filled by the next
// chunk's kernel on the other stream, and splitting it only adds the merge.
inline bool split_chunk_rows(const SpOptions& options, size_t chunk_heads, bool last) {
  return options.split_long_rows && chunk_heads == 1 && last;
}

// Whether a ring step's kernel (or a whole layer's, without chunks) of `heads` heads over
// `key_blocks` key blocks splits its long rows (SpOptions::split_step_heads): with fewer key
// blocks than the split floor no row can split, and the kernel is spared the merge's launch.
inline bool split_step_rows(const SpOptions& options, size_t heads, size_t key_blocks) {
  return heads <= static_cast<size_t>(std::max(0, options.split_step_heads)) &&
         key_blocks >= static_cast<size_t>(options.min_split_blocks);
}

// Chunks a layer on `grid` is cut into: `requested` (SpOptions::head_chunks) for grids without a
// ring, else one; 0 asks for kAutoHeadChunks where there is an all-to-all to hide. At P = 1
// (U = 1) there is none and chunks cost the in-place path (one chunk lets a rank whose local
// tensors are its inputs skip copies), but they run when asked: that is how one GPU tests the
// pipeline.
inline int layer_head_chunks(Grid grid, int requested) {
  require(requested >= 0, "head_chunks must be >= 0 (0: auto), got ", requested);
  if (grid.ring != 1) return 1;
  if (requested == 0) return grid.ulysses > 1 ? kAutoHeadChunks : 1;
  return requested;
}

// Every head's input and output chunk, by global head.
//
// Output chunk c is one all-to-all of every rank, so it leaves once every rank has computed the
// heads it carries, and output chunks leave in order. The last one is exposed: nothing computes
// beside it. Hence a group's last computed heads (its last non-empty input chunk) return in the
// last output chunk, whatever their input chunk: a rank whose one heavy head is in input chunk 0
// would otherwise hold output chunk 0 until the end of the layer, and every later output chunk
// behind it. The other heads return in their input chunk's output, beside later kernels.
struct HeadChunks {
  int chunks = 1;
  std::vector<int> in, out;  // by global head, as its owner group computes it
  // Per Partition::head_splits entry, the chunks of the shared rows in the sharing group.
  std::vector<int> shared_in, shared_out;

  HeadChunks(const Partition& partition, int chunks_)
      : chunks(chunks_),
        in(static_cast<size_t>(partition.heads), 0),
        out(static_cast<size_t>(partition.heads), 0),
        shared_in(partition.head_splits.size(), 0),
        shared_out(partition.head_splits.size(), 0),
        splits_(partition.head_splits),
        owner_(partition.head_group) {
    if (chunks <= 1) return;
    for (int g = 0; g < partition.grid.ulysses; ++g) {
      const std::vector<int> heads = partition.heads_of(g);
      const int n = static_cast<int>(heads.size());
      std::vector<int> chunk_of(heads.size());
      for (int c = 0; c < chunks; ++c) {
        for (int l = head_chunk_begin(c, n, chunks); l < head_chunk_begin(c + 1, n, chunks); ++l) {
          chunk_of[l] = c;
        }
      }
      const int last = n > 0 ? chunk_of[n - 1] : 0;
      for (int l = 0; l < n; ++l) {
        const int h = heads[l];
        const int returned = chunk_of[l] == last ? chunks - 1 : chunk_of[l];
        const int split = shared_by(g, h);
        (split < 0 ? in[h] : shared_in[split]) = chunk_of[l];
        (split < 0 ? out[h] : shared_out[split]) = returned;
      }
    }
  }

  // Input and output chunk of `head` in `group` (which computes rows of it).
  int in_of(int group, int head) const {
    const int split = shared_by(group, head);
    return split < 0 ? in[head] : shared_in[split];
  }
  int out_of(int group, int head) const {
    const int split = shared_by(group, head);
    return split < 0 ? out[head] : shared_out[split];
  }

  // The last input chunk among `heads` (those of one rank, in `group`) whose output leaves in
  // output chunk `c`: that chunk's all-to-all waits for its kernel. -1 when none does.
  int out_waits_for(int group, const std::vector<int>& heads, int c) const {
    int after = -1;
    for (int h : heads) {
      if (out_of(group, h) == c) after = std::max(after, in_of(group, h));
    }
    return after;
  }

 private:
  // The head_splits entry through which `group` shares `head` (not as its owner), or -1.
  int shared_by(int group, int head) const {
    if (owner_[head] == group) return -1;
    for (size_t s = 0; s < splits_.size(); ++s) {
      if (splits_[s].head == head && splits_[s].group == group) return static_cast<int>(s);
    }
    return -1;
  }
  std::vector<HeadSplit> splits_;
  std::vector<int> owner_;
};

}  // namespace dbsp::sp
