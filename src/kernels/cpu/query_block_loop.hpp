// The parallel loop shared by every CPU attention variant: OpenMP over (batch, head, query block),
// each block cut into tiles of kTileRows queries that walk the block's key cursor.
#pragma once

#include <algorithm>
#include <cstdint>

#include "dbsp/attention.hpp"
#include "kernels/cpu/query_tile.hpp"

namespace dbsp::cpu {

// cursor_for(head, q_block) returns the key cursor of that query block (the same for every batch).
template <class T, class CursorFor>
void for_each_query_block(const AttentionProblem& problem, const AttentionTensors<T>& tensors,
                          CursorFor cursor_for) {
  const BlockLayout& layout = problem.q_layout;
  const int64_t q_blocks = layout.blocks();
  const int64_t tasks = problem.batch * problem.heads * q_blocks;
  if (tasks == 0) return;
#pragma omp parallel
  {
    QueryTile<T> tile(problem.head_dim);
    // Sparse blocks differ widely in work, so hand them out one at a time.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t q_block = task % q_blocks;
      const int64_t head = (task / q_blocks) % problem.heads;
      const int64_t batch = task / (q_blocks * problem.heads);
      const auto cursor = cursor_for(static_cast<int>(head), static_cast<int>(q_block));
      const int64_t block_end = layout.start[q_block + 1];
      for (int64_t row = layout.start[q_block]; row < block_end; row += kTileRows) {
        tile.run(tensors, batch, head, row, std::min(row + kTileRows, block_end), cursor);
      }
    }
  }
}

}  // namespace dbsp::cpu
