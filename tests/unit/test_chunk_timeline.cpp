// chunk_timeline: the pipelined head-chunk timeline the emulator charges, on hand-made times.
#include <gtest/gtest.h>

#include <vector>

#include "sp/chunk_timeline.hpp"

namespace dbsp::sp {
namespace {

// Rank 0 holds one heavy head (10 ms), rank 1 three light ones (3 ms each); three chunks whose
// input exchanges take 1 ms and output exchanges 0.5 ms each.
const std::vector<double> kIn{1, 1, 1}, kOut{0.5, 0.5, 0.5};
const std::vector<std::vector<double>> kHeavyFirst{{10, 0, 0}, {3, 3, 3}};

TEST(ChunkTimeline, ALoneHeavyHeadReturningLastExposesOneInputAndOneOutput) {
  // Its head computes from the first chunk on and returns in the last output chunk
  // (sp::HeadChunks); the light rank's heads return with their own chunks.
  const ChunkTimeline t = chunk_timeline(kIn, kOut, kHeavyFirst, {{-1, -1, 0}, {0, 1, 2}});
  EXPECT_DOUBLE_EQ(t.computed, 11);  // after the first chunk's inputs
  EXPECT_DOUBLE_EQ(t.finished, 11.5);
  EXPECT_DOUBLE_EQ(t.finished - 10, 1.5);  // exposed: the first input and the last output
  // Each output leaves once the kernel it waits for ends: the light rank's, then the heavy one's.
  EXPECT_EQ(t.out_start, (std::vector<double>{4, 7, 11}));
  EXPECT_EQ(t.out_waited_for, (std::vector<int>{1, 1, 0}));
}

TEST(ChunkTimeline, ALoneHeavyHeadReturningFirstHoldsEveryLaterOutput) {
  // Output chunk 0 waits for the heavy head, and chunks 1 and 2 queue behind it.
  const ChunkTimeline t = chunk_timeline(kIn, kOut, kHeavyFirst, {{0, -1, -1}, {0, 1, 2}});
  EXPECT_DOUBLE_EQ(t.finished, 12.5);
  EXPECT_EQ(t.out_start, (std::vector<double>{11, 11.5, 12}));
  EXPECT_EQ(t.out_waited_for, (std::vector<int>{0, -1, -1}));  // the later ones wait in line
}

TEST(ChunkTimeline, AHeadInTheMiddleChunkWaitsForTwoInputs) {
  const ChunkTimeline t =
      chunk_timeline(kIn, kOut, {{0, 10, 0}, {3, 3, 3}}, {{-1, -1, 1}, {0, 1, 2}});
  EXPECT_DOUBLE_EQ(t.computed, 12);
  EXPECT_DOUBLE_EQ(t.finished, 12.5);
}

TEST(ChunkTimeline, SlowInputsStallTheKernels) {
  // The second chunk's inputs (4 ms) outlast the first kernel (1 ms): the rank waits.
  const ChunkTimeline t = chunk_timeline({1, 4}, {0.5, 0.5}, {{1, 1}}, {{0, 1}});
  EXPECT_DOUBLE_EQ(t.computed, 6);
  EXPECT_DOUBLE_EQ(t.finished, 6.5);
}

TEST(ChunkTimeline, NothingToComputeStillWaitsForEveryExchange) {
  const ChunkTimeline t = chunk_timeline({1, 2}, {3, 4}, {{0, 0}, {0, 0}}, {{-1, -1}, {-1, -1}});
  EXPECT_DOUBLE_EQ(t.computed, 3);
  EXPECT_DOUBLE_EQ(t.finished, 10);
}

TEST(ChunkTimeline, AQueuedKernelStartsInItsPredecessorsTail) {
  // Two 4 ms kernels; queued right behind the first, the second ends 3 ms after it (it starts
  // on the SMs the first one's last work items leave idle).
  const std::vector<std::vector<double>> alone{{4, 4}}, queued{{4, 3}};
  const ChunkTimeline early = chunk_timeline({1, 1}, {0.5, 0.5}, alone, {{0, 1}}, queued);
  EXPECT_DOUBLE_EQ(early.computed, 8);
  EXPECT_DOUBLE_EQ(early.finished, 8.5);
  // Its inputs arrive after the first kernel ended: it runs alone from then on.
  const ChunkTimeline late = chunk_timeline({1, 6}, {0.5, 0.5}, alone, {{0, 1}}, queued);
  EXPECT_DOUBLE_EQ(late.computed, 11);
  // Without the queued times every kernel runs after its predecessor.
  EXPECT_DOUBLE_EQ(chunk_timeline({1, 1}, {0.5, 0.5}, alone, {{0, 1}}).computed, 9);
}

}  // namespace
}  // namespace dbsp::sp
