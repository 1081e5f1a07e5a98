// The host-built plan of a layer's data movement on the device: which rows each staging copy
// moves (CopyList, run by the device copy kernel from an uploaded table) and which byte ranges
// each exchange sends to and receives from each peer. Plain data, so that it can be built and
// checked without a GPU (tests/unit/test_chunk_copies.cpp plays it on host buffers).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/partition.hpp"
#include "sp/routing.hpp"
#include "sp/row_copy.hpp"
#include "sp/slab.hpp"

namespace dbsp::sp::device {

constexpr int64_t kBf16Bytes = 2;

// The buffers the copy tables refer to (indices into CopyBases).
enum Base : int32_t {
  kUserQ,
  kUserK,
  kUserV,
  kUserOut,
  kQLocal,
  kKLocal,
  kVLocal,
  kOutLocal,
  kStepK0,
  kStepK1,
  kStepV0,
  kStepV1,
  kAllToAllSend,
  kAllToAllRecv,
  kRingSend,
  kRingRecv,
};
static_assert(kRingRecv < kMaxCopyBases);

// Descriptors that pack slabs of tensors into a staging buffer (or unpack from it).
struct CopyList {
  std::vector<RowCopy> copies;
  int64_t max_rows = 0;
  int64_t table_offset = 0;  // where the list sits in the uploaded table

  // tensor_offset: bytes from the tensor's base to the (sub)tensor the slabs index.
  void add(Base tensor, int64_t heads, int64_t head_dim, std::span<const Slab> slabs, Base staging,
           int64_t& staging_offset, bool pack, int64_t tensor_offset = 0) {
    const int64_t row_bytes = head_dim * kBf16Bytes;
    for (const Slab& s : slabs) {
      const int64_t tensor_at = tensor_offset + (s.row * heads + s.head) * row_bytes;
      RowCopy copy;
      copy.src_base = pack ? tensor : staging;
      copy.dst_base = pack ? staging : tensor;
      copy.src_offset = pack ? tensor_at : staging_offset;
      copy.dst_offset = pack ? staging_offset : tensor_at;
      copy.src_stride = pack ? heads * row_bytes : row_bytes;
      copy.dst_stride = pack ? row_bytes : heads * row_bytes;
      copy.rows = s.rows;
      copies.push_back(copy);
      max_rows = std::max<int64_t>(max_rows, s.rows);
      staging_offset += s.rows * row_bytes;
    }
  }
  // Rows that stay on this rank go straight from one tensor to the other: both slab lists
  // enumerate the same rows in the same order (sp/routing.hpp), but may merge them into slabs
  // differently, so the lists are walked together and cut where either slab ends.
  void add_direct(Base from, int64_t from_heads, std::span<const Slab> from_slabs, Base to,
                  int64_t to_heads, std::span<const Slab> to_slabs, int64_t head_dim,
                  int64_t from_offset = 0, int64_t to_offset = 0) {
    const int64_t row_bytes = head_dim * kBf16Bytes;
    size_t a = 0, b = 0;
    int64_t a_done = 0, b_done = 0;
    while (a < from_slabs.size() && b < to_slabs.size()) {
      const Slab& src = from_slabs[a];
      const Slab& dst = to_slabs[b];
      const int64_t rows = std::min<int64_t>(src.rows - a_done, dst.rows - b_done);
      RowCopy copy;
      copy.src_base = from;
      copy.dst_base = to;
      copy.src_offset = from_offset + ((src.row + a_done) * from_heads + src.head) * row_bytes;
      copy.dst_offset = to_offset + ((dst.row + b_done) * to_heads + dst.head) * row_bytes;
      copy.src_stride = from_heads * row_bytes;
      copy.dst_stride = to_heads * row_bytes;
      copy.rows = rows;
      copies.push_back(copy);
      max_rows = std::max(max_rows, rows);
      a_done += rows;
      b_done += rows;
      if (a_done == src.rows) ++a, a_done = 0;
      if (b_done == dst.rows) ++b, b_done = 0;
    }
    require(a == from_slabs.size() && b == to_slabs.size(),
            "device schedule: the local slab lists hold different row counts");
  }
};

// One side of a slab exchange: per peer, a byte range of the staging buffer.
struct PeerRange {
  int peer;
  int64_t offset;
  int64_t bytes;
};

// Bytes of the staging buffer that `ranges` (one exchange's, laid out back to back) span.
inline int64_t staging_bytes(const std::vector<PeerRange>& ranges) {
  return ranges.empty() ? 0 : ranges.back().offset + ranges.back().bytes;
}

// The all-to-all phases of one head chunk (sp/head_chunks.hpp): input chunk c brings heads
// [first_head, first_head + heads) of this rank's group, held as their own [tokens, heads,
// head_dim] tensors inside the local buffers, and output chunk c returns the O of the heads whose
// output chunk is c, once this rank's input chunk `out_after` is computed (-1: it returns none of
// this rank's heads, so it waits for nothing here). One chunk holds every head unless the layer
// is pipelined by head chunks (SpOptions::head_chunks).
struct ChunkCopies {
  int first_head = 0, heads = 0;
  int out_after = -1;
  CopyList in_pack, in_unpack, out_pack, out_unpack;
  CopyList in_local, out_local;  // rows this rank keeps: copied directly, never staged or sent
  std::vector<PeerRange> in_sends, in_recvs, out_sends, out_recvs;

  // Every copy list of the chunk, in the order the table holds them.
  std::array<const CopyList*, 6> lists() const {
    return {&in_pack, &in_unpack, &out_pack, &out_unpack, &in_local, &out_local};
  }
  std::array<CopyList*, 6> lists() {
    return {&in_pack, &in_unpack, &out_pack, &out_unpack, &in_local, &out_local};
  }
};

// The ring transfer that brings step t's K/V (t >= 1; step 0 computes on the rank's own): this
// rank's K and V slabs packed for route.steps[t].dest, and the step buffers (kStepK/V0 or 1, by
// the step's parity) unpacked from route.steps[t].origin.
struct StepCopies {
  CopyList pack, unpack;
  std::vector<PeerRange> sends, recvs;
};

// Every ring step's copies of a layer routed as `route` (head_dim, bf16), step 0's empty.
std::vector<StepCopies> build_step_copies(const LayerRouting& route, int64_t head_dim);

// The chunks' copy lists and peer ranges of rank `rank` of `ranks` for a layer routed as `route`
// (heads x head_dim, bf16), cut into `chunks` head chunks (sp::layer_head_chunks). Staging
// offsets restart at 0 in every chunk: a chunk's exchange reuses the staging buffers after the
// previous one is unpacked.
std::vector<ChunkCopies> build_chunk_copies(const LayerRouting& route, const Partition& partition,
                                            int rank, int ranks, int chunks, int64_t heads,
                                            int64_t head_dim);

}  // namespace dbsp::sp::device
