// head_chunk_begin: how the executor and the emulator cut a head group into pipelined chunks.
#include <gtest/gtest.h>

#include <vector>

#include "sp/head_chunks.hpp"

namespace dbsp::sp {
namespace {

TEST(HeadChunks, CoverTheGroupInOrderWithSmallerEnds) {
  for (int chunks = 1; chunks <= 8; ++chunks) {
    for (int heads = 0; heads <= 24; ++heads) {
      EXPECT_EQ(head_chunk_begin(0, heads, chunks), 0);
      EXPECT_EQ(head_chunk_begin(chunks, heads, chunks), heads);
      for (int c = 0; c < chunks; ++c) {
        const int size =
            head_chunk_begin(c + 1, heads, chunks) - head_chunk_begin(c, heads, chunks);
        EXPECT_GE(size, 0) << heads << " heads, chunk " << c << " of " << chunks;
        // Enough heads for every chunk: none is empty.
        if (heads >= 2 * chunks) {
          EXPECT_GE(size, 1) << heads << " heads, " << chunks << " chunks";
        }
      }
    }
  }
  auto sizes = [](int heads, int chunks) {
    std::vector<int> out;
    for (int c = 0; c < chunks; ++c) {
      out.push_back(head_chunk_begin(c + 1, heads, chunks) - head_chunk_begin(c, heads, chunks));
    }
    return out;
  };
  EXPECT_EQ(sizes(5, 3), (std::vector<int>{1, 3, 1}));  // Wan2.1 at 8 ranks: 40 / 8 heads
  EXPECT_EQ(sizes(5, 2), (std::vector<int>{2, 3}));     // two chunks split evenly
  EXPECT_EQ(sizes(10, 4), (std::vector<int>{2, 3, 3, 2}));
  EXPECT_EQ(sizes(3, 3), (std::vector<int>{1, 1, 1}));
}

}  // namespace
}  // namespace dbsp::sp
