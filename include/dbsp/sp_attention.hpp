// Sequence-parallel block-sparse attention over a Communicator (SPEC 2-4). One executor runs any
// Partition, so static Ulysses (U = P, R = 1), Ring (U = 1, R = P), USP (U x R) and db-SP
// (permuted heads and blocks) share one code path:
//   (a) one all-to-all-v over all P ranks moves each (token block, head) of Q, K and V from its
//       owner in the input distribution to the rank the partition assigns it to (this folds the
//       head reorder and the block exchange into the Ulysses all-to-all);
//   (b) a ring over the R ranks of each head group: at step t ring rank r computes its queries
//       against the key shard of ring rank (r + t) mod R, received straight from that rank while
//       step t - 1 computes, and merges the partial result through the fp32 log-sum-exp;
//   (c) the inverse all-to-all-v returns O to the input distribution.
// Mask-aware communication: a (block, head) slab of K/V that no query of the receiving rank
// needs, a query row with no kept key, and its output row are never sent (the output row is zero,
// as SPEC 1 defines). Input distribution: rank p holds query blocks [shard_begin(p, q_blocks, P),
// shard_begin(p + 1, q_blocks, P)) and likewise key blocks, every head, laid out
// [tokens, heads, head_dim] (batch 1). Uneven splits (H not divisible by U, blocks not divisible
// by P, a short last block, ranks with no block or no head) are allowed everywhere.
#pragma once

#include <array>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dbsp/attention.hpp"
#include "dbsp/block_layout.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/communicator.hpp"
#include "dbsp/estimate.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/partition.hpp"
#include "dbsp/planner.hpp"

namespace dbsp {

namespace sp {
class PrebuiltSchedules;
}
struct EstimateWorkspace;  // sp_estimate.hpp

// The tokens one rank holds in the input distribution.
struct SequenceShard {
  int first_block = 0;  // blocks [first_block, end_block)
  int end_block = 0;
  int64_t first_token = 0;  // tokens [first_token, end_token)
  int64_t end_token = 0;
  int64_t tokens() const { return end_token - first_token; }
};
SequenceShard sequence_shard(const BlockLayout& layout, int rank, int ranks);

struct SpProblem {
  int heads = 1;
  int head_dim = 64;
  MaskGeometry geometry;  // token counts and block sizes of queries and keys
  double scale = 0.0;     // 0: 1/sqrt(head_dim)
  // SpAttention: batch elements sharing the layer's mask (and plan), each rank's tensors
  // [batch, shard tokens, heads, head_dim]. SpExecutor runs one element per call.
  int batch = 1;

