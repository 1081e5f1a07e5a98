// The fine mask of one ring step: the kept keys of this rank's rows that lie in the key blocks of
// the step's K/V buffer, renumbered to that buffer's tokens (the fine counterpart of
// local_block_csr in sp/routing.hpp).
#pragma once

#include <cstdint>
#include <vector>

#include "dbsp/block_layout.hpp"
#include "dbsp/fine_mask.hpp"
#include "mask/fine_mask_parts.hpp"
#include "sp/routing.hpp"

namespace dbsp::sp {

struct LocalFineMask {
  // Row (h, i) = rows (heads[h], q_blocks[i]) of the layer's mask; keys are tokens of the step
  // buffer. Its geometry holds the rows' query tokens and the buffer's key tokens.
  FineMask mask;
  int64_t blocks = 0;  // (row, key block) pairs with a kept key: the step's covering blocks
};

// key_blocks: ascending global key blocks, laid out in the step buffer by `key_layout` (block
// key_blocks[n] starts at token key_layout.start[n]). A kept key k of block b = k / block_k
// becomes key_layout.start[n] + k - b * block_k where key_blocks[n] == b; keys of other blocks
// are dropped. Keys stay sorted because the blocks are ascending. `head_rows`, when given: per
// head the positions in q_blocks of the rows computed here (LayerRouting::head_rows); the
// others are left empty.
LocalFineMask local_fine_mask(const FineMask& mask, const std::vector<int>& heads,
                              const std::vector<int>& q_blocks, const std::vector<int>& key_blocks,
                              const BlockLayout& key_layout,
                              const std::vector<BlockRange>* head_rows = nullptr);

// local_fine_mask of every step (its key_blocks and key_layout), in step order. The steps' key
// blocks must be disjoint (a ring's steps visit distinct key shards): then each kept key of the
// rows goes to at most one step, and two passes over the rows' keys serve all steps, where a
// call per step would read them twice per step. `storage`, when given: lists of masks no longer
// needed, step by step, whose memory the new masks take over (it is left empty).
std::vector<LocalFineMask> local_fine_masks(const FineMask& mask, const std::vector<int>& heads,
                                            const std::vector<int>& q_blocks,
                                            const std::vector<RingStep>& steps,
                                            std::vector<detail::FineMaskLists>* storage = nullptr,
                                            const std::vector<BlockRange>* head_rows = nullptr);

}  // namespace dbsp::sp
