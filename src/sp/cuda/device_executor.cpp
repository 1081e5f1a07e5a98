// SpExecutor::run_device_bf16: the layer's three phases on the GPU over NCCL. The host builds the
// routing, copy descriptors and per-step masks, uploads them in one copy, and enqueues the whole
// layer without waiting: the all-to-alls run on the world communicator's stream, the ring on the
// ring communicator's stream, attention and merges on a compute stream, ordered by events (the
// transfer of ring step t + 1 overlaps the compute of step t). The host waits once, at the end,
// against the timeout.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>
#include <tuple>

#include "comm/nccl/nccl_check.hpp"
#include "comm/nccl/nccl_communicator.hpp"
#include "comm/poll.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "dbsp/sp_attention.hpp"
#include "sp/cuda/device_copy.hpp"
#include "sp/routing.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp {

using sp::Slab;
using sp::device::RowCopy;

namespace {

constexpr int64_t kBf16Bytes = 2;

// Grow-only device allocation.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  ~DeviceMemory() {
    if (data_) cudaFree(data_);
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  char* ensure(int64_t bytes) {
    if (bytes > bytes_) {
      if (data_) DBSP_CUDA_RT_CHECK(cudaFree(data_));
      data_ = nullptr;
      bytes_ = 0;
      DBSP_CUDA_RT_CHECK(cudaMalloc(&data_, static_cast<size_t>(bytes)));
      bytes_ = bytes;
    }
    return static_cast<char*>(data_);
  }
  char* get() const { return static_cast<char*>(data_); }

 private:
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

// Grow-only pinned host allocation (asynchronous uploads).
class PinnedMemory {
 public:
  PinnedMemory() = default;
  ~PinnedMemory() {
    if (data_) cudaFreeHost(data_);
  }
  PinnedMemory(const PinnedMemory&) = delete;
  PinnedMemory& operator=(const PinnedMemory&) = delete;
  char* ensure(int64_t bytes) {
    if (bytes > bytes_) {
      if (data_) DBSP_CUDA_RT_CHECK(cudaFreeHost(data_));
      data_ = nullptr;
      bytes_ = 0;
      DBSP_CUDA_RT_CHECK(cudaHostAlloc(&data_, static_cast<size_t>(bytes), cudaHostAllocDefault));
      bytes_ = bytes;
    }
    return static_cast<char*>(data_);
  }

 private:
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

class Event {
 public:
  Event() { DBSP_CUDA_RT_CHECK(cudaEventCreate(&event_)); }
  ~Event() {
    if (event_) cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }
  void record(cudaStream_t stream) { DBSP_CUDA_RT_CHECK(cudaEventRecord(event_, stream)); }
  bool done() const { return cudaEventQuery(event_) == cudaSuccess; }

 private:
  cudaEvent_t event_ = nullptr;
};

float elapsed_ms(const Event& from, const Event& to) {
  float ms = 0;
  return cudaEventElapsedTime(&ms, from.get(), to.get()) == cudaSuccess ? ms : 0.0f;
}

// Everything the layer uploads, laid out in one host buffer; sections are 16-byte aligned.
class UploadTable {
 public:
  template <class T>
  int64_t add(std::span<const T> items) {
    const int64_t offset = (static_cast<int64_t>(bytes_.size()) + 15) / 16 * 16;
    bytes_.resize(static_cast<size_t>(offset) + items.size_bytes());
    if (!items.empty()) std::memcpy(bytes_.data() + offset, items.data(), items.size_bytes());
    return offset;
  }
  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }
  const char* data() const { return bytes_.data(); }

 private:
  std::vector<char> bytes_;
};

// Descriptors that pack slabs of one tensor into a staging buffer (or unpack from it).
struct CopyList {
  std::vector<RowCopy> copies;
  int64_t max_rows = 0;
  int64_t table_offset = 0;  // where the list sits in the uploaded table

