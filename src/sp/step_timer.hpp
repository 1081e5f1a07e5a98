// Timing one virtual rank's ring step for the emulator: the local attention kernel (block or fine
// mask, and the LSE merge that follows it) on the CPU or the GPU, on placeholder data of the right
// shape.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dbsp/attention.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/fine_mask.hpp"

namespace dbsp::sp {

class StepTimer {
 public:
  virtual ~StepTimer() = default;
  // Milliseconds of one block-sparse attention call, plus a merge when `merge` is set. block_q and
  // block_k are the mask's block sizes (a local layout may hold its short block anywhere).
  // reserved_sms: SMs the GPU kernel leaves free for a transfer beside it; split_min_blocks: rows
  // of at least this many key blocks may split (cuda::SparseAttention::split_long_rows; 0: none
  // does). Both are ignored on the CPU.
  virtual double step_ms(const AttentionProblem& local, const BlockCsr& mask, int block_q,
                         int block_k, bool merge, int reserved_sms, int split_min_blocks) = 0;
  // The same for a fine (M x 1) step mask: keys are tokens of the local K/V, rows follow
  // local.q_layout (attention_fine on the CPU, the kernels' key lists on the GPU).
  virtual double fine_step_ms(const AttentionProblem& local, const FineMask& mask, bool merge,
                              int reserved_sms) = 0;

  // One kernel of a rank's pipelined head chunks: its heads' local problem and mask, block lists
  // (`blocks`) or, for a fine layer, key lists (`keys`).
  struct ChunkKernel {
    AttentionProblem local;
    const BlockCsr* blocks = nullptr;
    const FineMask* keys = nullptr;
    int block_q = 64, block_k = 64;
    int split_min_blocks = 0;  // as step_ms's (GPU only; 0: rows kept whole)
  };
  struct ChunkTimes {
    std::vector<double> alone_ms;  // each kernel by itself
    std::vector<double> end_ms;    // when each ends, from the first one's start, queued in turn
  };
  // A rank's head-chunk kernels (no merge), timed alone and queued back to back as the device
  // executor queues them: on the GPU alternately on two streams, so that each starts on the SMs
  // its predecessor's tail leaves idle. Here (the CPU's way) they run in turn.
  virtual ChunkTimes chunk_times(const std::vector<ChunkKernel>& kernels, int reserved_sms) {
    ChunkTimes times;
    double end = 0;
    for (const ChunkKernel& kernel : kernels) {
      const double ms = kernel.keys
                            ? fine_step_ms(kernel.local, *kernel.keys, false, reserved_sms)
                            : step_ms(kernel.local, *kernel.blocks, kernel.block_q, kernel.block_k,
                                      false, reserved_sms, kernel.split_min_blocks);
      times.alone_ms.push_back(ms);
      times.end_ms.push_back(end += ms);
    }
    return times;
  }
  // Milliseconds the executor spends staging `rows` rows of row_bytes bytes (packing slabs into a
  // transfer buffer, unpacking them, or copying rows that stay on the rank), from a strided row
  // copy of the executor's kind timed once per row size, then scaled by the row count.
  virtual double copy_ms(int64_t rows, int64_t row_bytes) = 0;
  // Milliseconds the executor's upload of a layer's schedule table of `bytes` bytes takes (pinned
  // host memory to the device, timed once at two sizes); 0 on the CPU, whose executor uploads
  // nothing.
  virtual double upload_ms(int64_t bytes) = 0;
  // Milliseconds the executor's host takes to write a schedule table of `bytes` bytes into its
  // pinned buffer (sp::copy_in_pieces, timed once at two sizes); 0 on the CPU, whose executor
  // builds no table.
  virtual double table_fill_ms(int64_t bytes) = 0;
  // Milliseconds a fine layer's key lists of `bytes` bytes take to reach the device through
  // sp::device::StagedUpload (the host fills a pinned piece while the one before travels): the
  // slower of the fill and the upload, then the last piece's upload; 0 on the CPU.
  virtual double staged_upload_ms(int64_t bytes) = 0;
  // Milliseconds the device executor's block-list kernel (sp::device::fill_block_indices) takes
  // to list `kept` blocks out of `rows` mask rows of `words` 64-bit words each, on the world
  // stream before a block layer's first exchange: timed on random rows of the same density at
  // two row counts, once per word count and density (in eighths); 0 on the CPU, whose executor
  // lists blocks on the host.
  virtual double block_indices_ms(int64_t rows, int words, int64_t kept) = 0;
};

std::unique_ptr<StepTimer> make_cpu_step_timer();
// Throws unless dbsp was built with CUDA and NCCL; head_dim 64 or 128, blocks multiples of 64.
std::unique_ptr<StepTimer> make_device_step_timer();

}  // namespace dbsp::sp