  BlockLayout q_layout() const { return BlockLayout::uniform(geometry.seq_q, geometry.block_q); }
  BlockLayout k_layout() const { return BlockLayout::uniform(geometry.seq_k, geometry.block_k); }
};

// SpOptions::head_chunks = 0 runs this many. Measured: on 2 x H200 (Wan2.1-480p, P = 2, session 13)
// three chunks made dbsp 3.8% and Ulysses 4.4% faster than whole layers; emulated at P = 4, 8 and
// 16 (720p) three beat one at every P, and two or three were best.
inline constexpr int kAutoHeadChunks = 3;

struct SpOptions {
  bool mask_aware = true;    // skip slabs that no receiving query needs
  bool measure_idle = true;  // a closing barrier measures how long each rank waits for the slowest
  // GPU: SMs the attention kernel leaves free while a transfer runs beside it (the next ring
  // step's K/V, or with head_chunks > 1 the neighbouring chunks' all-to-alls), so that the
  // transfer's NCCL and copy kernels can run beside it instead of after it. Off by default: on
  // 2 x H200 (Wan2.1-480p, ring) 8 SMs made no difference beyond run-to-run noise.
  int ring_reserved_sms = 0;
  // GPU, grids without a ring (R = 1): the layer's heads go in this many chunks, each exchanged
  // and computed in turn, so that a chunk's all-to-all overlaps the previous chunk's attention
  // and the next one's output return. 1: the whole layer at once. 0 (auto): kAutoHeadChunks on
  // grids without a ring of two ranks or more, else 1 (one rank has no all-to-all to hide, and
  // computes in place only with one chunk).
  int head_chunks = 0;
  // GPU, diagnostics: false makes each ring step wait until the next step's K/V has arrived
  // before computing, so that no transfer kernel runs beside the attention kernel (the layer is
  // slower; the compute times then show what running beside the transfer costs the kernels).
  bool ring_overlap = true;
  // SpAttention connects every pair of ranks of the world and each ring's neighbours when it is
  // built (Communicator::connect), so that no layer call pays for a connection (NCCL connects a
  // pair on first use: 0.19 s on 2 x H200). false leaves it to first use, which saves the
  // transport buffers of pairs a run never uses (at large P, most of the world's pairs).
  bool connect_peers = true;
  // Each rank scans its output shard for NaN and Inf after the layer (NaN or Inf in any rank's
  // Q, K or V spreads to every row that attends to it). With measure_idle, the closing barrier
  // carries what each rank found and every rank throws the same dbsp::Error naming the ranks,
  // tokens and heads; without it, the ranks whose own output holds one throw.
  bool check_finite = true;
  // GPU, head chunks of one head (a heavy head alone on its rank, or the last chunk of a rank):
  // the kernel splits its longest rows in halves and merges them by LSE
  // (cuda::SparseAttention::split_long_rows), so that the chunk's last wave leaves fewer SMs idle.
  bool split_long_rows = true;
  // GPU, kernels outside the head chunks (ring steps, and layers run whole) of at most this many
  // heads: the same split of the longest rows, merged by LSE before the ring's merge (0: none
  // splits). A rank of one to three heads leaves its kernel's ragged last wave unfilled. At P = 32
  // (720p, U16R2, emulated, BENCHMARKS.md session 18) dbsp's slowest rank held one head alone in
  // 27 of 40 layers; splitting in kernels of up to three heads cut dbsp's ring time from 115 to
  // 104 ms and dbsp-paper's from 112 to 105, and left static USP's as it was. Splitting in kernels
  // of five heads or more gained nothing and cost up to 4% of compute.
  int split_step_heads = 3;
  // GPU: the shortest row that may split, in key blocks (cuda::SparseAttention::kMinSplitBlocks;
  // at least 2): a split's scratch and merge cost more than a short row's ragged wave.
  int min_split_blocks = 128;
};

// One layer on one rank. Times in milliseconds of wall clock.
struct SpTelemetry {
  Grid grid;
  double total_ms = 0;         // the whole call, including the closing barrier
  double setup_ms = 0;         // routing and local masks built on the host
  double compute_ms = 0;       // attention kernels and LSE merges
  double comm_ms = 0;          // packing, transfers and unpacking not hidden behind compute
  double wait_ms = 0;          // part of comm_ms blocked waiting for peers' data
  double idle_ms = 0;          // closing barrier: time spent waiting for the slowest rank
  int64_t bytes_sent = 0;      // to other ranks (all-to-all, ring, output return)
  int64_t bytes_received = 0;  // from other ranks
  int64_t bytes_saved = 0;     // what sending every slab would have added to bytes_sent
  int ring_steps_computed = 0;
  int ring_steps_skipped = 0;    // (rank, step) pairs with no kept block: no kernel launched
  int64_t kept_blocks = 0;       // (head, q block, k block) triples this rank computed
  bool schedule_reused = false;  // the routing and local masks came from the previous call

  // Adds another call's times, bytes and counts (grid and flags stay this call's).
  void add(const SpTelemetry& other);
};

// Lets an executor keep the schedule it builds for a call (routing, local masks, on the GPU the
// uploaded tables) in `slot` and reuse it while `key` is unchanged. The key must change whenever
// the mask or the partition does: SpAttention passes the layer and a fingerprint of both. The
// default (slot -1) builds a fresh schedule every call.
struct ScheduleReuse {
  int slot = -1;
  uint64_t key = 0;
};

// Runs layers on a fixed world communicator; builds the sub-communicators of each grid once.
class SpExecutor {
 public:
  explicit SpExecutor(Communicator& world, SpOptions options = {});
  ~SpExecutor();
  SpExecutor(const SpExecutor&) = delete;
  SpExecutor& operator=(const SpExecutor&) = delete;