  void add(const char* tensor, int64_t heads, int64_t head_dim, std::span<const Slab> slabs,
           char* staging, int64_t& staging_offset, bool pack) {
    const int64_t row_bytes = head_dim * kBf16Bytes;
    for (const Slab& s : slabs) {
      const auto tensor_at =
          reinterpret_cast<uint64_t>(tensor + (s.row * heads + s.head) * row_bytes);
      const auto staging_at = reinterpret_cast<uint64_t>(staging + staging_offset);
      RowCopy copy;
      copy.src = pack ? tensor_at : staging_at;
      copy.dst = pack ? staging_at : tensor_at;
      copy.src_stride = pack ? heads * row_bytes : row_bytes;
      copy.dst_stride = pack ? row_bytes : heads * row_bytes;
      copy.rows = s.rows;
      copies.push_back(copy);
      max_rows = std::max<int64_t>(max_rows, s.rows);
      staging_offset += s.rows * row_bytes;
    }
  }
  void launch(const char* table, int64_t row_bytes, cudaStream_t stream) const {
    sp::device::copy_rows(reinterpret_cast<const RowCopy*>(table + table_offset),
                          static_cast<int64_t>(copies.size()), row_bytes, max_rows, stream);
  }
};

// One side of a slab exchange: per peer, a byte range of the staging buffer.
struct PeerRange {
  int peer;
  int64_t offset;
  int64_t bytes;
};

struct DeviceStep {
  bool compute = false;
  int64_t kept = 0;
  BlockCsr csr;
  int64_t count_offset = 0, row_offset_offset = 0, index_offset = 0, q_start_offset = 0,
          k_start_offset = 0;
  cuda::SparseAttention* kernel = nullptr;  // created before any transfer is queued
  CopyList pack, unpack;                    // ring transfer that brings this step's K/V (step > 0)
  std::vector<PeerRange> sends, recvs;
};

}  // namespace

struct SpExecutor::DeviceState {
  int device = 0;
  cudaStream_t compute = nullptr;
  DeviceMemory q, k, v, step_k[2], step_v[2], out_local, accumulator, lse, part, part_lse;
  DeviceMemory all_to_all_send, all_to_all_recv, ring_send, ring_recv, table;
  PinnedMemory pinned_table;
  Event start, inputs_done, ring_done, finished, table_uploaded;
  std::vector<std::unique_ptr<Event>> ring_arrived, compute_begin, compute_end;
  std::vector<std::pair<std::tuple<int64_t, int64_t, int, int, int, double>,
                        std::unique_ptr<cuda::SparseAttention>>>
      kernels;

  explicit DeviceState(int dev) : device(dev) {
    DBSP_CUDA_RT_CHECK(cudaSetDevice(device));
    DBSP_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  }
  ~DeviceState() {
    cudaSetDevice(device);
    kernels.clear();
    if (compute) cudaStreamDestroy(compute);
  }

  void ensure_events(int steps) {
    while (static_cast<int>(ring_arrived.size()) < steps) {
      ring_arrived.push_back(std::make_unique<Event>());
      compute_begin.push_back(std::make_unique<Event>());
      compute_end.push_back(std::make_unique<Event>());
    }
  }

  // One kernel object per local shape, kept across layers (its workspace is allocated once).
  cuda::SparseAttention& kernel(const cuda::AttentionShape& shape, int block_q) {
    const auto key = std::make_tuple(shape.seq_q, shape.seq_k, shape.heads, shape.head_dim, block_q,
                                     shape.scale);
    for (auto& [known, attention] : kernels) {
      if (known == key) return *attention;
    }
    kernels.emplace_back(key, std::make_unique<cuda::SparseAttention>(shape, block_q));
    return *kernels.back().second;
  }
};

