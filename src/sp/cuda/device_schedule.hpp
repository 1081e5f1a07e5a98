// A layer's device schedule: everything the GPU path needs that depends only on (mask,
// partition, problem), built on the host once per (plan, mask) and kept per layer: the host
// routing, row-copy lists, per-peer byte ranges, the kernels and the table uploaded in one copy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/fine_mask.hpp"
#include "dbsp/partition.hpp"
#include "dbsp/sp_attention.hpp"
#include "sp/copy_plan.hpp"
#include "sp/cuda/device_copy.hpp"
#include "sp/cuda/device_resources.hpp"
#include "sp/parallel_copy.hpp"
#include "sp/schedule.hpp"
#include "sp/slab.hpp"

namespace dbsp::sp::device {

// Everything the layer uploads, laid out in one pinned host buffer, uploaded from there as it
// is; sections are 16-byte aligned. The buffer is the caller's and is reused across layers: a
// fresh megabyte-sized allocation each layer would be page-faulted (and pinned) again every time.
class UploadTable {
 public:
  explicit UploadTable(PinnedMemory& bytes) : bytes_(bytes) {}
  template <class T>
  int64_t add(std::span<const T> items) {
    const int64_t offset = reserve<T>(static_cast<int64_t>(items.size()));
    copy_bytes(bytes_.get() + offset, items.data(), items.size_bytes());
    return offset;
  }
  // A section of `count` items for the caller to fill in place (at data() + offset, valid until
  // the next add or reserve).
  template <class T>
  int64_t reserve(int64_t count) {
    const int64_t offset = (size_ + 15) / 16 * 16;
    const int64_t end = offset + count * static_cast<int64_t>(sizeof(T));
    bytes_.grow(std::max<int64_t>(end, 16), size_);
    size_ = end;
    return offset;
  }
  char* data() { return bytes_.get(); }
  int64_t size() const { return size_; }

 private:
  // A block layer's mask rows reach tens of megabytes at P = 1 (one thread filling a fine
  // layer's key lists into the table took 51 ms per call at 480p, BENCHMARKS.md, session 8;
  // those now go through StagedUpload).
  static void copy_bytes(char* into, const void* from, size_t bytes) {
    copy_in_pieces(into, from, bytes);
  }

  PinnedMemory& bytes_;
  int64_t size_ = 0;
};

// Runs a copy list from the uploaded table (at `table`) on `stream`.
inline void launch(const CopyList& list, const char* table, const CopyBases& bases,
                   int64_t row_bytes, cudaStream_t stream) {
  copy_rows(reinterpret_cast<const RowCopy*>(table + list.table_offset),
            static_cast<int64_t>(list.copies.size()), bases, row_bytes, list.max_rows, stream);
}

// A ring step's transfer (StepCopies), its kernel and its mask in the table.
struct DeviceStep : StepCopies {
  int64_t count_offset = 0, row_offset_offset = 0, q_start_offset = 0, k_start_offset = 0;
  // The step's key-block lists live in DeviceSchedule::indices from index_at (elements), written
  // on the device from the mask bits and this step's wanted key blocks (table offsets).
  int64_t index_at = 0, wanted_offset = 0, wanted_before_offset = 0;
  // Fine layers instead: the step's key lists (int64 row offsets in the table, rows + 1 entries,
  // and int32 tokens of the step's K/V buffer in DeviceSchedule::key_lists from key_index_offset
  // bytes), uploaded as they are; no block lists, no index kernel.
  int64_t key_row_offset_offset = 0, key_index_offset = 0;
  cuda::SparseAttention* kernel = nullptr;  // created before any transfer is queued
  bool split_rows = false;                  // sp::split_step_rows (set before each plan)
};

// A head chunk's all-to-all phases (ChunkCopies) and, in pipelined layers, its kernel.
struct ChunkPhases : ChunkCopies {
  int64_t kept = 0;                         // kept blocks of the chunk (pipelined layers)
  cuda::SparseAttention* kernel = nullptr;  // the chunk's kernel (pipelined layers)
  bool split_rows = false;                  // sp::split_chunk_rows (set before each plan)
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
  int row_words = 0;            // 64-bit words per mask row (block layers; 0 for fine ones)
  // Fine layers: each computing step's key lists, uploaded from the host schedule's memory
  // (sched.host.fine_step_masks) through StagedUpload rather than through the pinned table.
  struct KeyListUpload {
    const int32_t* host = nullptr;
    int64_t offset = 0, bytes = 0;  // in DeviceSchedule::key_lists
  };
  std::vector<KeyListUpload> key_list_uploads;
  int64_t key_list_bytes = 0;
  // The rank's local Q and K/V are its input shards as they are (every head in order, its own
  // blocks in order, one chunk): the kernels read the caller's tensors and write its output, and
  // no local copy is made (P = 1, and ring grids whose plan moves no block).
  bool local_is_input = false;
  bool uploaded = false;
};

struct DeviceSchedule : DeviceScheduleData {
  DeviceMemory table;      // the uploaded table (grow-only, kept when the schedule is rebuilt)
  DeviceMemory indices;    // every step's kv_index (likewise)
  DeviceMemory key_lists;  // every step's fine key lists (likewise)

