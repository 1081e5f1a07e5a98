// SpExecutor::run_device_bf16: the layer's three phases on the GPU over NCCL. The host builds the
// routing, copy descriptors and per-step masks, uploads them in one copy, and enqueues the whole
// layer without waiting: the all-to-alls run on the world communicator's stream, the ring on the
// ring communicator's stream, attention and merges on a compute stream, ordered by events (the
// transfer of ring step t + 1 overlaps the compute of step t). The host waits once, at the end,
// against the timeout.
#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <exception>
#include <limits>
#include <sstream>
#include <tuple>

#include "comm/nccl/nccl_check.hpp"
#include "comm/nccl/nccl_communicator.hpp"
#include "comm/poll.hpp"
#include "dbsp/block_layout.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "dbsp/sp_attention.hpp"
#include "sp/cuda/block_indices.hpp"
#include "sp/cuda/device_copy.hpp"
#include "sp/cuda/device_resources.hpp"
#include "sp/cuda/device_schedule.hpp"
#include "sp/cuda/non_finite.hpp"
#include "sp/cuda/staged_upload.hpp"
#include "sp/non_finite.hpp"
#include "sp/routing.hpp"
#include "sp/schedule.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp {

using sp::Slab;
// The schedule's types and the copy-table bases (kUserQ, ...) are named throughout.
using namespace sp::device;  // NOLINT(build/namespaces)

struct SpExecutor::DeviceState {
  int device = 0;
  cudaStream_t compute = nullptr;
  cudaStream_t other_compute = nullptr;  // odd head chunks, beside the even ones' tails
  DeviceMemory q, k, v, step_k[2], step_v[2], out_local, accumulator, lse, part, part_lse;
  DeviceMemory all_to_all_send, all_to_all_recv, ring_send, ring_recv;
  PinnedMemory pinned_table;  // the schedule's table as built (sp::device::UploadTable)
  sp::device::StagedUpload staged_upload;  // fine layers' key lists
  DeviceMemory non_finite;  // the output's first NaN or Inf (SpOptions::check_finite)
  PinnedMemory non_finite_host;
  Event start, inputs_done, ring_done, finished;
  sp::ScheduleSlots<DeviceSchedule> schedules;
  // Per ring step (or per head chunk): its K/V arrived; its compute began and ended. Per head
  // chunk: its inputs arrived.
  std::vector<std::unique_ptr<Event>> ring_arrived, compute_begin, compute_end, chunk_arrived;
  sp::device::KernelCache kernels;

  explicit DeviceState(int dev) : device(dev) {
    DBSP_CUDA_RT_CHECK(cudaSetDevice(device));
    DBSP_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    DBSP_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&other_compute, cudaStreamNonBlocking));
  }
  ~DeviceState() {
    cudaSetDevice(device);
    kernels.clear();
    if (other_compute) cudaStreamDestroy(other_compute);
    if (compute) cudaStreamDestroy(compute);
  }

  void ensure_events(int steps) {
    while (static_cast<int>(ring_arrived.size()) < steps) {
      ring_arrived.push_back(std::make_unique<Event>());
      chunk_arrived.push_back(std::make_unique<Event>());
      compute_begin.push_back(std::make_unique<Event>());
      compute_end.push_back(std::make_unique<Event>());
    }
  }
};

namespace {

// Leaves an object to the process's end when the scope is left by an exception. After a failed
// layer (a peer that never sends) some queued work may never finish, and freeing device memory
// waits for all of the device's work: destroying the executor's buffers would hang where the
// caller should get the error.
template <class Owner>
class AbandonOnFailure {
 public:
  explicit AbandonOnFailure(Owner& owner)
      : owner_(owner), exceptions_(std::uncaught_exceptions()) {}
  ~AbandonOnFailure() {
    if (std::uncaught_exceptions() > exceptions_) (void)owner_.release();
  }
  AbandonOnFailure(const AbandonOnFailure&) = delete;
  AbandonOnFailure& operator=(const AbandonOnFailure&) = delete;

 private:
  Owner& owner_;
  int exceptions_;
};

}  // namespace