SpTelemetry SpExecutor::run_device_bf16(const SpProblem& problem, const BlockMask& mask,
                                        const Partition& partition, const void* q, const void* k,
                                        const void* v, void* out) {
  sp::Stopwatch total_clock, clock;
  SpTelemetry telemetry;
  telemetry.grid = partition.grid;
  auto* world = dynamic_cast<comm::NcclCommunicator*>(&world_);
  require(world != nullptr, "SpExecutor::run_device_bf16 needs an NCCL communicator; got ",
          world_.backend());
  sp::check_layer(world_.size(), problem, mask, partition);
  {
    cuda::AttentionShape probe_shape{1, 64, 64, 1, problem.head_dim, cuda::DType::bf16, 0.0};
    cuda::DeviceMask probe_mask;
    probe_mask.block_q = problem.geometry.block_q;
    probe_mask.block_k = problem.geometry.block_k;
    probe_mask.q_blocks = 1;
    static const int32_t count = 0;
    static const int64_t offset = 0;
    static const int32_t index = 0;
    probe_mask.kv_count = &count;
    probe_mask.block_row_offset = &offset;
    probe_mask.kv_index = &index;
    const std::string reason = cuda::unsupported_reason(probe_shape, probe_mask);
    require(reason.empty(), "device path: the attention kernels do not support ", reason);
  }
  GridCommunicators& comms = grid_communicators(partition.grid);
  auto* ring = dynamic_cast<comm::NcclCommunicator*>(comms.ring.get());
  require(ring != nullptr, "device path: the ring sub-communicator is not NCCL");

  if (!device_) {
    device_ = std::unique_ptr<DeviceState, void (*)(DeviceState*)>(
        new DeviceState(world->device()), [](DeviceState* state) { delete state; });
  }
  DeviceState& ds = *device_;
  DBSP_CUDA_RT_CHECK(cudaSetDevice(ds.device));

  const BlockLayout q_layout = problem.q_layout();
  const BlockLayout k_layout = problem.k_layout();
  const sp::LayerRouting route =
      sp::build_routing(mask, partition, q_layout, k_layout, world_.rank(), options_.mask_aware);
  const int ranks = world_.size();
  const int R = partition.grid.ring;
  const int64_t D = problem.head_dim;
  const int64_t H = problem.heads;
  const int64_t Hg = static_cast<int64_t>(route.heads.size());
  const int64_t tq = route.q_local.tokens();
  const int64_t tk = route.k_local.tokens();
  const int64_t row_bytes = D * kBf16Bytes;
  ds.ensure_events(R);

  // Buffers first: the copy descriptors hold their addresses.
  int64_t step_tokens = 0;
  for (int t = 1; t < R; ++t)
    step_tokens = std::max(step_tokens, route.steps[t].key_layout.tokens());
  char* q_local = ds.q.ensure(std::max<int64_t>(1, tq * Hg * row_bytes));
  char* k_local = ds.k.ensure(std::max<int64_t>(1, tk * Hg * row_bytes));
  char* v_local = ds.v.ensure(std::max<int64_t>(1, tk * Hg * row_bytes));
  char *step_k[2], *step_v[2];
  for (int b = 0; b < 2; ++b) {
    step_k[b] = ds.step_k[b].ensure(std::max<int64_t>(1, step_tokens * Hg * row_bytes));
    step_v[b] = ds.step_v[b].ensure(std::max<int64_t>(1, step_tokens * Hg * row_bytes));
  }
  char* out_local = ds.out_local.ensure(std::max<int64_t>(1, tq * Hg * row_bytes));
  auto* lse = reinterpret_cast<float*>(ds.lse.ensure(std::max<int64_t>(1, tq * Hg * 4)));

  // (a) and (c): descriptors and per-peer byte ranges of the all-to-alls.
  CopyList in_pack, in_unpack, out_pack, out_unpack;
  std::vector<PeerRange> in_sends, in_recvs, out_sends, out_recvs;
  int64_t in_send_bytes = 0, in_recv_bytes = 0, out_send_bytes = 0, out_recv_bytes = 0;
  for (int p = 0; p < ranks; ++p) {
    in_send_bytes +=
        (sp::slab_rows(route.send_q[p]) + 2 * sp::slab_rows(route.send_kv[p])) * row_bytes;
    in_recv_bytes +=
        (sp::slab_rows(route.recv_q[p]) + 2 * sp::slab_rows(route.recv_kv[p])) * row_bytes;
    out_send_bytes += sp::slab_rows(route.recv_q[p]) * row_bytes;
    out_recv_bytes += sp::slab_rows(route.send_q[p]) * row_bytes;
  }
  char* a2a_send = ds.all_to_all_send.ensure(std::max<int64_t>({1, in_send_bytes, out_send_bytes}));
  char* a2a_recv = ds.all_to_all_recv.ensure(std::max<int64_t>({1, in_recv_bytes, out_recv_bytes}));
  {
    int64_t send_at = 0, recv_at = 0, out_send_at = 0, out_recv_at = 0;
    const auto* q_in = static_cast<const char*>(q);
    const auto* k_in = static_cast<const char*>(k);
    const auto* v_in = static_cast<const char*>(v);
    for (int p = 0; p < ranks; ++p) {
      const int64_t send_begin = send_at, recv_begin = recv_at;
      in_pack.add(q_in, H, D, route.send_q[p], a2a_send, send_at, true);
      in_pack.add(k_in, H, D, route.send_kv[p], a2a_send, send_at, true);
      in_pack.add(v_in, H, D, route.send_kv[p], a2a_send, send_at, true);
      in_unpack.add(q_local, Hg, D, route.recv_q[p], a2a_recv, recv_at, false);
      in_unpack.add(k_local, Hg, D, route.recv_kv[p], a2a_recv, recv_at, false);
      in_unpack.add(v_local, Hg, D, route.recv_kv[p], a2a_recv, recv_at, false);
      if (send_at > send_begin) in_sends.push_back({p, send_begin, send_at - send_begin});
      if (recv_at > recv_begin) in_recvs.push_back({p, recv_begin, recv_at - recv_begin});
      // O travels the Q slabs backwards.
      const int64_t out_send_begin = out_send_at, out_recv_begin = out_recv_at;
      out_pack.add(out_local, Hg, D, route.recv_q[p], a2a_send, out_send_at, true);
      out_unpack.add(static_cast<char*>(out), H, D, route.send_q[p], a2a_recv, out_recv_at, false);
      if (out_send_at > out_send_begin) {
        out_sends.push_back({p, out_send_begin, out_send_at - out_send_begin});
      }
      if (out_recv_at > out_recv_begin) {
        out_recvs.push_back({p, out_recv_begin, out_recv_at - out_recv_begin});
      }
    }
  }

  // (b) Ring steps: local masks and transfer descriptors.
  std::vector<DeviceStep> steps(static_cast<size_t>(R));
  int64_t ring_send_bytes = 0, ring_recv_bytes = 0;
  for (int t = 1; t < R; ++t) {
    ring_send_bytes = std::max(ring_send_bytes, 2 * sp::slab_rows(route.steps[t].send) * row_bytes);
    ring_recv_bytes = std::max(ring_recv_bytes, 2 * sp::slab_rows(route.steps[t].recv) * row_bytes);
  }
  char* ring_send = ds.ring_send.ensure(std::max<int64_t>(1, ring_send_bytes));
  char* ring_recv = ds.ring_recv.ensure(std::max<int64_t>(1, ring_recv_bytes));
  int computing_steps = 0;
  for (int t = 0; t < R; ++t) {
    const sp::RingStep& rs = route.steps[t];
    DeviceStep& step = steps[t];
    if (!route.heads.empty() && !route.q_blocks.empty() && !rs.key_blocks.empty()) {
      step.csr = sp::local_block_csr(mask, route.heads, route.q_blocks, rs.key_blocks);
      step.kept = static_cast<int64_t>(step.csr.kv_index.size());
      if (step.kept > 0) {
        step.compute = true;
        ++computing_steps;
        // Kernel objects allocate their workspace when first built: do it before the layer's
        // transfers are queued, so that no allocation lands between them.
        const cuda::AttentionShape shape{1,
                                         tq,
                                         rs.key_layout.tokens(),
                                         static_cast<int>(Hg),
                                         static_cast<int>(D),
                                         cuda::DType::bf16,
                                         problem.scale};
        step.kernel = &ds.kernel(shape, problem.geometry.block_q);
      }
    }
    if (t == 0) continue;
    int64_t send_at = 0, recv_at = 0;
    step.pack.add(k_local, Hg, D, rs.send, ring_send, send_at, true);
    step.pack.add(v_local, Hg, D, rs.send, ring_send, send_at, true);
    step.unpack.add(step_k[t % 2], Hg, D, rs.recv, ring_recv, recv_at, false);
    step.unpack.add(step_v[t % 2], Hg, D, rs.recv, ring_recv, recv_at, false);
    if (send_at > 0) step.sends.push_back({rs.dest, 0, send_at});
    if (recv_at > 0) step.recvs.push_back({rs.origin, 0, recv_at});
  }
  float* accumulator = nullptr;
  char* part = nullptr;
  float* part_lse = nullptr;
  if (computing_steps >= 2) {
    accumulator = reinterpret_cast<float*>(ds.accumulator.ensure(tq * Hg * D * 4));
    part = ds.part.ensure(tq * Hg * row_bytes);
    part_lse = reinterpret_cast<float*>(ds.part_lse.ensure(tq * Hg * 4));
  }

  // One upload for every descriptor and mask of the layer.
  UploadTable table;
  for (CopyList* list : {&in_pack, &in_unpack, &out_pack, &out_unpack}) {
    list->table_offset = table.add(std::span<const RowCopy>(list->copies));
  }
  for (int t = 0; t < R; ++t) {
    DeviceStep& step = steps[t];
    step.pack.table_offset = table.add(std::span<const RowCopy>(step.pack.copies));
    step.unpack.table_offset = table.add(std::span<const RowCopy>(step.unpack.copies));
    if (!step.compute) continue;
    step.count_offset = table.add(std::span<const int32_t>(step.csr.kv_count));
    step.row_offset_offset = table.add(std::span<const int64_t>(step.csr.row_offset));
    step.index_offset = table.add(std::span<const int32_t>(step.csr.kv_index));
    step.q_start_offset = table.add(std::span<const int64_t>(route.q_local.start));
    step.k_start_offset = table.add(std::span<const int64_t>(route.steps[t].key_layout.start));
  }
  char* device_table = ds.table.ensure(std::max<int64_t>(16, table.size()));
  char* pinned = ds.pinned_table.ensure(std::max<int64_t>(16, table.size()));
  std::memcpy(pinned, table.data(), static_cast<size_t>(table.size()));
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

  // (a) On the world stream: upload, pack, exchange, unpack.
  ds.start.record(world_stream);
  DBSP_CUDA_RT_CHECK(cudaMemcpyAsync(device_table, pinned, static_cast<size_t>(table.size()),
                                     cudaMemcpyHostToDevice, world_stream));
  ds.table_uploaded.record(world_stream);
  if (options_.mask_aware && tq * Hg > 0) {
    DBSP_CUDA_RT_CHECK(cudaMemsetAsync(q_local, 0, tq * Hg * row_bytes, world_stream));
  }
  in_pack.launch(device_table, row_bytes, world_stream);
  in_flight.push_back(
      post(*world, a2a_send, in_sends, a2a_recv, in_recvs, "sp all_to_all_v (Q, K, V in)"));
  in_unpack.launch(device_table, row_bytes, world_stream);
  ds.inputs_done.record(world_stream);

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
      const DeviceStep& next = steps[t + 1];
      // The unpack overwrites the buffer that step t - 1 computed on.
      if (t >= 1) wait(ring_stream, *ds.compute_end[t - 1]);
      next.pack.launch(device_table, row_bytes, ring_stream);
      in_flight.push_back(
          post(*ring, ring_send, next.sends, ring_recv, next.recvs, "sp ring step (K, V)"));
      next.unpack.launch(device_table, row_bytes, ring_stream);
      ds.ring_arrived[t + 1]->record(ring_stream);
    }
    if (t > 0) wait(compute, *ds.ring_arrived[t]);
    ds.compute_begin[t]->record(compute);
    const DeviceStep& step = steps[t];
    if (step.compute) {
      cuda::DeviceMask dm;
      dm.block_q = problem.geometry.block_q;
      dm.block_k = problem.geometry.block_k;
      dm.q_blocks = static_cast<int>(route.q_blocks.size());
      dm.kv_count = reinterpret_cast<const int32_t*>(device_table + step.count_offset);
      dm.block_row_offset = reinterpret_cast<const int64_t*>(device_table + step.row_offset_offset);
      dm.kv_index = reinterpret_cast<const int32_t*>(device_table + step.index_offset);
      dm.q_block_start = reinterpret_cast<const int64_t*>(device_table + step.q_start_offset);
      dm.k_block_start = reinterpret_cast<const int64_t*>(device_table + step.k_start_offset);
      if (t == 0) wait(compute, ds.table_uploaded);
      const void* keys = t == 0 ? k_local : step_k[t % 2];
      const void* values = t == 0 ? v_local : step_v[t % 2];
      cuda::SparseAttention& attention = *step.kernel;
      attention.plan(dm, compute);
      if (computing_steps == 1) {
        attention.run(dm, q_local, keys, values, out_local, lse, compute);
      } else {
        attention.run(dm, q_local, keys, values, part, part_lse, compute);
        cuda::merge_partial(1, tq, static_cast<int>(Hg), static_cast<int>(D), cuda::DType::fp32,
                            accumulator, lse, cuda::DType::bf16, part, part_lse, compute);
      }
      ++telemetry.ring_steps_computed;
      telemetry.kept_blocks += step.kept;
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

  // (c) On the world stream: O back to the input distribution.
  wait(world_stream, ds.ring_done);
  const int64_t out_bytes = route.q_input.tokens() * H * row_bytes;
  if (out_bytes > 0) DBSP_CUDA_RT_CHECK(cudaMemsetAsync(out, 0, out_bytes, world_stream));
  out_pack.launch(device_table, row_bytes, world_stream);
  in_flight.push_back(
      post(*world, a2a_send, out_sends, a2a_recv, out_recvs, "sp all_to_all_v (O out)"));
  out_unpack.launch(device_table, row_bytes, world_stream);
  ds.finished.record(world_stream);

  // The one host wait of the layer, bounded by the timeout; a stuck phase is named.
  bool comm_failed = false;
  const bool done = comm::poll_until(world_.timeout_seconds(), [&] {
    if (ds.finished.done()) return true;
    for (comm::NcclCommunicator* c : {world, ring}) {
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(c->handle(), &state) != ncclSuccess ||
          (state != ncclSuccess && state != ncclInProgress)) {
        comm_failed = true;
      }
    }
    return comm_failed;
  });
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
    world->abort(what.str());
    ring->abort(what.str());
    fail(what.str());
  }
  in_flight.clear();

  double compute_ms = 0;
  for (int t = 0; t < R; ++t) {
    if (steps[t].compute) compute_ms += elapsed_ms(*ds.compute_begin[t], *ds.compute_end[t]);
  }
  const double span_ms = elapsed_ms(ds.start, ds.finished);
  const double in_ms = elapsed_ms(ds.start, ds.inputs_done);
  const double out_ms = elapsed_ms(ds.ring_done, ds.finished);
  telemetry.compute_ms = compute_ms;
  telemetry.comm_ms = std::max(0.0, span_ms - compute_ms);
  telemetry.wait_ms = std::max(0.0, telemetry.comm_ms - in_ms - out_ms);
  clock.lap_ms();
  if (options_.measure_idle) {
    world_.barrier("sp closing barrier");
    telemetry.idle_ms = clock.lap_ms();
  }
  const int64_t slab_bytes = row_bytes;
  telemetry.bytes_sent = route.rows_sent * slab_bytes;
  telemetry.bytes_received = route.rows_received * slab_bytes;
  telemetry.bytes_saved = (route.baseline_rows_sent - route.rows_sent) * slab_bytes;
  telemetry.total_ms = total_clock.elapsed_ms();
  return telemetry;
}

}  // namespace dbsp
