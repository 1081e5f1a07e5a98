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
#include "sp/routing.hpp"
#include "sp/schedule.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp {

using sp::Slab;
using sp::device::RowCopy;

namespace {

constexpr int64_t kBf16Bytes = 2;

// Sizes change a little with every mask (mask-aware routing), so buffers grow with headroom:
// reallocating costs far more than the memory kept.
inline int64_t with_headroom(int64_t bytes) { return bytes + bytes / 4; }

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
      DBSP_CUDA_RT_CHECK(cudaMalloc(&data_, static_cast<size_t>(with_headroom(bytes))));
      bytes_ = with_headroom(bytes);
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
      DBSP_CUDA_RT_CHECK(
          cudaHostAlloc(&data_, static_cast<size_t>(with_headroom(bytes)), cudaHostAllocDefault));
      bytes_ = with_headroom(bytes);
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

// Everything the layer uploads, laid out in one host buffer; sections are 16-byte aligned. The
// buffer is the caller's and is reused across layers: a fresh megabyte-sized allocation each
// layer would be page-faulted in again every time.
class UploadTable {
 public:
  explicit UploadTable(std::vector<char>& bytes) : bytes_(bytes) { bytes_.clear(); }
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
  std::vector<char>& bytes_;
};

// The buffers the copy tables refer to (indices into CopyBases).
enum Base : int32_t {
  kUserQ,
  kUserK,
  kUserV,
  kUserOut,
  kQLocal,
  kKLocal,
  kVLocal,
  kOutLocal,
  kStepK0,
  kStepK1,
  kStepV0,
  kStepV1,
  kAllToAllSend,
  kAllToAllRecv,
  kRingSend,
  kRingRecv,
};
static_assert(kRingRecv < sp::device::kMaxCopyBases);

// Descriptors that pack slabs of tensors into a staging buffer (or unpack from it).
struct CopyList {
  std::vector<RowCopy> copies;
  int64_t max_rows = 0;
  int64_t table_offset = 0;  // where the list sits in the uploaded table