  // Clears everything but the buffers and the host schedule's fine key lists (LayerSchedule::
  // recycle), whose memory the next fine build fills.
  void recycle() {
    sp::LayerSchedule kept = std::move(host);
    kept.recycle();
    static_cast<DeviceScheduleData&>(*this) = DeviceScheduleData{};
    host = std::move(kept);
  }
};

// One kernel object per local shape, kept across layers (its workspace is allocated once).
class KernelCache {
 public:
  // q_blocks: the local layout's block count (its short block may sit anywhere). Kernels that may
  // run at once (head chunks on two streams) take different slots: a kernel object holds its
  // work list and counter.
  cuda::SparseAttention& get(const cuda::AttentionShape& shape, int block_q, int q_blocks,
                             int slot = 0) {
    const auto key = std::make_tuple(shape.seq_q, shape.seq_k, shape.heads, shape.head_dim, block_q,
                                     q_blocks, shape.scale, slot);
    for (auto& [known, attention] : kernels_) {
      if (known == key) return *attention;
    }
    kernels_.emplace_back(key, std::make_unique<cuda::SparseAttention>(shape, block_q, q_blocks));
    return *kernels_.back().second;
  }
  void clear() { kernels_.clear(); }

 private:
  std::vector<std::pair<std::tuple<int64_t, int64_t, int, int, int, int, double, int>,
                        std::unique_ptr<cuda::SparseAttention>>>
      kernels_;
};

// Fills a cleared `sched` for `rank` of `ranks`: the host schedule, copy lists and peer ranges of
// every head chunk and ring step, the kernels (built now, so that no allocation lands between
// queued transfers), device buffers for the table and key lists, and the table in `pinned`
// (uploaded when the schedule is first used). With `host_prebuilt`, sched.host already holds this
// layer's host schedule (built ahead, SpExecutor::prebuild_schedule).
void build_device_schedule(DeviceSchedule& sched, const SpProblem& problem, const BlockMask& mask,
                           const Partition& partition, int rank, int ranks,
                           const SpOptions& options, KernelCache& kernels, PinnedMemory& pinned,
                           bool host_prebuilt = false);
// The same for a fine (M x 1) mask: routing and copy tables from mask.covering_blocks()
// (sp::build_fine_schedule), and per ring step with kept keys the local key lists in the table.
void build_device_schedule(DeviceSchedule& sched, const SpProblem& problem, const FineMask& mask,
                           const Partition& partition, int rank, int ranks,
                           const SpOptions& options, KernelCache& kernels, PinnedMemory& pinned,
                           bool host_prebuilt = false);

}  // namespace dbsp::sp::device
