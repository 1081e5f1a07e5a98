// estimate_mask_sharded_device_bf16 (dbsp/sp_estimate.hpp): sharded mask estimation on the GPU
// over NCCL. Every step is queued on the world communicator's stream and the host waits once:
// pool the local blocks, all-gather the pooled keys, score and select the local query rows with
// the kernels of cuda::MaskEstimator (so the rows equal its rows bit for bit: pooling, scores and
// top-p each depend only on the blocks of one row), turn the rows into mask bits, all-gather them
// with one status word per rank, and download the whole mask in one copy.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "comm/nccl/nccl_check.hpp"
#include "comm/nccl/nccl_communicator.hpp"
#include "comm/poll.hpp"
#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "dbsp/sp_estimate.hpp"
#include "kernels/cuda/mask_estimate/kernels.hpp"
#include "sp/cuda/device_resources.hpp"
#include "sp/cuda/estimate_bits.hpp"

namespace dbsp {
namespace {

constexpr const char* kName = "estimate_mask_sharded_device_bf16";

// Bits of a rank's status word (the first word of its slot in the bits all-gather).
constexpr uint64_t kQNotFinite = 1;
constexpr uint64_t kKNotFinite = 2;

// Byte offsets of arrays inside one allocation, each 256-byte aligned.
class Arena {
 public:
  int64_t take(int64_t bytes) {
    const int64_t at = used_;
    used_ += (std::max<int64_t>(bytes, 0) + 255) / 256 * 256;
    return at;
  }
  int64_t bytes() const { return std::max<int64_t>(used_, 256); }