  // q, k, v, out: this rank's input shard [tokens, heads, head_dim] in the communicator's memory
  // (host for MPI). `mask` and `partition` must be the same on every rank; every rank calls run.
  SpTelemetry run(const SpProblem& problem, const BlockMask& mask, const Partition& partition,
                  const float* q, const float* k, const float* v, float* out,
                  ScheduleReuse reuse = {});
  // The same with a fine (FG-Attn) mask, whose geometry must be the problem's: routing and data
  // movement follow mask.covering_blocks() (a K/V block moves iff a receiving query keeps one of
  // its keys), each ring step computes attention_fine over the kept keys in its K/V buffer, and
  // kept_blocks counts the covering blocks. The device path has run_device_bf16 below.
  SpTelemetry run(const SpProblem& problem, const FineMask& mask, const Partition& partition,
                  const float* q, const float* k, const float* v, float* out,
                  ScheduleReuse reuse = {});

  // The device path (NCCL communicator; dbsp built with CUDA and NCCL): q, k, v and out are bf16
  // [tokens, heads, head_dim] on the communicator's GPU, read after the work already queued on the
  // legacy default stream. Partial results merge in fp32. Returns once `out` is complete. A layer
  // that fails after its work was queued (timeout, dead peer) leaves the executor's device
  // buffers allocated until the process ends: freeing them would wait for work that may never
  // finish.
  // Kernel limits: head_dim 64 or 128, block sizes multiples of 64.
  SpTelemetry run_device_bf16(const SpProblem& problem, const BlockMask& mask,
                              const Partition& partition, const void* q, const void* k,
                              const void* v, void* out, ScheduleReuse reuse = {});
  // The device path with a fine mask: routing and data movement as the host fine run (covering
  // blocks), each ring step's kernel on the step's key lists (block_q must be a multiple of 64,
  // block_k may be any size: it only shapes the routing). Run on one GPU; P = 2 not yet run.
  SpTelemetry run_device_bf16(const SpProblem& problem, const FineMask& mask,
                              const Partition& partition, const void* q, const void* k,
                              const void* v, void* out, ScheduleReuse reuse = {});

  // Builds this rank's host schedule (routing and step masks) for a later run (device false) or
  // run_device_bf16 (device true) of the same problem, mask, partition and reuse slot and key,
  // which then skips that work. Meant for another thread while an earlier layer runs: it reads
  // only its arguments and may run beside run and run_device_bf16 of other slots. Slot -1 builds
  // nothing (such a schedule is never kept).
  void prebuild_schedule(const SpProblem& problem, const BlockMask& mask,
                         const Partition& partition, ScheduleReuse reuse, bool device);
  // The same for a fine mask (the next run or run_device_bf16 with this FineMask and key).
  void prebuild_schedule(const SpProblem& problem, const FineMask& mask, const Partition& partition,
                         ScheduleReuse reuse);

  Communicator& world() { return world_; }
  const SpOptions& options() const { return options_; }
  // Builds the sub-communicators of these grids now (collective over world, same grids in the
  // same order on every rank), so that no layer pays for a communicator split mid-run; with
  // SpOptions::connect_peers it then connects the world's pairs and each ring's neighbours.
  void prepare(std::span<const Grid> grids);