namespace {

// Throws unless the attention kernels take this problem's head_dim and block sizes: with block
// lists (block layers) or with key lists (fine layers, whose rows are block_q queries; block_k
// then only shapes the routing).
void require_kernel_support(const SpProblem& problem, bool fine) {
  const cuda::AttentionShape probe_shape{1, 64, 64, 1, problem.head_dim, cuda::DType::bf16, 0.0};
  cuda::DeviceMask probe_mask;
  probe_mask.block_q = problem.geometry.block_q;
  probe_mask.block_k = problem.geometry.block_k;
  probe_mask.q_blocks = 1;
  static const int32_t count = 0;
  static const int64_t offset[2] = {0, 0};
  static const int32_t index = 0;
  if (fine) {
    probe_mask.key_row_offset = offset;
    probe_mask.key_index = &index;
  } else {
    probe_mask.kv_count = &count;
    probe_mask.block_row_offset = offset;
    probe_mask.kv_index = &index;
  }
  const std::string reason = cuda::unsupported_reason(probe_shape, probe_mask);
  require(reason.empty(), "device path: the attention kernels do not support ", reason);
}

}  // namespace

// The one body of the device path for block and fine masks: check_layer() validates the inputs,
// build_schedule() fills a cleared schedule; the rest reads only the schedule (a fine layer's
// steps carry key lists instead of block lists).
template <class CheckLayer, class BuildSchedule>
SpTelemetry SpExecutor::run_device(const SpProblem& problem, const Partition& partition,
                                   const void* q, const void* k, const void* v, void* out,
                                   ScheduleReuse reuse, CheckLayer&& check_layer,
                                   BuildSchedule&& build_schedule) {
  sp::Stopwatch total_clock, clock;
  SpTelemetry telemetry;
  telemetry.grid = partition.grid;
  auto* world = dynamic_cast<comm::NcclCommunicator*>(&world_);
  require(world != nullptr, "SpExecutor::run_device_bf16 needs an NCCL communicator; got ",
          world_.backend());
  check_layer();
  GridCommunicators& comms = grid_communicators(partition.grid);
  auto* ring = dynamic_cast<comm::NcclCommunicator*>(comms.ring.get());
  require(ring != nullptr, "device path: the ring sub-communicator is not NCCL");

  if (!device_) {
    device_ = std::unique_ptr<DeviceState, void (*)(DeviceState*)>(
        new DeviceState(world->device()), [](DeviceState* state) { delete state; });
  }
  DeviceState& ds = *device_;
  DBSP_CUDA_RT_CHECK(cudaSetDevice(ds.device));
  const int ranks = world_.size();
  const int R = partition.grid.ring;
  const int64_t D = problem.head_dim;
  const int64_t H = problem.heads;
  const int64_t row_bytes = D * kBf16Bytes;
  ds.ensure_events(R);

  // The schedule: routing, local masks, descriptors (offsets into indexed buffers, so that a
  // kept schedule stays valid for other tensors), the table to upload, and the kernel objects
  // (built before any transfer is queued, so that no allocation lands between them).
  bool reused = false;
  DeviceSchedule& sched = ds.schedules.lookup(reuse, sp::schedule_key(reuse, problem), reused);
  if (!reused) build_schedule(sched, ds.kernels, ds.pinned_table);
  telemetry.schedule_reused = reused;
  ds.ensure_events(std::max<int>(R, static_cast<int>(sched.chunks.size())));
  const sp::LayerRouting& route = sched.host.route;
  const int64_t Hg = static_cast<int64_t>(route.heads.size());
  const int64_t tq = route.q_local.tokens();
  const int64_t tk = route.k_local.tokens();
  const int computing_steps = sched.host.computing_steps;
  const bool fine = sched.host.fine();

  // Buffers (grow-only) and the addresses the copy tables refer to.
  sp::device::CopyBases bases;
  auto& at = bases.address;
  auto address = [](const void* pointer) { return reinterpret_cast<uint64_t>(pointer); };
  at[kUserQ] = address(q);
  at[kUserK] = address(k);
  at[kUserV] = address(v);
  at[kUserOut] = address(out);
  // A rank whose local tensors are its inputs computes on the caller's buffers (read-only for Q,
  // K, V; the kernels write O in place), and copies nothing in or out. Not when O shares memory
  // with an input (a caller writing O over Q): the kernels would overwrite what they still read.
  const bool in_place =
      sched.local_is_input &&
      sp::output_apart_from_inputs(route, static_cast<int>(H), row_bytes, q, k, v, out);
  auto writable = [](const void* pointer) {
    return const_cast<char*>(static_cast<const char*>(pointer));
  };
  char* q_local = in_place ? writable(q) : ds.q.ensure(std::max<int64_t>(1, tq * Hg * row_bytes));
  char* k_local = in_place ? writable(k) : ds.k.ensure(std::max<int64_t>(1, tk * Hg * row_bytes));
  char* v_local = in_place ? writable(v) : ds.v.ensure(std::max<int64_t>(1, tk * Hg * row_bytes));
  char* out_local = in_place ? static_cast<char*>(out)
                             : ds.out_local.ensure(std::max<int64_t>(1, tq * Hg * row_bytes));
  at[kQLocal] = address(q_local);
  at[kKLocal] = address(k_local);
  at[kVLocal] = address(v_local);
  at[kOutLocal] = address(out_local);
  char* step_k[2];
  char* step_v[2];
  for (int b = 0; b < 2; ++b) {
    step_k[b] = ds.step_k[b].ensure(std::max<int64_t>(1, sched.step_tokens * Hg * row_bytes));
    step_v[b] = ds.step_v[b].ensure(std::max<int64_t>(1, sched.step_tokens * Hg * row_bytes));
  }
  at[kStepK0] = address(step_k[0]);
  at[kStepK1] = address(step_k[1]);
  at[kStepV0] = address(step_v[0]);
  at[kStepV1] = address(step_v[1]);
  char* a2a_send =
      ds.all_to_all_send.ensure(std::max<int64_t>({1, sched.in_send_bytes, sched.out_send_bytes}));
  char* a2a_recv =
      ds.all_to_all_recv.ensure(std::max<int64_t>({1, sched.in_recv_bytes, sched.out_recv_bytes}));
  char* ring_send = ds.ring_send.ensure(std::max<int64_t>(1, sched.ring_send_bytes));
  char* ring_recv = ds.ring_recv.ensure(std::max<int64_t>(1, sched.ring_recv_bytes));
  at[kAllToAllSend] = address(a2a_send);
  at[kAllToAllRecv] = address(a2a_recv);
  at[kRingSend] = address(ring_send);
  at[kRingRecv] = address(ring_recv);
  auto* lse = reinterpret_cast<float*>(ds.lse.ensure(std::max<int64_t>(1, tq * Hg * 4)));
  float* accumulator = nullptr;
  char* part = nullptr;
  float* part_lse = nullptr;
  if (computing_steps >= 2) {
    accumulator = reinterpret_cast<float*>(ds.accumulator.ensure(tq * Hg * D * 4));
    part = ds.part.ensure(tq * Hg * row_bytes);
    part_lse = reinterpret_cast<float*>(ds.part_lse.ensure(tq * Hg * 4));
  }
  const char* device_table = sched.table.get();
  telemetry.setup_ms = clock.lap_ms();

  const cudaStream_t world_stream = world->stream();
  const cudaStream_t ring_stream = ring->stream();
  const cudaStream_t compute = ds.compute;
  auto wait = [](cudaStream_t stream, const Event& event) {
    DBSP_CUDA_RT_CHECK(cudaStreamWaitEvent(stream, event.get(), 0));
  };
  auto post = [](comm::NcclCommunicator& comm, char* send_base, const std::vector<PeerRange>& sends,
                 char* recv_base, const std::vector<PeerRange>& recvs, const char* operation) {
    std::vector<SendOp> send_ops;
    std::vector<RecvOp> recv_ops;
    for (const PeerRange& r : sends) send_ops.push_back({r.peer, send_base + r.offset, r.bytes});
    for (const PeerRange& r : recvs) recv_ops.push_back({r.peer, recv_base + r.offset, r.bytes});
    return comm.start_exchange(send_ops, recv_ops, operation);
  };
  std::vector<std::unique_ptr<PendingExchange>> in_flight;

  // From here on work is queued on the device.
  const AbandonOnFailure abandon(device_);

  // (a) On the world stream: upload (first use of a schedule), pack, exchange, unpack.
  ds.start.record(world_stream);
  if (!sched.uploaded) {
    DBSP_CUDA_RT_CHECK(cudaMemcpyAsync(sched.table.get(), ds.pinned_table.ensure(sched.table_bytes),
                                       static_cast<size_t>(sched.table_bytes),
                                       cudaMemcpyHostToDevice, world_stream));
    for (const DeviceSchedule::KeyListUpload& keys : sched.key_list_uploads) {
      ds.staged_upload.copy(sched.key_lists.get() + keys.offset, keys.host, keys.bytes,
                            world_stream);
    }
    // Block layers write each step's key-block lists from the mask rows; fine layers' key lists
    // went up just above.
    const int words = sched.row_words;
    for (int t = 0; t < R; ++t) {
      if (fine || sched.host.step_kept[t] == 0) continue;
      const DeviceStep& step = sched.steps[t];
      sp::device::fill_block_indices(
          reinterpret_cast<const uint64_t*>(device_table + sched.row_bits_offset), words,
          Hg * static_cast<int64_t>(route.q_blocks.size()),
          reinterpret_cast<const uint64_t*>(device_table + step.wanted_offset),
          reinterpret_cast<const int32_t*>(device_table + step.wanted_before_offset),
          reinterpret_cast<const int64_t*>(device_table + step.row_offset_offset),
          reinterpret_cast<int32_t*>(sched.indices.get()) + step.index_at, world_stream);
    }
    sched.uploaded = true;
  }
  if (route.clear_local_q && !in_place && tq * Hg > 0) {
    DBSP_CUDA_RT_CHECK(cudaMemsetAsync(q_local, 0, tq * Hg * row_bytes, world_stream));
  }
  const int chunks = static_cast<int>(sched.chunks.size());
  const bool pipelined = chunks > 1;
  for (int c = 0; c < chunks; ++c) {
    const ChunkPhases& chunk = sched.chunks[c];
    if (!in_place) launch(chunk.in_local, device_table, bases, row_bytes, world_stream);
    launch(chunk.in_pack, device_table, bases, row_bytes, world_stream);
    in_flight.push_back(post(*world, a2a_send, chunk.in_sends, a2a_recv, chunk.in_recvs,
                             "sp all_to_all_v (Q, K, V in)"));
    launch(chunk.in_unpack, device_table, bases, row_bytes, world_stream);
    ds.chunk_arrived[c]->record(world_stream);
  }
  ds.inputs_done.record(world_stream);

  // The device mask of ring step `step` from its row `first_row` on (a head chunk's rows).
  auto step_mask = [&](const DeviceStep& step, size_t first_row) {
    cuda::DeviceMask dm;
    dm.block_q = problem.geometry.block_q;
    dm.block_k = problem.geometry.block_k;
    dm.q_blocks = static_cast<int>(route.q_blocks.size());
    if (fine) {
      // Key lists only: tokens of the step's K/V buffer, so no key block layout is needed.
      dm.key_row_offset =
          reinterpret_cast<const int64_t*>(device_table + step.key_row_offset_offset) + first_row;
      dm.key_index =
          reinterpret_cast<const int32_t*>(sched.key_lists.get() + step.key_index_offset);
      dm.q_block_start = reinterpret_cast<const int64_t*>(device_table + step.q_start_offset);
      return dm;
    }
    dm.kv_count = reinterpret_cast<const int32_t*>(device_table + step.count_offset) + first_row;
    dm.block_row_offset =
        reinterpret_cast<const int64_t*>(device_table + step.row_offset_offset) + first_row;
    dm.kv_index = reinterpret_cast<const int32_t*>(sched.indices.get()) + step.index_at;
    dm.q_block_start = reinterpret_cast<const int64_t*>(device_table + step.q_start_offset);
    dm.k_block_start = reinterpret_cast<const int64_t*>(device_table + step.k_start_offset);
    return dm;
  };

  if (pipelined) {
    // (b') Head chunks (R = 1): chunk c computes while chunk c + 1 arrives and chunk c - 1's O
    // leaves, all-to-alls on the world stream. Even chunks compute on the compute stream, odd ones
    // on the other: a chunk whose inputs are in starts on the SMs its predecessor's last work
    // items leave idle (chunks write disjoint heads of O and LSE).
    const DeviceStep& step = sched.steps[0];
    const size_t rows_per_head = route.q_blocks.size();
    for (int c = 0; c < chunks; ++c) {
      const ChunkPhases& chunk = sched.chunks[c];
      const cudaStream_t chunk_stream = c % 2 == 0 ? compute : ds.other_compute;
      wait(chunk_stream, *ds.chunk_arrived[c]);
      ds.compute_begin[c]->record(chunk_stream);
      const int64_t q_at = tq * chunk.first_head * row_bytes;
      const int64_t k_at = tk * chunk.first_head * row_bytes;
      if (chunk.kept > 0) {
        const cuda::DeviceMask dm =
            step_mask(step, static_cast<size_t>(chunk.first_head) * rows_per_head);
        cuda::SparseAttention& attention = *chunk.kernel;
        // Another chunk's all-to-all runs beside every chunk of a pipelined layer.
        attention.reserve_sms(options_.ring_reserved_sms);
        attention.split_long_rows(chunk.split_rows,
                                  options_.min_split_blocks);  // scratch: schedule
        attention.plan(dm, chunk_stream);
        attention.run(dm, q_local + q_at, k_local + k_at, v_local + k_at, out_local + q_at,
                      lse + tq * chunk.first_head, chunk_stream);
        telemetry.kept_blocks += chunk.kept;
      } else if (tq * chunk.heads > 0) {
        DBSP_CUDA_RT_CHECK(
            cudaMemsetAsync(out_local + q_at, 0, tq * chunk.heads * row_bytes, chunk_stream));
      }
      ds.compute_end[c]->record(chunk_stream);
    }
    if (computing_steps > 0) {
      ++telemetry.ring_steps_computed;
    } else {
      ++telemetry.ring_steps_skipped;
    }
    const int last_odd_chunk = chunks % 2 == 0 ? chunks - 1 : chunks - 2;
    wait(compute, *ds.compute_end[last_odd_chunk]);
    ds.ring_done.record(compute);
  } else {
    // (b) Ring on the ring stream, attention on the compute stream.
    wait(ring_stream, ds.inputs_done);
    wait(compute, ds.inputs_done);
    if (computing_steps == 0 && tq * Hg > 0) {
      DBSP_CUDA_RT_CHECK(cudaMemsetAsync(out_local, 0, tq * Hg * row_bytes, compute));
    }
    if (computing_steps >= 2) {
      DBSP_CUDA_RT_CHECK(cudaMemsetAsync(accumulator, 0, tq * Hg * D * 4, compute));
      sp::device::fill_f32(lse, tq * Hg, -std::numeric_limits<float>::infinity(), compute);
    }
    for (int t = 0; t < R; ++t) {
      if (t + 1 < R) {
        const DeviceStep& next = sched.steps[t + 1];
        // The unpack overwrites the buffer that step t - 1 computed on.
        if (t >= 1) wait(ring_stream, *ds.compute_end[t - 1]);
        launch(next.pack, device_table, bases, row_bytes, ring_stream);
        in_flight.push_back(
            post(*ring, ring_send, next.sends, ring_recv, next.recvs, "sp ring step (K, V)"));
        launch(next.unpack, device_table, bases, row_bytes, ring_stream);
        ds.ring_arrived[t + 1]->record(ring_stream);
      }
      if (t > 0) wait(compute, *ds.ring_arrived[t]);
      if (!options_.ring_overlap && t + 1 < R) wait(compute, *ds.ring_arrived[t + 1]);
      ds.compute_begin[t]->record(compute);
      const DeviceStep& step = sched.steps[t];
      if (sched.host.step_kept[t] > 0) {
        const cuda::DeviceMask dm = step_mask(step, 0);
        const void* keys = t == 0 ? k_local : step_k[t % 2];
        const void* values = t == 0 ? v_local : step_v[t % 2];
        cuda::SparseAttention& attention = *step.kernel;
        const bool transfer_beside =
            t + 1 < R && (!sched.steps[t + 1].sends.empty() || !sched.steps[t + 1].recvs.empty());
        attention.reserve_sms(transfer_beside ? options_.ring_reserved_sms : 0);
        attention.split_long_rows(step.split_rows, options_.min_split_blocks);
        attention.plan(dm, compute);
        if (computing_steps == 1) {
          attention.run(dm, q_local, keys, values, out_local, lse, compute);
        } else {
          attention.run(dm, q_local, keys, values, part, part_lse, compute);
          cuda::merge_partial(1, tq, static_cast<int>(Hg), static_cast<int>(D), cuda::DType::fp32,
                              accumulator, lse, cuda::DType::bf16, part, part_lse, compute);
        }
        ++telemetry.ring_steps_computed;
        telemetry.kept_blocks += sched.host.step_kept[t];
      } else {
        ++telemetry.ring_steps_skipped;
      }
      ds.compute_end[t]->record(compute);
    }
    if (computing_steps >= 2) {
      sp::device::f32_to_bf16(accumulator, reinterpret_cast<uint16_t*>(out_local), tq * Hg * D,
                              compute);
    }
    ds.ring_done.record(compute);
  }

  // (c) On the world stream: O back to the input distribution, chunk by chunk as each is done.
  // Rows whose O does not come back (no kept key anywhere) read as zeros. In place, the kernels
  // (or the empty layer's memset) wrote every row already.
  const int64_t out_bytes = route.q_input.tokens() * H * row_bytes;
  if (out_bytes > 0 && !in_place) {
    DBSP_CUDA_RT_CHECK(cudaMemsetAsync(out, 0, out_bytes, world_stream));
  }
  for (int c = 0; c < chunks; ++c) {
    const ChunkPhases& chunk = sched.chunks[c];
    // A pipelined output chunk waits for the last of this rank's kernels whose heads it returns.
    if (!pipelined) {
      wait(world_stream, ds.ring_done);
    } else if (chunk.out_after >= 0) {
      wait(world_stream, *ds.compute_end[chunk.out_after]);
    }
    if (!in_place) launch(chunk.out_local, device_table, bases, row_bytes, world_stream);
    launch(chunk.out_pack, device_table, bases, row_bytes, world_stream);
    in_flight.push_back(post(*world, a2a_send, chunk.out_sends, a2a_recv, chunk.out_recvs,
                             "sp all_to_all_v (O out)"));
    launch(chunk.out_unpack, device_table, bases, row_bytes, world_stream);
  }
  // Every output chunk waited for the kernel of its heads; the layer ends after both streams'.
  if (pipelined) wait(world_stream, ds.ring_done);
  const bool check_finite = options_.check_finite && out_bytes > 0;
  auto* first_non_finite = reinterpret_cast<unsigned long long*>(ds.non_finite_host.ensure(8));
  if (check_finite) {
    auto* first = reinterpret_cast<unsigned long long*>(ds.non_finite.ensure(8));
    DBSP_CUDA_RT_CHECK(cudaMemsetAsync(first, 0xff, 8, world_stream));
    sp::device::first_non_finite_bf16(static_cast<const uint16_t*>(out), out_bytes / 2, first,
                                      world_stream);
    DBSP_CUDA_RT_CHECK(
        cudaMemcpyAsync(first_non_finite, first, 8, cudaMemcpyDeviceToHost, world_stream));
  }
  ds.finished.record(world_stream);

  // The one host wait of the layer, bounded by the timeout; a stuck phase is named.
  bool comm_failed = false;
  const bool done = comm::poll_until(
      world_.timeout_seconds(),
      [&] {
        if (ds.finished.done()) return true;
        for (comm::NcclCommunicator* c : {world, ring}) {
          ncclResult_t state = ncclSuccess;
          if (ncclCommGetAsyncError(c->handle(), &state) != ncclSuccess ||
              (state != ncclSuccess && state != ncclInProgress)) {
            comm_failed = true;
          }
        }
        return comm_failed;
      },
      comm::kDevicePollPause);
  if (!done || comm_failed) {
    std::ostringstream what;
    what << "nccl: sp layer on rank " << world_.rank() << " of " << ranks
         << (comm_failed ? " failed: a communicator reported an error" : " timed out after ")
         << (comm_failed ? "" : std::to_string(world_.timeout_seconds()) + " s");
    if (!ds.inputs_done.done()) {
      what << " in the input all_to_all_v";
    } else {
      int stuck = 1;
      while (stuck < R && ds.ring_arrived[stuck]->done()) ++stuck;
      if (stuck < R) {
        what << " in ring step " << stuck << " waiting for ring rank " << route.steps[stuck].origin
             << " (world rank " << grid_rank(route.group, route.steps[stuck].origin, partition.grid)
             << ")";
      } else {
        what << " in the output all_to_all_v";
      }
    }
    sched.uploaded = false;  // the table may not have arrived
    world->abort(what.str());
    ring->abort(what.str());
    fail(what.str());
  }
  in_flight.clear();

  double compute_ms = 0;
  if (pipelined) {
    // Neighbouring chunks may overlap (two streams): the union of their spans, in chunk order.
    double reached = 0;  // from chunk 0's begin
    for (int c = 0; c < chunks; ++c) {
      const double begin = elapsed_ms(*ds.compute_begin[0], *ds.compute_begin[c]);
      const double end = elapsed_ms(*ds.compute_begin[0], *ds.compute_end[c]);
      compute_ms += std::max(0.0, end - std::max(begin, reached));
      reached = std::max(reached, end);
    }
  } else {
    for (int t = 0; t < R; ++t) {
      if (sched.host.step_kept[t] > 0) {
        compute_ms += elapsed_ms(*ds.compute_begin[t], *ds.compute_end[t]);
      }
    }
  }
  const double span_ms = elapsed_ms(ds.start, ds.finished);
  const double in_ms = elapsed_ms(ds.start, ds.inputs_done);
  const double out_ms = elapsed_ms(ds.ring_done, ds.finished);
  telemetry.compute_ms = compute_ms;
  telemetry.comm_ms = std::max(0.0, span_ms - compute_ms);
  telemetry.wait_ms = std::max(0.0, telemetry.comm_ms - in_ms - out_ms);
  const int64_t out_first =
      check_finite && *first_non_finite != ~0ull ? static_cast<int64_t>(*first_non_finite) : -1;
  telemetry.idle_ms = close_layer(sp::output_place(out_first, route.q_input.first_token, H, D));
  telemetry.bytes_sent = route.rows_sent * row_bytes;
  telemetry.bytes_received = route.rows_received * row_bytes;
  telemetry.bytes_saved = (route.baseline_rows_sent - route.rows_sent) * row_bytes;
  telemetry.total_ms = total_clock.elapsed_ms();
  return telemetry;
}