 private:
  int64_t used_ = 0;
};

// Checks that hold alike on every rank (same problem and options): a failure throws everywhere
// before anything is exchanged.
void validate(const SpProblem& problem, const EstimateOptions& options) {
  const MaskGeometry& g = problem.geometry;
  require(g.seq_q > 0 && g.seq_k > 0, kName, ": sequence lengths must be > 0, got seq_q=", g.seq_q,
          " seq_k=", g.seq_k);
  require(problem.heads > 0, kName, ": heads must be > 0, got ", problem.heads);
  require(problem.head_dim == 64 || problem.head_dim == 128, kName,
          ": head_dim must be 64 or 128, got ", problem.head_dim);
  require(g.block_q > 0 && g.block_k > 0, kName, ": block sizes must be > 0, got ", g.block_q,
          " x ", g.block_k);
  require(options.block_q == g.block_q && options.block_k == g.block_k, kName,
          ": the options' blocks (", options.block_q, " x ", options.block_k,
          ") must equal the problem's geometry (", g.block_q, " x ", g.block_k, ")");
  // Written so that NaN fails too.
  require(options.tau > 0.0 && options.tau <= 1.0, kName, ": tau must be in (0, 1], got ",
          options.tau);
  require(std::isfinite(options.scale) && options.scale >= 0.0, kName,
          ": scale must be finite and >= 0 (0 means 1/sqrt(head_dim)), got ", options.scale);
  require(options.sink_blocks.size() <= 8, kName, ": at most 8 sink blocks, got ",
          options.sink_blocks.size());
  require(g.k_blocks() <= cuda::detail::kMaxTopPKeyBlocks, kName, ": at most ",
          cuda::detail::kMaxTopPKeyBlocks, " key blocks, got ", g.k_blocks());
}

// "Q on rank 1, K on rank 0" from the status words of every rank.
std::string non_finite_ranks(const std::vector<uint64_t>& status) {
  std::ostringstream out;
  bool any = false;
  for (const auto& [bit, tensor] : {std::pair{kQNotFinite, "Q"}, std::pair{kKNotFinite, "K"}}) {
    for (size_t r = 0; r < status.size(); ++r) {
      if (status[r] & bit) {
        out << (any ? ", " : "") << tensor << " on rank " << r;
        any = true;
      }
    }
  }
  return out.str();
}

}  // namespace

// The device arrays of a call, in one grow-only allocation, and the pinned buffer the mask rows
// are downloaded into. After a failure with work still queued the workspace is abandoned: freeing
// device memory waits for all of the device's work, which a dead peer may never let finish, so
// the memory is left to the process's end (as SpExecutor does with its buffers).
struct EstimateWorkspace {
  int device = -1;
  sp::device::DeviceMemory scratch;
  sp::device::PinnedMemory download;
  bool abandoned = false;
};

std::shared_ptr<EstimateWorkspace> make_estimate_workspace() {
  return std::shared_ptr<EstimateWorkspace>(new EstimateWorkspace, [](EstimateWorkspace* w) {
    if (!w->abandoned) delete w;
  });
}

BlockMask estimate_mask_sharded_device_bf16(Communicator& world_base, const SpProblem& problem,
                                            const void* q, const void* k,
                                            const EstimateOptions& options,
                                            EstimateWorkspace* workspace) {
  auto* world = dynamic_cast<comm::NcclCommunicator*>(&world_base);
  require(world != nullptr, kName, " needs an NCCL communicator; got ", world_base.backend());
  world->require_usable("sharded mask estimation");
  validate(problem, options);
  const int rank = world->rank();
  const int ranks = world->size();
  const BlockLayout q_layout = problem.q_layout();
  const BlockLayout k_layout = problem.k_layout();
  std::vector<SequenceShard> q_shards, k_shards;
  for (int r = 0; r < ranks; ++r) {
    q_shards.push_back(sequence_shard(q_layout, r, ranks));
    k_shards.push_back(sequence_shard(k_layout, r, ranks));
  }
  const SequenceShard& q_shard = q_shards[rank];
  const SequenceShard& k_shard = k_shards[rank];
  require(q_shard.tokens() == 0 || q != nullptr, kName, ": q is null on rank ", rank,
          ", which holds ", q_shard.tokens(), " query tokens");
  require(k_shard.tokens() == 0 || k != nullptr, kName, ": k is null on rank ", rank,
          ", which holds ", k_shard.tokens(), " key tokens");

  const MaskGeometry& geometry = problem.geometry;
  BlockMask mask(problem.heads, geometry);
  const int64_t H = problem.heads;
  const int D = problem.head_dim;
  const int k_blocks = mask.k_blocks();
  const int words = mask.words_per_row();
  const int q_local = q_shard.end_block - q_shard.first_block;
  const int k_local = k_shard.end_block - k_shard.first_block;
  const int64_t rows = H * q_local;
  // Rank r's pooled keys [H][its key blocks][D] at key_slot(r) floats; its status word and bits
  // [H][its query blocks][words] at bit_slot(r) words.
  auto key_slot = [&](int r) { return H * D * k_shards[r].first_block; };
  auto key_count = [&](int r) { return H * D * (k_shards[r].end_block - k_shards[r].first_block); };
  auto bit_slot = [&](int r) { return r + H * words * q_shards[r].first_block; };
  auto bit_count = [&](int r) {
    return 1 + H * words * (q_shards[r].end_block - q_shards[r].first_block);
  };
  const int64_t all_bits = bit_slot(ranks - 1) + bit_count(ranks - 1);

  Arena arena;
  const int64_t pooled_q_at = arena.take(rows * D * 4);
  const int64_t key_slots_at = arena.take(H * k_blocks * D * 4);
  const int64_t pooled_k_at = arena.take(H * k_blocks * D * 4);
  const int64_t scores_at = arena.take(rows * k_blocks * 4);
  const int64_t kv_count_at = arena.take(rows * 4);
  const int64_t row_offset_at = arena.take(rows * 8);
  const int64_t kv_index_at = arena.take(rows * k_blocks * 4);
  const int64_t bit_slots_at = arena.take(all_bits * 8);

  DBSP_CUDA_RT_CHECK(cudaSetDevice(world->device()));
  std::shared_ptr<EstimateWorkspace> call_workspace;  // the call's own, without a kept one
  if (workspace == nullptr) {
    call_workspace = make_estimate_workspace();
    workspace = call_workspace.get();
  }
  require(workspace->device < 0 || workspace->device == world->device(), kName,
          ": the workspace holds buffers of GPU ", workspace->device,
          ", the communicator uses GPU ", world->device());
  require(!workspace->abandoned, kName,
          ": the workspace was abandoned by an earlier call that failed with work still queued");
  workspace->device = world->device();
  char* base = workspace->scratch.ensure(arena.bytes());
  auto* host = reinterpret_cast<uint64_t*>(workspace->download.ensure(all_bits * 8));
  auto* pooled_q = reinterpret_cast<float*>(base + pooled_q_at);
  auto* key_slots = reinterpret_cast<float*>(base + key_slots_at);
  auto* pooled_k = reinterpret_cast<float*>(base + pooled_k_at);
  auto* scores = reinterpret_cast<float*>(base + scores_at);
  auto* kv_count = reinterpret_cast<int32_t*>(base + kv_count_at);
  auto* row_offset = reinterpret_cast<int64_t*>(base + row_offset_at);
  auto* kv_index = reinterpret_cast<int32_t*>(base + kv_index_at);
  auto* bit_slots = reinterpret_cast<uint64_t*>(base + bit_slots_at);
  uint64_t* my_status = bit_slots + bit_slot(rank);
  sp::device::Event keys_arrived, finished;

  // The communicator's stream: ordered after the caller's work on the legacy default stream, and
  // the one the exchanges run on, so every step below is ordered by the stream alone.
  const cudaStream_t stream = world->stream();
  std::vector<std::unique_ptr<PendingExchange>> in_flight;
  workspace->abandoned = true;  // until the host wait below sees the queued work done

  // (1) Pool this rank's blocks (q and k point at the shard's first token, which starts a block:
  // block b of the shard is block first_block + b of the sequence, its tokens summed in the same
  // order as in the whole tensor, and the last block is short only where the sequence's is) and
  // flag non-finite means in this rank's status word.
  DBSP_CUDA_RT_CHECK(cudaMemsetAsync(my_status, 0, sizeof(uint64_t), stream));
  if (q_local > 0) {
    cuda::detail::launch_block_mean(cuda::DType::bf16, q, q_shard.tokens(), static_cast<int>(H), D,
                                    geometry.block_q, q_local, pooled_q, stream);
    sp::device::flag_non_finite(pooled_q, rows * D, kQNotFinite, my_status, stream);
  }
  float* my_keys = key_slots + key_slot(rank);
  if (k_local > 0) {
    cuda::detail::launch_block_mean(cuda::DType::bf16, k, k_shard.tokens(), static_cast<int>(H), D,
                                    geometry.block_k, k_local, my_keys, stream);
    sp::device::flag_non_finite(my_keys, key_count(rank), kKNotFinite, my_status, stream);
  }

  // (2) All-gather the pooled keys into per-rank slots, then place each slot's heads at their
  // blocks in [H][k_blocks][D].
  {
    std::vector<SendOp> sends;
    std::vector<RecvOp> recvs;
    for (int r = 0; r < ranks; ++r) {
      if (r == rank) continue;
      if (key_count(rank) > 0) sends.push_back({r, my_keys, key_count(rank) * 4});
      if (key_count(r) > 0) recvs.push_back({r, key_slots + key_slot(r), key_count(r) * 4});
    }
    in_flight.push_back(
        world->start_exchange(sends, recvs, "sharded mask estimation (pooled keys all-gather)"));
  }
  keys_arrived.record(stream);
  for (int r = 0; r < ranks; ++r) {
    const int64_t blocks = k_shards[r].end_block - k_shards[r].first_block;
    if (blocks == 0) continue;
    const size_t row_bytes = static_cast<size_t>(blocks) * D * 4;
    DBSP_CUDA_RT_CHECK(cudaMemcpy2DAsync(pooled_k + int64_t{k_shards[r].first_block} * D,
                                         static_cast<size_t>(k_blocks) * D * 4,
                                         key_slots + key_slot(r), row_bytes, row_bytes,
                                         static_cast<size_t>(H), cudaMemcpyDeviceToDevice, stream));
  }

  // (3) This rank's query rows against every key block, top-p (the diagonal at the rows' global
  // query blocks), and the rows as bits in this rank's slot.
  if (q_local > 0) {
    const double scale =
        options.scale > 0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(D));
    cuda::detail::launch_block_scores(pooled_q, pooled_k, static_cast<int>(H), q_local, k_blocks, D,
                                      static_cast<float>(scale), scores, stream);
    cuda::detail::TopPConfig top_p;
    top_p.heads = static_cast<int>(H);
    top_p.q_blocks = q_local;
    top_p.first_q_block = q_shard.first_block;
    top_p.k_blocks = k_blocks;
    top_p.block_q = geometry.block_q;
    top_p.block_k = geometry.block_k;
    top_p.seq_k = geometry.seq_k;
    top_p.tau = static_cast<float>(options.tau);
    // As cuda::MaskEstimator: the diagonal for self-attention only.
    top_p.keep_diagonal = options.keep_diagonal && geometry.seq_q == geometry.seq_k;
    top_p.sink_count = static_cast<int>(options.sink_blocks.size());
    for (int i = 0; i < top_p.sink_count; ++i) top_p.sinks[i] = options.sink_blocks[i];
    cuda::detail::launch_top_p_rows(top_p, scores, kv_count, row_offset, kv_index, stream);
    sp::device::block_lists_to_bits(kv_count, kv_index, rows, k_blocks, words, my_status + 1,
                                    stream);
  }

