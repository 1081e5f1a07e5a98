// How a head group is cut into pipelined chunks (SpOptions::head_chunks, grids without a ring).
// The device executor and the emulator cut the same way, and every rank cuts every group alike so
// that sender and receiver agree on each slab's chunk.
#pragma once

#include <cstdint>

namespace dbsp::sp {

// First of the group's `heads` (in its order) that chunk `c` of `chunks` holds; c == chunks gives
// `heads`. With three chunks or more, the first and the last chunk take half a middle chunk's
// share: the first chunk's inputs arrive with no kernel to hide them and the last chunk's output
// returns with none, so smaller ends expose less of the all-to-all (at 720p, 5 heads per rank:
// 1 + 3 + 1 instead of 2 + 2 + 1). Two chunks split evenly.
inline int head_chunk_begin(int c, int heads, int chunks) {
  if (chunks <= 2) return static_cast<int>(int64_t{c} * heads / chunks);
  if (c <= 0) return 0;
  if (c >= chunks) return heads;
  // Shares in halves: 1 for the first chunk, 2 for each middle one, 1 for the last.
  const int64_t total = 2 * int64_t{chunks - 1};
  const int64_t before = 1 + 2 * int64_t{c - 1};
  return static_cast<int>((int64_t{heads} * before + total / 2) / total);
}

// Chunks a layer on a U x R grid is cut into: `requested` (SpOptions::head_chunks) for grids
// without a ring whose all-to-all moves something (U > 1), else one. With U = 1 there is no
// all-to-all to hide, and one chunk lets a rank whose local tensors are its inputs skip copies.
inline int layer_head_chunks(int ulysses, int ring, int requested) {
  return ring == 1 && ulysses > 1 && requested > 1 ? requested : 1;
}

}  // namespace dbsp::sp