SpTelemetry SpExecutor::run_device_bf16(const SpProblem& problem, const BlockMask& mask,
                                        const Partition& partition, const void* q, const void* k,
                                        const void* v, void* out, ScheduleReuse reuse) {
  return run_device(
      problem, partition, q, k, v, out, reuse,
      [&] {
        sp::check_layer(world_.size(), problem, mask, partition);
        require_kernel_support(problem, /*fine=*/false);
      },
      [&](DeviceSchedule& sched, KernelCache& kernels, PinnedMemory& pinned) {
        std::optional<sp::LayerSchedule> ready =
            prebuilt_->take(reuse.slot, sp::schedule_key(reuse, problem), /*with_indices=*/false);
        if (ready) sched.host = std::move(*ready);
        build_device_schedule(sched, problem, mask, partition, world_.rank(), world_.size(),
                              options_, kernels, pinned, /*host_prebuilt=*/ready.has_value());
      });
}

SpTelemetry SpExecutor::run_device_bf16(const SpProblem& problem, const FineMask& mask,
                                        const Partition& partition, const void* q, const void* k,
                                        const void* v, void* out, ScheduleReuse reuse) {
  reuse = sp::fine_reuse(reuse);  // as on the host path
  return run_device(
      problem, partition, q, k, v, out, reuse,
      [&] {
        sp::check_fine_layer(world_.size(), problem, mask, partition);
        require_kernel_support(problem, /*fine=*/true);
      },
      [&](DeviceSchedule& sched, KernelCache& kernels, PinnedMemory& pinned) {
        std::optional<sp::LayerSchedule> ready =
            prebuilt_->take(reuse.slot, sp::schedule_key(reuse, problem), /*with_indices=*/false);
        if (ready) prebuilt_->keep_spare(std::exchange(sched.host, std::move(*ready)));
        build_device_schedule(sched, problem, mask, partition, world_.rank(), world_.size(),
                              options_, kernels, pinned, /*host_prebuilt=*/ready.has_value());
      });
}

}  // namespace dbsp
