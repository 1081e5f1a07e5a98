// Mask estimation (SPEC 1a) from sequence-sharded Q and K, for runtimes whose masks are estimated
// every call (SpargeAttn-style) rather than loaded. Each rank holds the input distribution of
// sp_attention.hpp (query and key blocks [shard_begin(p), shard_begin(p + 1)) of every head) and:
//   1. mean-pools the blocks of Q and K it holds (block boundaries never cross a shard);
//   2. all-gathers the pooled keys (blocks x heads x head_dim values, not tokens);
//   3. selects the kept key blocks of its own query rows (scores, top-p, diagonal and sinks);
//   4. all-gathers the rows' bits.
// Every rank returns the same full mask, bit for bit equal to the single-process estimator on the
// whole Q and K (estimate_block_mask on the host, cuda::MaskEstimator on the device), so plans
// computed from it agree across ranks (SpAttention checks a hash anyway). The work is split: no
// rank scores more than its own query rows, and only pooled blocks and bits travel.
#pragma once

#include <memory>

#include "dbsp/block_mask.hpp"
#include "dbsp/communicator.hpp"
#include "dbsp/estimate.hpp"
#include "dbsp/sp_attention.hpp"

namespace dbsp {

// Host path (any communicator whose memory() is host, e.g. MPI). q, k: this rank's shard,
// [shard tokens, heads, head_dim] fp32 (batch 1). options.block_q / block_k must equal the
// problem's geometry; problem.batch is ignored (one element). q and k may be null on a rank whose
// shard holds no token. Collective: every rank of `world` calls it with the same problem and
// options. Bad input on any rank (a NaN or Inf in its Q or K, a null shard holding tokens, another
// problem or options than rank 0's) is found before any data moves and makes every rank throw,
// naming that rank.
BlockMask estimate_mask_sharded(Communicator& world, const SpProblem& problem, const float* q,
                                const float* k, const EstimateOptions& options);

// What the device path keeps between calls: its device scratch (grow-only) and a pinned buffer
// the mask is downloaded into, so that calls after the first allocate nothing on the device and
// the download is queued with the rest. Opaque; SpAttention keeps one. One thread at a time.
struct EstimateWorkspace;
std::shared_ptr<EstimateWorkspace> make_estimate_workspace();

// Device path (NCCL communicator; dbsp built with CUDA and NCCL): q, k bf16 on the communicator's
// GPU, read after the work already queued on the legacy default stream. Equal, bit for bit, to
// cuda::MaskEstimator on the whole Q and K. Same contract as the host path, except that the
// problem and options are not compared across ranks (a mismatch ends in the timeout error), and
// a NaN or Inf is found in the block means and reported after the call's one host wait (every
// rank throws, naming the rank). head_dim 64 or 128, at most 8 sink blocks. Without a workspace
// the call allocates its buffers and frees them on return; a workspace must stay on one GPU.
// Throws without a CUDA build.
BlockMask estimate_mask_sharded_device_bf16(Communicator& world, const SpProblem& problem,
                                            const void* q, const void* k,
                                            const EstimateOptions& options,
                                            EstimateWorkspace* workspace = nullptr);

}  // namespace dbsp