 private:
  struct Workspace;
  struct HostSchedules;
  struct DeviceState;
  Communicator& world_;
  SpOptions options_;
  std::vector<std::pair<Grid, std::unique_ptr<GridCommunicators>>> grids_;
  std::unique_ptr<Workspace> workspace_;
  std::unique_ptr<HostSchedules> host_schedules_;
  std::unique_ptr<sp::PrebuiltSchedules> prebuilt_;
  std::unique_ptr<DeviceState, void (*)(DeviceState*)> device_{nullptr, nullptr};
  GridCommunicators& grid_communicators(Grid grid);
  // The layer's end on this rank: the closing barrier (SpOptions::measure_idle), which carries
  // where this rank's output first holds NaN or Inf ({token, head}, or {-1, -1}), and the error
  // every rank throws when any rank found one. Returns the barrier's wait (0 without it).
  double close_layer(std::array<int64_t, 2> first_non_finite);
  // The host path's one body for block and fine masks: build_schedule() makes the layer's
  // schedule when the reuse slot has none for this key.
  template <class BuildSchedule>
  SpTelemetry run_host(const SpProblem& problem, const Partition& partition, const float* q,
                       const float* k, const float* v, float* out, ScheduleReuse reuse,
                       BuildSchedule&& build_schedule);
  // The device path's one body: check_layer() validates the call, build_schedule() fills the
  // layer's device schedule when the reuse slot has none for this key.
  template <class CheckLayer, class BuildSchedule>
  SpTelemetry run_device(const SpProblem& problem, const Partition& partition, const void* q,
                         const void* k, const void* v, void* out, ScheduleReuse reuse,
                         CheckLayer&& check_layer, BuildSchedule&& build_schedule);
};

// bf16 values on the current GPU (tools and tests of the device path). Throws without CUDA.
class DeviceBf16 {
 public:
  explicit DeviceBf16(std::span<const float> values);  // rounded to nearest even
  explicit DeviceBf16(size_t count);                   // zero-filled
  ~DeviceBf16();
  DeviceBf16(DeviceBf16&& other) noexcept;
  DeviceBf16& operator=(DeviceBf16&& other) noexcept;
  DeviceBf16(const DeviceBf16&) = delete;
  DeviceBf16& operator=(const DeviceBf16&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  std::vector<float> to_host() const;

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// How a layer is split: a planner policy and either a fixed grid or the cost model's choice of
// U x R per layer. Text forms: "ulysses" (static U = P), "ring" (static R = P), "usp:UxR",
// "usp" (static, grid chosen per layer), "dbsp-paper", "dbsp", "dbsp-paper:UxR", "dbsp:UxR".
struct Strategy {
  Policy policy = Policy::static_split;
  std::optional<Grid> grid;
  // Ours only: whether heads may be shared between groups (PlannerOptions::share_heads), as
  // "dbsp-shared" asks.
  bool share_heads = false;
  std::string name() const;
};
Strategy parse_strategy(std::string_view text, int ranks);

struct SpLayerReport {
  int layer = 0;
  Grid grid;
  uint64_t plan_hash = 0;  // partition hash, identical on every rank (checked)
  bool replanned = false;
  double predicted_ratio = 1;         // rho_s of the partition used, on this layer's mask
  double predicted_ms = 0;            // cost model (0 for static strategies)
  SpTelemetry telemetry;              // this rank
  std::vector<SpTelemetry> per_rank;  // every rank's telemetry (gathered on every rank)
  double measured_ratio = 1;          // max rank compute / mean rank compute
  // Calls that estimate the mask: this rank's estimation time (0 when the mask was given) and the
  // mask estimated (the same on every rank).
  double estimate_ms = 0;
  std::optional<BlockMask> estimated_mask;
  // The hash, plan and schedule were prepared by plan_ahead / plan_ahead_device.
  bool planned_ahead = false;
};

// One attention call per layer: picks or reuses the layer's plan (P_s rule), checks that every
// rank holds the same plan and mask (an all-gather of a 64-bit hash; a mismatch is an error), runs
// the executor for each batch element (the schedule built for the first serves the others) and
// gathers telemetry, summed over the batch.
class SpAttention {
 public:
  SpAttention(Communicator& world, Strategy strategy, int layers, SpOptions options = {},
              PlannerOptions planner = {}, CostModel cost = {});

  SpLayerReport forward(int layer, const SpProblem& problem, const BlockMask& mask, const float* q,
                        const float* k, const float* v, float* out);
  // A fine (FG-Attn) mask on the host path: the plan is made (or kept) on
  // mask.covering_blocks(), since the planner balances blocks; the cross-rank check hashes the
  // fine mask itself (mask_hash(FineMask)); predicted_ratio is rho_s of the fine mask's M x 1
  // slices under the partition used (imbalance_ratio(FineMask, Partition)), so it shows what
  // balancing on blocks left of the fine work's imbalance.
  SpLayerReport forward(int layer, const SpProblem& problem, const FineMask& mask, const float* q,
                        const float* k, const float* v, float* out);
  // The device path: bf16 tensors on the GPU of an NCCL communicator (SpExecutor::run_device_bf16).
  SpLayerReport forward_device_bf16(int layer, const SpProblem& problem, const BlockMask& mask,
                                    const void* q, const void* k, const void* v, void* out);
  // A fine mask on the device path, planned and checked as the host fine forward (plan on the
  // covering blocks, hash of the fine mask, predicted_ratio of the fine slices).
  SpLayerReport forward_device_bf16(int layer, const SpProblem& problem, const FineMask& mask,
                                    const void* q, const void* k, const void* v, void* out);
  // The same with the layer's mask estimated from this call's Q and K (sp_estimate.hpp: every rank
  // pools its own shard; with a batch, element 0's Q and K): estimate's block sizes must match the
  // problem's geometry. The report carries the mask and the estimation time.
  SpLayerReport forward(int layer, const SpProblem& problem, const EstimateOptions& estimate,
                        const float* q, const float* k, const float* v, float* out);
  SpLayerReport forward_device_bf16(int layer, const SpProblem& problem,
                                    const EstimateOptions& estimate, const void* q, const void* k,
                                    const void* v, void* out);
  // Host work of a layer started ahead of its forward, on a background thread, so that it runs
  // while the GPU computes the layers before it: the mask's hash, the plan (or the P_s reuse
  // check) and this rank's schedule (for forward, or with _device for forward_device_bf16). The
  // next forward of `layer` with this very mask object (the same address; it must stay alive and
  // unchanged until then) uses the result; any other forward of the layer first waits for the
  // work and drops it, so the plan cache may then hold the plan of the mask given here. Every
  // rank must make the same calls. An estimated forward drops it too (its mask comes from the
  // call's Q and K).
  void plan_ahead(int layer, const SpProblem& problem, const BlockMask& mask);
  void plan_ahead_device(int layer, const SpProblem& problem, const BlockMask& mask);
  // The same for a fine mask: its hash, the plan on its covering blocks, its rho_s under that plan
  // (the report's predicted_ratio) and this rank's fine schedule, whose key lists are the largest
  // host work of a fine layer. Host and device forwards use the same schedule.
  void plan_ahead(int layer, const SpProblem& problem, const FineMask& mask);
  void plan_ahead_device(int layer, const SpProblem& problem, const FineMask& mask);

  int replans() const { return plans_.replans(); }
  const Strategy& strategy() const { return strategy_; }
  SpExecutor& executor() { return executor_; }

 private:
  // What plan_ahead prepares: the mask's fingerprint and the plan lookup (and for a fine mask its
  // rho_s under the plan).
  struct Prepared {
    uint64_t mask_fingerprint = 0;
    PlanCache::Lookup lookup{nullptr, false, 1.0};
    double fine_ratio = 0;
  };
  struct Ahead {
    int layer = 0;
    const BlockMask* mask = nullptr;  // planned on (a fine mask's covering blocks)
    bool device = false;
    bool fine = false;
    std::future<Prepared> work;
  };
  // Starts `work` (which returns the Prepared) for `layer` on a background thread.
  template <class Work>
  void start_ahead(int layer, const BlockMask& planned_on, bool device, bool fine, Work&& work);
  void start_block_ahead(int layer, const SpProblem& problem, const BlockMask& mask, bool device);
  void start_fine_ahead(int layer, const SpProblem& problem, const FineMask& mask, bool device);
  // Waits for and removes the work started for `layer`; returns it when it was started for
  // `mask` (null: none matches) on this path and kind of mask.
  std::optional<Prepared> take_ahead(int layer, const BlockMask* mask, bool device, bool fine);
  PlanCache::Lookup plan_for(int layer, const BlockMask& mask);  // serialised with the workers
  // Plans on `mask` (or takes what plan_ahead prepared for it when `ahead_mask` is it), checks
  // (plan hash, mask fingerprint) across ranks, runs `run`. fingerprint() hashes the mask.
  // For a fine mask `mask` is its covering blocks, and a report planned ahead carries its rho_s.
  template <class Fingerprint, class Run>
  SpLayerReport forward_with(int layer, const BlockMask& mask, const BlockMask* ahead_mask,
                             bool device, bool fine, Fingerprint&& fingerprint, Run&& run);

  SpExecutor executor_;
  Strategy strategy_;
  int layers_;
  PlanCache plans_;
  std::mutex plans_mutex_;               // plans_ is shared with the plan_ahead workers
  std::vector<uint64_t> schedule_keys_;  // per layer: the key of the schedule the executor keeps
  std::shared_ptr<EstimateWorkspace> estimate_workspace_;  // the device estimator's, once used
  std::vector<Ahead> ahead_;  // last: its workers use the members above
};

// ---- Emulation: P virtual ranks in one process (dbsp run --emulate P) ----
// Each virtual rank's routing is the real one and each of its ring steps really runs the local
// attention kernel on this machine's CPU or GPU (one rank at a time, timed); transfers are charged
// from a link model. The layer's time follows the synchronous schedule: the slowest rank's host
// setup (its schedule built and timed on this machine), all-to-all in, then per ring step the
// slowest ring rank of max(compute of step t, transfer of step t + 1), then all-to-all out; the
// slowest head group sets the ring time.
struct LinkModel {
  double gbytes_per_s = 120.0;  // per rank, each direction
  double latency_us = 15.0;     // per message batch
  // How much slower a ring step's kernel runs while the next step's K/V transfer runs beside it
  // (its NCCL and copy kernels share the SMs and memory): 0.07 measured on 2 x H200, Wan2.1-480p
  // ring, compute with and without the transfer beside (--no-ring-overlap, BENCHMARKS.md).
  double beside_slowdown = 0.07;
  // Bytes per second a rank's staging copies move (packing slabs before a transfer, unpacking
  // them after, copying rows that stay on the rank; 0: free); empty: timed in the run on the
  // executor's own copy (the device path's copy kernel, or memcpy on the CPU).
  std::optional<double> copy_gbytes_per_s = std::nullopt;
  double transfer_ms(int64_t bytes) const;
};

enum class EmulationDevice { cpu, cuda };

struct EmulatedLayer {
  Grid grid;
  std::vector<double> rank_compute_ms;  // measured, per virtual rank
  double measured_ratio = 1;            // max rank compute / mean rank compute
  double ring_ratio = 1;  // measured rho_s: max_g sum_t max_r compute / mean rank compute
  double setup_ms = 0;    // host schedule build (routing, step masks), slowest rank, measured
  // Charged, in plus out; with pipelined head chunks (SpOptions::head_chunks > 1, grids without a
  // ring) only the part the chunks' kernels leave exposed.
  double all_to_all_ms = 0;
  // Synchronous ring timeline (compute measured, transfers charged); with pipelined head chunks
  // the slowest rank's compute.
  double ring_ms = 0;
  double total_ms = 0;
  // Pipelined head chunks only (else empty): per chunk the slowest rank's all-to-all in (the
  // first with the table upload and the block-list kernel before it) and out.
  std::vector<double> chunk_in_ms, chunk_out_ms;
  // And when each output exchange starts (ms from the first input exchange's start), after the
  // kernel of which rank (-1: after the exchange before it).
  std::vector<double> chunk_out_start_ms;
  std::vector<int> chunk_out_after_rank;
  // Per virtual rank and ring step: the kernel's measured time (0 where none ran, or the rank's
  // head chunks' end at step 0) and the blocks it kept.
  std::vector<std::vector<double>> rank_step_ms;
  std::vector<std::vector<int64_t>> rank_step_kept;
  int64_t bytes_moved = 0;  // all ranks, to other ranks
  int64_t bytes_saved = 0;  // by mask-aware communication
};

class SpEmulator {
 public:
  SpEmulator(int ranks, EmulationDevice device, LinkModel link = {}, SpOptions options = {});
  ~SpEmulator();
  EmulatedLayer run(const SpProblem& problem, const BlockMask& mask, const Partition& partition);
  // A fine (M x 1) mask, as SpExecutor's fine run moves and computes it: routing and bytes from
  // the covering blocks, each ring step's kernel timed on the rank's local fine mask. Each virtual
  // rank builds its schedule into the memory it kept from its previous run of the same `run_slot`,
  // as a real rank does: strategies emulated side by side pass one slot each, so that none pays
  // for growing lists another strategy's layout left too small.
  EmulatedLayer run(const SpProblem& problem, const FineMask& mask, const Partition& partition,
                    int run_slot = 0);
  int ranks() const { return ranks_; }
  // The rate staging copies of the problem's rows are charged at (per byte, beyond a launch's
  // fixed cost): LinkModel::copy_gbytes_per_s when given, else the one timed on the executor's
  // copy.
  double staging_gbytes_per_s(const SpProblem& problem);

 private:
  struct Timer;
  int ranks_;
  LinkModel link_;
  SpOptions options_;
  std::unique_ptr<Timer, void (*)(Timer*)> timer_{nullptr, nullptr};
};

// 64-bit fingerprint of a mask's bits and geometry (stable across processes).
uint64_t mask_hash(const BlockMask& mask);
// The same for a fine mask: geometry, heads, row offsets and key indices.
uint64_t mask_hash(const FineMask& mask);

}  // namespace dbsp