  // (4) All-gather every rank's status word and bits (every rank sends at least its status).
  {
    std::vector<SendOp> sends;
    std::vector<RecvOp> recvs;
    for (int r = 0; r < ranks; ++r) {
      if (r == rank) continue;
      sends.push_back({r, my_status, bit_count(rank) * 8});
      recvs.push_back({r, bit_slots + bit_slot(r), bit_count(r) * 8});
    }
    in_flight.push_back(
        world->start_exchange(sends, recvs, "sharded mask estimation (mask rows all-gather)"));
  }
  // (5) The whole mask (every rank's status word and rows) down into the pinned buffer.
  DBSP_CUDA_RT_CHECK(cudaMemcpyAsync(host, bit_slots, static_cast<size_t>(all_bits) * 8,
                                     cudaMemcpyDeviceToHost, stream));
  finished.record(stream);

  // The one host wait, bounded by the timeout; the stuck all-gather is named.
  cudaError_t device_status = cudaErrorNotReady;
  bool comm_failed = false;
  comm::poll_until(
      world->timeout_seconds(),
      [&] {
        device_status = cudaEventQuery(finished.get());
        if (device_status != cudaErrorNotReady) return true;
        ncclResult_t state = ncclSuccess;
        if (ncclCommGetAsyncError(world->handle(), &state) != ncclSuccess ||
            (state != ncclSuccess && state != ncclInProgress)) {
          comm_failed = true;
        }
        return comm_failed;
      },
      comm::kDevicePollPause);
  if (device_status != cudaSuccess) {
    std::ostringstream what;
    what << "nccl: sharded mask estimation on rank " << rank << " of " << ranks;
    if (comm_failed) {
      what << " failed: the communicator reported an error";
    } else if (device_status == cudaErrorNotReady) {
      what << " timed out after " << world->timeout_seconds() << " s";
    } else {
      what << " failed on the device: " << cudaGetErrorString(device_status);
    }
    what << (keys_arrived.done() ? " in the all-gather of the mask rows"
                                 : " in the all-gather of the pooled keys");
    world->abort(what.str());
    fail(what.str());
  }
  in_flight.clear();
  workspace->abandoned = false;

  // Every rank holds every status word, so a bad input anywhere fails on every rank alike.
  std::vector<uint64_t> status(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) status[r] = host[bit_slot(r)];
  const std::string bad = non_finite_ranks(status);
  require(bad.empty(), kName, ": NaN or Inf in the block means of ", bad,
          " (the input holds NaN/Inf, or values whose fp32 block sum overflows)");

  for (int r = 0; r < ranks; ++r) {
    const int blocks = q_shards[r].end_block - q_shards[r].first_block;
    const uint64_t* bits = host + bit_slot(r) + 1;
    for (int h = 0; h < problem.heads; ++h) {
      for (int i = 0; i < blocks; ++i) {
        std::memcpy(mask.row_bits(h, q_shards[r].first_block + i),
                    bits + (int64_t{h} * blocks + i) * words, sizeof(uint64_t) * words);
      }
    }
  }
  return mask;
}

}  // namespace dbsp
