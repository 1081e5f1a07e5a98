// head_chunk_begin and HeadChunks: how the executor and the emulator cut a head group into
// pipelined chunks, and which output chunk returns each head.
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
  // A group with heads starts computing with the first chunk.
  EXPECT_EQ(sizes(1, 3), (std::vector<int>{1, 0, 0}));
  EXPECT_EQ(sizes(1, 2), (std::vector<int>{1, 0}));
  EXPECT_EQ(sizes(2, 3), (std::vector<int>{1, 1, 0}));
  EXPECT_EQ(sizes(2, 4), (std::vector<int>{1, 0, 1, 0}));
}

TEST(HeadChunks, EachGroupsLastComputedHeadsReturnInTheLastOutputChunk) {
  // Groups of 1, 2, 3 and 5 heads, as db-SP deals them at 16 ranks (a heavy head alone).
  Partition partition = Partition::contiguous(Grid{4, 1}, 11, 1, 1);
  partition.head_group = {0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3};
  const HeadChunks chunks(partition, 3);
  EXPECT_EQ(chunks.in, (std::vector<int>{0, 0, 1, 0, 1, 2, 0, 1, 1, 1, 2}));
  EXPECT_EQ(chunks.out, (std::vector<int>{2, 0, 2, 0, 1, 2, 0, 1, 1, 1, 2}));
  // The lone head computes first and returns last: output chunks 0 and 1 wait for none of its
  // group's kernels, the last one for its first.
  EXPECT_EQ(chunks.out_waits_for(0, {0}, 0), -1);
  EXPECT_EQ(chunks.out_waits_for(0, {0}, 1), -1);
  EXPECT_EQ(chunks.out_waits_for(0, {0}, 2), 0);
  EXPECT_EQ(chunks.out_waits_for(1, {1, 2}, 0), 0);
  EXPECT_EQ(chunks.out_waits_for(1, {1, 2}, 2), 1);
  EXPECT_EQ(chunks.out_waits_for(3, {6, 7, 8, 9, 10}, 1), 1);
  // One chunk: every head in chunk 0 both ways.
  const HeadChunks one(partition, 1);
  EXPECT_EQ(one.in, std::vector<int>(11, 0));
  EXPECT_EQ(one.out, std::vector<int>(11, 0));
}

TEST(HeadChunks, FollowThePartitionsHeadOrder) {
  Partition partition = Partition::contiguous(Grid{1, 1}, 5, 1, 1);
  partition.head_order = {3, 0, 4, 1, 2};
  const HeadChunks chunks(partition, 3);  // 1 + 3 + 1 in that order
  EXPECT_EQ(chunks.in, (std::vector<int>{1, 1, 2, 0, 1}));
  EXPECT_EQ(chunks.out, (std::vector<int>{1, 1, 2, 0, 1}));
}

TEST(HeadChunks, ASharedHeadHasItsChunksInEachGroup) {
  // Head 0 is group 0's; group 1 computes its last query blocks too, after its own two heads.
  Partition partition = Partition::contiguous(Grid{2, 1}, 4, 6, 6);
  partition.head_group = {0, 0, 1, 1};
  partition.head_splits = {{0, 1, {4, 6}}};
  partition.validate();
  EXPECT_EQ(partition.heads_of(1), (std::vector<int>{2, 3, 0}));
  const HeadChunks chunks(partition, 3);
  EXPECT_EQ(chunks.in_of(0, 0), 0);
  EXPECT_EQ(chunks.in_of(1, 0), 2);
  EXPECT_EQ(chunks.out_of(1, 0), 2);
  EXPECT_EQ(chunks.in_of(1, 2), 0);
  EXPECT_EQ(chunks.out_waits_for(1, {2, 3, 0}, 2), 2);
  EXPECT_EQ(chunks.out_waits_for(0, {0, 1}, 2), 1);
}

}  // namespace
}  // namespace dbsp::sp