  // tensor_offset: bytes from the tensor's base to the (sub)tensor the slabs index.
  void add(Base tensor, int64_t heads, int64_t head_dim, std::span<const Slab> slabs, Base staging,
           int64_t& staging_offset, bool pack, int64_t tensor_offset = 0) {
    const int64_t row_bytes = head_dim * kBf16Bytes;
    for (const Slab& s : slabs) {
      const int64_t tensor_at = tensor_offset + (s.row * heads + s.head) * row_bytes;
      RowCopy copy;
      copy.src_base = pack ? tensor : staging;
      copy.dst_base = pack ? staging : tensor;
      copy.src_offset = pack ? tensor_at : staging_offset;
      copy.dst_offset = pack ? staging_offset : tensor_at;
      copy.src_stride = pack ? heads * row_bytes : row_bytes;
      copy.dst_stride = pack ? row_bytes : heads * row_bytes;
      copy.rows = s.rows;
      copies.push_back(copy);
      max_rows = std::max<int64_t>(max_rows, s.rows);
      staging_offset += s.rows * row_bytes;
    }
  }
  // Rows that stay on this rank go straight from one tensor to the other: both slab lists
  // enumerate the same rows in the same order (sp/routing.hpp), but may merge them into slabs
  // differently, so the lists are walked together and cut where either slab ends.
  void add_direct(Base from, int64_t from_heads, std::span<const Slab> from_slabs, Base to,
                  int64_t to_heads, std::span<const Slab> to_slabs, int64_t head_dim,
                  int64_t from_offset = 0, int64_t to_offset = 0) {
    const int64_t row_bytes = head_dim * kBf16Bytes;
    size_t a = 0, b = 0;
    int64_t a_done = 0, b_done = 0;
    while (a < from_slabs.size() && b < to_slabs.size()) {
      const Slab& src = from_slabs[a];
      const Slab& dst = to_slabs[b];
      const int64_t rows = std::min<int64_t>(src.rows - a_done, dst.rows - b_done);
      RowCopy copy;
      copy.src_base = from;
      copy.dst_base = to;
      copy.src_offset = from_offset + ((src.row + a_done) * from_heads + src.head) * row_bytes;
      copy.dst_offset = to_offset + ((dst.row + b_done) * to_heads + dst.head) * row_bytes;
      copy.src_stride = from_heads * row_bytes;
      copy.dst_stride = to_heads * row_bytes;
      copy.rows = rows;
      copies.push_back(copy);
      max_rows = std::max(max_rows, rows);
      a_done += rows;
      b_done += rows;
      if (a_done == src.rows) ++a, a_done = 0;
      if (b_done == dst.rows) ++b, b_done = 0;
    }
    require(a == from_slabs.size() && b == to_slabs.size(),
            "device schedule: the local slab lists hold different row counts");
  }
  void launch(const char* table, const sp::device::CopyBases& bases, int64_t row_bytes,
              cudaStream_t stream) const {
    sp::device::copy_rows(reinterpret_cast<const RowCopy*>(table + table_offset),
                          static_cast<int64_t>(copies.size()), bases, row_bytes, max_rows, stream);
  }
};

// One side of a slab exchange: per peer, a byte range of the staging buffer.
struct PeerRange {
  int peer;
  int64_t offset;
  int64_t bytes;
};

struct DeviceStep {
  int64_t count_offset = 0, row_offset_offset = 0, q_start_offset = 0, k_start_offset = 0;
  // The step's key-block lists live in DeviceSchedule::indices from index_at (elements), written
  // on the device from the mask bits and this step's wanted key blocks (table offsets).
  int64_t index_at = 0, wanted_offset = 0, wanted_before_offset = 0;
  cuda::SparseAttention* kernel = nullptr;  // created before any transfer is queued
  CopyList pack, unpack;                    // ring transfer that brings this step's K/V (step > 0)
  std::vector<PeerRange> sends, recvs;
};

// The all-to-all phases of one head chunk: heads [first_head, first_head + heads) of this rank's
// group, held as their own [tokens, heads, head_dim] tensors inside the local buffers. One chunk
// holds every head unless the layer is pipelined by head chunks (SpOptions::head_chunks).
struct ChunkPhases {
  int first_head = 0, heads = 0;
  CopyList in_pack, in_unpack, out_pack, out_unpack;
  CopyList in_local, out_local;  // rows this rank keeps: copied directly, never staged or sent
  std::vector<PeerRange> in_sends, in_recvs, out_sends, out_recvs;
  int64_t kept = 0;                         // kept blocks of the chunk (pipelined layers)
  cuda::SparseAttention* kernel = nullptr;  // the chunk's kernel (pipelined layers)
};

// Everything a layer needs on the device that depends only on (mask, partition, problem): the
// host schedule, copy descriptors, per-peer ranges, buffer sizes and the uploaded table.
struct DeviceScheduleData {
  sp::LayerSchedule host;
  std::vector<DeviceStep> steps;
  std::vector<ChunkPhases> chunks;
  int64_t in_send_bytes = 0, in_recv_bytes = 0, out_send_bytes = 0, out_recv_bytes = 0;
  int64_t ring_send_bytes = 0, ring_recv_bytes = 0, step_tokens = 0;
  int64_t table_bytes = 0;
  int64_t row_bits_offset = 0;  // the local mask rows (heads x query blocks x words) in the table
  bool uploaded = false;
};

struct DeviceSchedule : DeviceScheduleData {
  DeviceMemory table;    // the uploaded table (grow-only, kept when the schedule is rebuilt)
  DeviceMemory indices;  // every step's kv_index (likewise)

  void recycle() { static_cast<DeviceScheduleData&>(*this) = DeviceScheduleData{}; }
};

}  // namespace

struct SpExecutor::DeviceState {
  int device = 0;
  cudaStream_t compute = nullptr;
  DeviceMemory q, k, v, step_k[2], step_v[2], out_local, accumulator, lse, part, part_lse;
  DeviceMemory all_to_all_send, all_to_all_recv, ring_send, ring_recv;
  PinnedMemory pinned_table;
  std::vector<char> host_table;  // UploadTable's buffer, kept across layers
  Event start, inputs_done, ring_done, finished;
  sp::ScheduleSlots<DeviceSchedule> schedules;
  // Per ring step (or per head chunk): its K/V arrived; its compute began and ended. Per head
  // chunk: its inputs arrived.
  std::vector<std::unique_ptr<Event>> ring_arrived, compute_begin, compute_end, chunk_arrived;
  std::vector<std::pair<std::tuple<int64_t, int64_t, int, int, int, int, double>,
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
      chunk_arrived.push_back(std::make_unique<Event>());
      compute_begin.push_back(std::make_unique<Event>());
      compute_end.push_back(std::make_unique<Event>());
    }
  }

  // One kernel object per local shape, kept across layers (its workspace is allocated once).
  // q_blocks: the local layout's block count (its short block may sit anywhere).
  cuda::SparseAttention& kernel(const cuda::AttentionShape& shape, int block_q, int q_blocks) {
    const auto key = std::make_tuple(shape.seq_q, shape.seq_k, shape.heads, shape.head_dim, block_q,
                                     q_blocks, shape.scale);
    for (auto& [known, attention] : kernels) {
      if (known == key) return *attention;
    }
    kernels.emplace_back(key, std::make_unique<cuda::SparseAttention>(shape, block_q, q_blocks));
    return *kernels.back().second;
  }
};

