// For dbsp's own producers of fine masks whose lists are valid by construction (thin_blocks and
// from_block, the local masks of one rank's ring steps): a FineMask from its lists and covering
// blocks without the per-key pass of the public constructor, which costs as much as building
// them. Shapes and offsets are still checked; debug builds check every key and the covering too.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "dbsp/fine_mask.hpp"

namespace dbsp::detail {

// A fine mask's lists, taken back from a mask no longer needed so that their memory serves the
// next one: at video sizes the first touch of fresh pages costs more than filling them.
struct FineMaskLists {
  std::vector<int64_t> row_offset;
  std::vector<int32_t> key_index;
};

struct FineMaskParts {
  // The caller guarantees: every row's keys sorted, unique and inside [0, geometry.seq_k), and
  // `covering` (heads x geometry) marks exactly the key blocks that hold a kept key of the row.
  static FineMask assemble(int heads, MaskGeometry geometry, std::vector<int64_t> row_offset,
                           std::vector<int32_t> key_index, BlockMask covering) {
    return FineMask(FineMask::Trusted{}, heads, geometry, std::move(row_offset),
                    std::move(key_index), std::move(covering));
  }
  // The lists of `mask`, which is left empty.
  static FineMaskLists release(FineMask&& mask) {
    FineMaskLists lists{std::move(mask.row_offset_), std::move(mask.key_index_)};
    mask = FineMask();
    return lists;
  }
};

}  // namespace dbsp::detail