SpTelemetry SpExecutor::run_device_bf16(const SpProblem& problem, const BlockMask& mask,
                                        const Partition& partition, const void* q, const void* k,
                                        const void* v, void* out, ScheduleReuse reuse) {
  sp::Stopwatch total_clock, clock;
  SpTelemetry telemetry;
  telemetry.grid = partition.grid;
  auto* world = dynamic_cast<comm::NcclCommunicator*>(&world_);
  require(world != nullptr, "SpExecutor::run_device_bf16 needs an NCCL communicator; got ",
          world_.backend());
  sp::check_layer(world_.size(), problem, mask, partition);
  {
    const cuda::AttentionShape probe_shape{1, 64, 64, 1, problem.head_dim, cuda::DType::bf16, 0.0};
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
  if (!reused) {
    sched.host = sp::build_schedule(mask, partition, problem, world_.rank(), options_.mask_aware,
                                    /*host_indices=*/false);
    const sp::LayerRouting& route = sched.host.route;
    const int64_t Hg = static_cast<int64_t>(route.heads.size());
    const int64_t tq = route.q_local.tokens();
    const int me = world_.rank();
    // Head chunks (pure Ulysses grids only: ring steps address the whole local layout). Every
    // rank cuts every group the same way, so sender and receiver agree on each slab's chunk.
    const int chunks = R == 1 ? std::max(1, options_.head_chunks) : 1;
    std::vector<int> chunk_of(static_cast<size_t>(H), 0);  // by global head, in its group
    if (chunks > 1) {
      for (int g = 0; g < partition.grid.ulysses; ++g) {
        const std::vector<int> heads = partition.heads_of(g);
        const int n = static_cast<int>(heads.size());
        for (int c = 0; c < chunks; ++c) {
          for (int l = shard_begin(c, n, chunks); l < shard_begin(c + 1, n, chunks); ++l) {
            chunk_of[heads[l]] = c;
          }
        }
      }
    }
    // The slabs of one chunk; local heads renumbered from the chunk's first head.
    auto global_in = [&](std::span<const Slab> slabs, int c) {
      std::vector<Slab> kept;
      for (const Slab& slab : slabs) {
        if (chunk_of[slab.head] == c) kept.push_back(slab);
      }
      return kept;
    };
    auto local_in = [&](std::span<const Slab> slabs, int c) {
      std::vector<Slab> kept;
      for (const Slab& slab : slabs) {
        if (chunk_of[route.heads[slab.head]] == c) {
          kept.push_back(slab);
          kept.back().head -= shard_begin(c, static_cast<int>(Hg), chunks);
        }
      }
      return kept;
    };
    const int64_t tk = route.k_local.tokens();
    sched.chunks.assign(static_cast<size_t>(chunks), ChunkPhases{});
    for (int c = 0; c < chunks; ++c) {
      ChunkPhases& chunk = sched.chunks[c];
      chunk.first_head = shard_begin(c, static_cast<int>(Hg), chunks);
      chunk.heads = shard_begin(c + 1, static_cast<int>(Hg), chunks) - chunk.first_head;
      const int64_t Hc = chunk.heads;
      // The chunk's tensors inside the local buffers: [tokens, Hc, D] from its first head on.
      const int64_t q_at = tq * chunk.first_head * row_bytes;
      const int64_t k_at = tk * chunk.first_head * row_bytes;
      {
        const std::vector<Slab> send_q = global_in(route.send_q[me], c);
        const std::vector<Slab> send_kv = global_in(route.send_kv[me], c);
        const std::vector<Slab> recv_q = local_in(route.recv_q[me], c);
        const std::vector<Slab> recv_kv = local_in(route.recv_kv[me], c);
        chunk.in_local.add_direct(kUserQ, H, send_q, kQLocal, Hc, recv_q, D, 0, q_at);
        chunk.in_local.add_direct(kUserK, H, send_kv, kKLocal, Hc, recv_kv, D, 0, k_at);
        chunk.in_local.add_direct(kUserV, H, send_kv, kVLocal, Hc, recv_kv, D, 0, k_at);
        chunk.out_local.add_direct(kOutLocal, Hc, recv_q, kUserOut, H, send_q, D, q_at, 0);
      }
      // Staging restarts at 0 for every chunk: the chunks' exchanges run one after another on
      // the world stream, so each reuses the buffers after the previous one is unpacked.
      int64_t send_at = 0, recv_at = 0, out_send_at = 0, out_recv_at = 0;
      for (int p = 0; p < ranks; ++p) {
        if (p == me) continue;
        const std::vector<Slab> send_q = global_in(route.send_q[p], c);
        const std::vector<Slab> send_kv = global_in(route.send_kv[p], c);
        const std::vector<Slab> recv_q = local_in(route.recv_q[p], c);
        const std::vector<Slab> recv_kv = local_in(route.recv_kv[p], c);
        const int64_t send_begin = send_at, recv_begin = recv_at;
        chunk.in_pack.add(kUserQ, H, D, send_q, kAllToAllSend, send_at, true);
        chunk.in_pack.add(kUserK, H, D, send_kv, kAllToAllSend, send_at, true);
        chunk.in_pack.add(kUserV, H, D, send_kv, kAllToAllSend, send_at, true);
        chunk.in_unpack.add(kQLocal, Hc, D, recv_q, kAllToAllRecv, recv_at, false, q_at);
        chunk.in_unpack.add(kKLocal, Hc, D, recv_kv, kAllToAllRecv, recv_at, false, k_at);
        chunk.in_unpack.add(kVLocal, Hc, D, recv_kv, kAllToAllRecv, recv_at, false, k_at);
        if (send_at > send_begin) chunk.in_sends.push_back({p, send_begin, send_at - send_begin});
        if (recv_at > recv_begin) chunk.in_recvs.push_back({p, recv_begin, recv_at - recv_begin});
        // O travels the Q slabs backwards.
        const int64_t out_send_begin = out_send_at, out_recv_begin = out_recv_at;
        chunk.out_pack.add(kOutLocal, Hc, D, recv_q, kAllToAllSend, out_send_at, true, q_at);
        chunk.out_unpack.add(kUserOut, H, D, send_q, kAllToAllRecv, out_recv_at, false);
        if (out_send_at > out_send_begin) {
          chunk.out_sends.push_back({p, out_send_begin, out_send_at - out_send_begin});
        }
        if (out_recv_at > out_recv_begin) {
          chunk.out_recvs.push_back({p, out_recv_begin, out_recv_at - out_recv_begin});
        }
      }
      sched.in_send_bytes = std::max(sched.in_send_bytes, send_at);
      sched.in_recv_bytes = std::max(sched.in_recv_bytes, recv_at);
      sched.out_send_bytes = std::max(sched.out_send_bytes, out_send_at);
      sched.out_recv_bytes = std::max(sched.out_recv_bytes, out_recv_at);
      if (chunks > 1 && sched.host.step_kept[0] > 0) {
        // The chunk's rows of the step mask are contiguous (head-major rows).
        const std::vector<int64_t>& offsets = sched.host.step_masks[0].row_offset;
        const size_t rows_per_head = route.q_blocks.size();
        chunk.kept = offsets[(chunk.first_head + chunk.heads) * rows_per_head] -
                     offsets[chunk.first_head * rows_per_head];
        if (chunk.kept > 0) {
          const cuda::AttentionShape shape{
              1, tq, tk, chunk.heads, static_cast<int>(D), cuda::DType::bf16, problem.scale};
          chunk.kernel =
              &ds.kernel(shape, problem.geometry.block_q, static_cast<int>(route.q_blocks.size()));
        }
      }
    }

    sched.steps.assign(static_cast<size_t>(R), DeviceStep{});
    for (int t = 0; t < R; ++t) {
      const sp::RingStep& rs = route.steps[t];
      DeviceStep& step = sched.steps[t];
      if (sched.host.step_kept[t] > 0) {
        const cuda::AttentionShape shape{1,
                                         tq,
                                         rs.key_layout.tokens(),
                                         static_cast<int>(Hg),
                                         static_cast<int>(D),
                                         cuda::DType::bf16,
                                         problem.scale};
        step.kernel =
            &ds.kernel(shape, problem.geometry.block_q, static_cast<int>(route.q_blocks.size()));
      }
      if (t == 0) continue;
      sched.step_tokens = std::max(sched.step_tokens, rs.key_layout.tokens());
      const Base step_k = t % 2 ? kStepK1 : kStepK0, step_v = t % 2 ? kStepV1 : kStepV0;
      int64_t ring_send_at = 0, ring_recv_at = 0;
      step.pack.add(kKLocal, Hg, D, rs.send, kRingSend, ring_send_at, true);
      step.pack.add(kVLocal, Hg, D, rs.send, kRingSend, ring_send_at, true);
      step.unpack.add(step_k, Hg, D, rs.recv, kRingRecv, ring_recv_at, false);
      step.unpack.add(step_v, Hg, D, rs.recv, kRingRecv, ring_recv_at, false);
      if (ring_send_at > 0) step.sends.push_back({rs.dest, 0, ring_send_at});
      if (ring_recv_at > 0) step.recvs.push_back({rs.origin, 0, ring_recv_at});
      sched.ring_send_bytes = std::max(sched.ring_send_bytes, ring_send_at);
      sched.ring_recv_bytes = std::max(sched.ring_recv_bytes, ring_recv_at);
    }

    UploadTable table(ds.host_table);
    for (ChunkPhases& chunk : sched.chunks) {
      for (CopyList* list : {&chunk.in_pack, &chunk.in_unpack, &chunk.out_pack, &chunk.out_unpack,
                             &chunk.in_local, &chunk.out_local}) {
        list->table_offset = table.add(std::span<const RowCopy>(list->copies));
      }
    }
    const int words = mask.words_per_row();
    if (sched.host.computing_steps > 0) {
      std::vector<uint64_t> row_bits;
      row_bits.reserve(route.heads.size() * route.q_blocks.size() * static_cast<size_t>(words));
      for (int h : route.heads) {
        for (int i : route.q_blocks) {
          const uint64_t* bits = mask.row_bits(h, i);
          row_bits.insert(row_bits.end(), bits, bits + words);
        }
      }
      sched.row_bits_offset = table.add(std::span<const uint64_t>(row_bits));
    }
    int64_t index_count = 0;
    for (int t = 0; t < R; ++t) {
      DeviceStep& step = sched.steps[t];
      step.pack.table_offset = table.add(std::span<const RowCopy>(step.pack.copies));
      step.unpack.table_offset = table.add(std::span<const RowCopy>(step.unpack.copies));
      if (sched.host.step_kept[t] == 0) continue;
      const BlockCsr& csr = sched.host.step_masks[t];
      step.count_offset = table.add(std::span<const int32_t>(csr.kv_count));
      step.row_offset_offset = table.add(std::span<const int64_t>(csr.row_offset));
      std::vector<uint64_t> wanted(static_cast<size_t>(words), 0);
      for (int j : route.steps[t].key_blocks) wanted[j >> 6] |= uint64_t{1} << (j & 63);
      std::vector<int32_t> wanted_before(static_cast<size_t>(words), 0);
      for (int w = 1; w < words; ++w) {
        wanted_before[w] = wanted_before[w - 1] + std::popcount(wanted[w - 1]);
      }
      step.wanted_offset = table.add(std::span<const uint64_t>(wanted));
      step.wanted_before_offset = table.add(std::span<const int32_t>(wanted_before));
      step.index_at = index_count;
      index_count += sched.host.step_kept[t];
      step.q_start_offset = table.add(std::span<const int64_t>(route.q_local.start));
      step.k_start_offset = table.add(std::span<const int64_t>(route.steps[t].key_layout.start));
    }
    sched.indices.ensure(std::max<int64_t>(1, index_count) * 4);
    sched.table_bytes = std::max<int64_t>(16, table.size());
    sched.table.ensure(sched.table_bytes);
    char* pinned = ds.pinned_table.ensure(sched.table_bytes);
    std::memcpy(pinned, table.data(), static_cast<size_t>(table.size()));
  }
  telemetry.schedule_reused = reused;
  ds.ensure_events(std::max<int>(R, static_cast<int>(sched.chunks.size())));
  const sp::LayerRouting& route = sched.host.route;
  const int64_t Hg = static_cast<int64_t>(route.heads.size());
  const int64_t tq = route.q_local.tokens();
  const int64_t tk = route.k_local.tokens();
  const int computing_steps = sched.host.computing_steps;

  // Buffers (grow-only) and the addresses the copy tables refer to.
  sp::device::CopyBases bases;
  auto& at = bases.address;
  auto address = [](const void* pointer) { return reinterpret_cast<uint64_t>(pointer); };
  at[kUserQ] = address(q);
  at[kUserK] = address(k);
  at[kUserV] = address(v);
  at[kUserOut] = address(out);
  char* q_local = ds.q.ensure(std::max<int64_t>(1, tq * Hg * row_bytes));
  char* k_local = ds.k.ensure(std::max<int64_t>(1, tk * Hg * row_bytes));
  char* v_local = ds.v.ensure(std::max<int64_t>(1, tk * Hg * row_bytes));
  char* out_local = ds.out_local.ensure(std::max<int64_t>(1, tq * Hg * row_bytes));
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

  // (a) On the world stream: upload (first use of a schedule), pack, exchange, unpack.
  ds.start.record(world_stream);
  if (!sched.uploaded) {
    DBSP_CUDA_RT_CHECK(cudaMemcpyAsync(sched.table.get(), ds.pinned_table.ensure(sched.table_bytes),
                                       static_cast<size_t>(sched.table_bytes),
                                       cudaMemcpyHostToDevice, world_stream));
    const int words = mask.words_per_row();
    for (int t = 0; t < R; ++t) {
      if (sched.host.step_kept[t] == 0) continue;
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
  if (options_.mask_aware && tq * Hg > 0) {
    DBSP_CUDA_RT_CHECK(cudaMemsetAsync(q_local, 0, tq * Hg * row_bytes, world_stream));
  }
  const int chunks = static_cast<int>(sched.chunks.size());
  const bool pipelined = chunks > 1;
  for (int c = 0; c < chunks; ++c) {
    const ChunkPhases& chunk = sched.chunks[c];
    chunk.in_local.launch(device_table, bases, row_bytes, world_stream);
    chunk.in_pack.launch(device_table, bases, row_bytes, world_stream);
    in_flight.push_back(post(*world, a2a_send, chunk.in_sends, a2a_recv, chunk.in_recvs,
                             "sp all_to_all_v (Q, K, V in)"));
    chunk.in_unpack.launch(device_table, bases, row_bytes, world_stream);
    ds.chunk_arrived[c]->record(world_stream);
  }
  ds.inputs_done.record(world_stream);

  if (pipelined) {
    // (b') Head chunks (R = 1): chunk c computes while chunk c + 1 arrives and chunk c - 1's O
    // leaves, all-to-alls on the world stream, attention on the compute stream.
    cuda::DeviceMask dm;
    const DeviceStep& step = sched.steps[0];
    const size_t rows_per_head = route.q_blocks.size();
    for (int c = 0; c < chunks; ++c) {
      const ChunkPhases& chunk = sched.chunks[c];
      wait(compute, *ds.chunk_arrived[c]);
      ds.compute_begin[c]->record(compute);
      const int64_t q_at = tq * chunk.first_head * row_bytes;
      const int64_t k_at = tk * chunk.first_head * row_bytes;
      if (chunk.kept > 0) {
        const size_t first_row = static_cast<size_t>(chunk.first_head) * rows_per_head;
        dm.block_q = problem.geometry.block_q;
        dm.block_k = problem.geometry.block_k;
        dm.q_blocks = static_cast<int>(rows_per_head);
        dm.kv_count =
            reinterpret_cast<const int32_t*>(device_table + step.count_offset) + first_row;
        dm.block_row_offset =
            reinterpret_cast<const int64_t*>(device_table + step.row_offset_offset) + first_row;
        dm.kv_index = reinterpret_cast<const int32_t*>(sched.indices.get()) + step.index_at;
        dm.q_block_start = reinterpret_cast<const int64_t*>(device_table + step.q_start_offset);
        dm.k_block_start = reinterpret_cast<const int64_t*>(device_table + step.k_start_offset);
        cuda::SparseAttention& attention = *chunk.kernel;
        attention.reserve_sms(0);
        attention.plan(dm, compute);
        attention.run(dm, q_local + q_at, k_local + k_at, v_local + k_at, out_local + q_at,
                      lse + tq * chunk.first_head, compute);
        telemetry.kept_blocks += chunk.kept;
      } else if (tq * chunk.heads > 0) {
        DBSP_CUDA_RT_CHECK(
            cudaMemsetAsync(out_local + q_at, 0, tq * chunk.heads * row_bytes, compute));
      }
      ds.compute_end[c]->record(compute);
    }
    if (computing_steps > 0) {
      ++telemetry.ring_steps_computed;
    } else {
      ++telemetry.ring_steps_skipped;
    }
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
        next.pack.launch(device_table, bases, row_bytes, ring_stream);
        in_flight.push_back(
            post(*ring, ring_send, next.sends, ring_recv, next.recvs, "sp ring step (K, V)"));
        next.unpack.launch(device_table, bases, row_bytes, ring_stream);
        ds.ring_arrived[t + 1]->record(ring_stream);
      }
      if (t > 0) wait(compute, *ds.ring_arrived[t]);
      ds.compute_begin[t]->record(compute);
      const DeviceStep& step = sched.steps[t];
      if (sched.host.step_kept[t] > 0) {
        cuda::DeviceMask dm;
        dm.block_q = problem.geometry.block_q;
        dm.block_k = problem.geometry.block_k;
        dm.q_blocks = static_cast<int>(route.q_blocks.size());
        dm.kv_count = reinterpret_cast<const int32_t*>(device_table + step.count_offset);
        dm.block_row_offset =
            reinterpret_cast<const int64_t*>(device_table + step.row_offset_offset);
        dm.kv_index = reinterpret_cast<const int32_t*>(sched.indices.get()) + step.index_at;
        dm.q_block_start = reinterpret_cast<const int64_t*>(device_table + step.q_start_offset);
        dm.k_block_start = reinterpret_cast<const int64_t*>(device_table + step.k_start_offset);
        const void* keys = t == 0 ? k_local : step_k[t % 2];
        const void* values = t == 0 ? v_local : step_v[t % 2];
        cuda::SparseAttention& attention = *step.kernel;
        const bool transfer_beside =
            t + 1 < R && (!sched.steps[t + 1].sends.empty() || !sched.steps[t + 1].recvs.empty());
        attention.reserve_sms(transfer_beside ? options_.ring_reserved_sms : 0);
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
  const int64_t out_bytes = route.q_input.tokens() * H * row_bytes;
  if (out_bytes > 0) DBSP_CUDA_RT_CHECK(cudaMemsetAsync(out, 0, out_bytes, world_stream));
  for (int c = 0; c < chunks; ++c) {
    const ChunkPhases& chunk = sched.chunks[c];
    wait(world_stream, pipelined ? *ds.compute_end[c] : ds.ring_done);
    chunk.out_local.launch(device_table, bases, row_bytes, world_stream);
    chunk.out_pack.launch(device_table, bases, row_bytes, world_stream);
    in_flight.push_back(post(*world, a2a_send, chunk.out_sends, a2a_recv, chunk.out_recvs,
                             "sp all_to_all_v (O out)"));
    chunk.out_unpack.launch(device_table, bases, row_bytes, world_stream);
  }
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
    sched.uploaded = false;  // the table may not have arrived
    world->abort(what.str());
    ring->abort(what.str());
    fail(what.str());
  }
  in_flight.clear();

  double compute_ms = 0;
  if (pipelined) {
    for (int c = 0; c < chunks; ++c) {
      compute_ms += elapsed_ms(*ds.compute_begin[c], *ds.compute_end[c]);
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
  clock.lap_ms();
  if (options_.measure_idle) {
    world_.barrier("sp closing barrier");
    telemetry.idle_ms = clock.lap_ms();
  }
  telemetry.bytes_sent = route.rows_sent * row_bytes;
  telemetry.bytes_received = route.rows_received * row_bytes;
  telemetry.bytes_saved = (route.baseline_rows_sent - route.rows_sent) * row_bytes;
  telemetry.total_ms = total_clock.elapsed_ms();
  return telemetry;
}

}  // namespace dbsp
