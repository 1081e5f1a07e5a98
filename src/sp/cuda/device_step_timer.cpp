// The emulator's GPU step timer: the bf16 sparse attention kernel over block lists or (fine masks)
// key lists, and the fp32 LSE merge, on placeholder inputs, timed with events around a second,
// warm run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "comm/nccl/nccl_check.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "sp/cuda/block_indices.hpp"
#include "sp/cuda/device_copy.hpp"
#include "sp/cuda/staged_upload.hpp"
#include "sp/parallel_copy.hpp"
#include "sp/step_timer.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp::sp {
namespace {

class DeviceArena {
 public:
  ~DeviceArena() {
    if (data_) cudaFree(data_);
  }
  char* ensure(size_t bytes) {
    if (bytes > bytes_) {
      if (data_) DBSP_CUDA_RT_CHECK(cudaFree(data_));
      data_ = nullptr;
      DBSP_CUDA_RT_CHECK(cudaMalloc(&data_, bytes));
      DBSP_CUDA_RT_CHECK(cudaMemset(data_, 0, bytes));
      bytes_ = bytes;
    }
    return static_cast<char*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

template <class T>
const T* upload(DeviceArena& arena, const std::vector<T>& host) {
  char* device = arena.ensure(std::max<size_t>(16, host.size() * sizeof(T)));
  if (!host.empty()) {
    DBSP_CUDA_RT_CHECK(
        cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  return reinterpret_cast<const T*>(device);
}

class DeviceStepTimer final : public StepTimer {
 public:
  DeviceStepTimer() {
    DBSP_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    DBSP_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&other_stream_, cudaStreamNonBlocking));
    DBSP_CUDA_RT_CHECK(cudaEventCreate(&begin_));
    DBSP_CUDA_RT_CHECK(cudaEventCreate(&end_));
  }
  ~DeviceStepTimer() override {
    kernels_.clear();
    for (cudaEvent_t event : chunk_ends_) cudaEventDestroy(event);
    cudaEventDestroy(begin_);
    cudaEventDestroy(end_);
    cudaStreamDestroy(other_stream_);
    cudaStreamDestroy(stream_);
  }

  // Each kernel alone, then all of them queued as the device executor queues a rank's head
  // chunks: chunk c on the first stream when c is even, on the second when odd, each with its own
  // mask, output and LSE, and a kernel object per stream (sp::device::KernelCache's slots).
  ChunkTimes chunk_times(const std::vector<ChunkKernel>& kernels, int reserved_sms) override {
    ChunkTimes times;
    const size_t n = kernels.size();
    while (chunk_masks_.size() < n) chunk_masks_.push_back(std::make_unique<MaskArenas>());
    while (chunk_ends_.size() < n) {
      cudaEvent_t event = nullptr;
      DBSP_CUDA_RT_CHECK(cudaEventCreate(&event));
      chunk_ends_.push_back(event);
    }
    std::vector<cuda::DeviceMask> masks;
    std::vector<cuda::AttentionShape> shapes;
    // Each kernel's Q/O bytes and LSE rows start where the previous kernel's end.
    std::vector<int64_t> q_at{0}, lse_at{0};
    int64_t k_bytes = 0;
    for (size_t i = 0; i < n; ++i) {
      const ChunkKernel& kernel = kernels[i];
      const AttentionProblem& local = kernel.local;
      masks.push_back(kernel.keys ? fine_device_mask(*chunk_masks_[i], local, *kernel.keys)
                                  : block_device_mask(*chunk_masks_[i], local, *kernel.blocks,
                                                      kernel.block_q, kernel.block_k));
      shapes.push_back(shape_of(local));
      times.alone_ms.push_back(
          timed(local, masks.back(), false, reserved_sms, kernel.split_min_blocks));
      q_at.push_back(q_at.back() + local.seq_q() * local.heads * local.head_dim * 2);
      lse_at.push_back(lse_at.back() + local.seq_q() * local.heads);
      k_bytes = std::max(k_bytes, local.seq_k() * local.heads * local.head_dim * 2);
    }
    // Inputs are shared placeholders (read only); outputs and LSE are each kernel's own.
    char* q = q_.ensure(q_at.back());
    char* k = k_.ensure(k_bytes);
    char* out = out_.ensure(q_at.back());
    auto* lse = reinterpret_cast<float*>(lse_.ensure(std::max<int64_t>(1, lse_at.back()) * 4));
    for (int run = 0; run < 2; ++run) {  // the first run warms caches and the launch path
      DBSP_CUDA_RT_CHECK(cudaEventRecord(begin_, stream_));
      DBSP_CUDA_RT_CHECK(cudaStreamWaitEvent(other_stream_, begin_, 0));
      for (size_t i = 0; i < n; ++i) {
        const cudaStream_t stream = i % 2 == 0 ? stream_ : other_stream_;
        const cuda::DeviceMask& dm = masks[i];
        cuda::SparseAttention& kernel =
            kernel_for(shapes[i], dm.block_q, dm.q_blocks, static_cast<int>(i % 2));
        kernel.reserve_sms(reserved_sms);
        split_rows(kernel, kernels[i].split_min_blocks);
        kernel.plan(dm, stream);
        kernel.run(dm, q + q_at[i], k, k, out + q_at[i], lse + lse_at[i], stream);
        DBSP_CUDA_RT_CHECK(cudaEventRecord(chunk_ends_[i], stream));
      }
      DBSP_CUDA_RT_CHECK(cudaStreamSynchronize(other_stream_));
      DBSP_CUDA_RT_CHECK(cudaStreamSynchronize(stream_));
    }
    for (size_t i = 0; i < n; ++i) {
      float ms = 0;
      DBSP_CUDA_RT_CHECK(cudaEventElapsedTime(&ms, begin_, chunk_ends_[i]));
      times.end_ms.push_back(ms);
    }
    return times;
  }

  double step_ms(const AttentionProblem& local, const BlockCsr& mask, int block_q, int block_k,
                 bool merge, int reserved_sms, int split_min_blocks) override {
    return timed(local, block_device_mask(step_mask_, local, mask, block_q, block_k), merge,
                 reserved_sms, split_min_blocks);
  }

  // Key lists only (no block lists), as the kernels run a fine mask: keys are local K/V tokens.
  double fine_step_ms(const AttentionProblem& local, const FineMask& mask, bool merge,
                      int reserved_sms) override {
    return timed(local, fine_device_mask(step_mask_, local, mask), merge, reserved_sms);
  }

  // The executor's copy kernel (copy_rows) over slabs of 1024 rows read 4 rows apart, as a rank
  // packs [tokens, heads, dim] tensors head by head: timed on 8 and 128 MiB, so that a launch's
  // fixed cost and the per-row rate are both measured (the best of three runs each).
  double copy_ms(int64_t rows, int64_t row_bytes) override {
    if (rows <= 0) return 0;
    auto cost = copy_costs_.find(row_bytes);
    if (cost == copy_costs_.end()) {
      const int64_t small = std::max<int64_t>(1024, (int64_t{8} << 20) / row_bytes);
      const int64_t large = 16 * small;
      const double small_ms = time_copy(small, row_bytes);
      const double large_ms = time_copy(large, row_bytes);
      cost = copy_costs_.emplace(row_bytes, CopyCost::fit(small, small_ms, large, large_ms)).first;
    }
    return cost->second.ms(rows);
  }

  // cudaMemcpyAsync from pinned memory, as the executor uploads its table: timed on 4 and 64 MiB
  // (the best of three runs each), a fixed cost plus a rate per byte.
  double upload_ms(int64_t bytes) override {
    if (bytes <= 0) return 0;
    if (!upload_cost_) {
      constexpr int64_t kSmall = int64_t{4} << 20, kLarge = int64_t{64} << 20;
      void* pinned = nullptr;
      DBSP_CUDA_RT_CHECK(cudaHostAlloc(&pinned, kLarge, cudaHostAllocDefault));
      std::memset(pinned, 0, kLarge);
      char* device = out_.ensure(kLarge);
      auto time = [&](int64_t size) {
        return best_ms([&] {
          DBSP_CUDA_RT_CHECK(cudaMemcpyAsync(device, pinned, static_cast<size_t>(size),
                                             cudaMemcpyHostToDevice, stream_));
        });
      };
      const double small_ms = time(kSmall), large_ms = time(kLarge);
      DBSP_CUDA_RT_CHECK(cudaFreeHost(pinned));
      upload_cost_ = CopyCost::fit(kSmall, small_ms, kLarge, large_ms);
    }
    return upload_cost_->ms(bytes);
  }

  // copy_in_pieces from pageable into pinned memory, as the executor fills its table: timed on
  // 4 MiB (one thread) and 64 MiB (every core), the best of three runs each after one that
  // faults the pages in; a table up to 8 MiB is charged the first rate, a larger one the second.
  double table_fill_ms(int64_t bytes) override {
    if (bytes <= 0) return 0;
    constexpr int64_t kSmall = int64_t{4} << 20, kLarge = int64_t{64} << 20;
    if (!fill_ms_per_byte_) {
      void* pinned = nullptr;
      DBSP_CUDA_RT_CHECK(cudaHostAlloc(&pinned, kLarge, cudaHostAllocDefault));
      const std::vector<char> source(static_cast<size_t>(kLarge), 1);
      auto time = [&](int64_t size) {
        return best_host_ms(
                   1, 3,
                   [&] { copy_in_pieces(pinned, source.data(), static_cast<size_t>(size)); }) /
               static_cast<double>(size);
      };
      fill_ms_per_byte_ = std::pair{time(kSmall), time(kLarge)};
      DBSP_CUDA_RT_CHECK(cudaFreeHost(pinned));
    }
    const auto [small, large] = *fill_ms_per_byte_;
    return static_cast<double>(bytes) * (bytes <= 2 * kSmall ? small : large);
  }
  double staged_upload_ms(int64_t bytes) override {
    if (bytes <= 0) return 0;
    const int64_t last_piece = std::min(bytes, device::StagedUpload::kPieceBytes);
    return std::max(table_fill_ms(bytes), upload_ms(bytes)) + upload_ms(last_piece);
  }
  double block_indices_ms(int64_t rows, int words, int64_t kept) override {
    if (rows <= 0 || words <= 0 || kept <= 0) return 0;
    // A lane lists its word's kept bits one by one, so the time follows the density.
    const double density = static_cast<double>(kept) / (static_cast<double>(rows) * words * 64);
    const int eighths = std::clamp(static_cast<int>(std::lround(8 * density)), 1, 8);
    auto cost = index_costs_.find({words, eighths});
    if (cost == index_costs_.end()) {
      constexpr int64_t kSmall = 1024, kLarge = 16384;
      const double small_ms = time_block_indices(kSmall, words, eighths);
      const double large_ms = time_block_indices(kLarge, words, eighths);
      cost =
          index_costs_
              .emplace(std::pair{words, eighths}, CopyCost::fit(kSmall, small_ms, kLarge, large_ms))
              .first;
    }
    return cost->second.ms(rows);
  }

 private:
  // Where one device mask's lists live.
  struct MaskArenas {
    DeviceArena counts, offsets, indices, q_starts, k_starts;
  };

  static cuda::DeviceMask block_device_mask(MaskArenas& arenas, const AttentionProblem& local,
                                            const BlockCsr& mask, int block_q, int block_k) {
    cuda::DeviceMask dm;
    dm.block_q = block_q;
    dm.block_k = block_k;
    dm.q_blocks = mask.q_blocks;
    dm.kv_count = upload(arenas.counts, mask.kv_count);
    dm.block_row_offset = upload(arenas.offsets, mask.row_offset);
    dm.kv_index = upload(arenas.indices, mask.kv_index);
    dm.q_block_start = upload(arenas.q_starts, local.q_layout.start);
    dm.k_block_start = upload(arenas.k_starts, local.k_layout.start);
    return dm;
  }

  static cuda::DeviceMask fine_device_mask(MaskArenas& arenas, const AttentionProblem& local,
                                           const FineMask& mask) {
    cuda::DeviceMask dm;
    dm.block_q = mask.geometry().block_q;
    dm.block_k = mask.geometry().block_k;
    dm.q_blocks = mask.q_blocks();
    dm.key_row_offset = upload(arenas.offsets, mask.row_offset());
    dm.key_index = upload(arenas.indices, mask.key_index());
    dm.q_block_start = upload(arenas.q_starts, local.q_layout.start);
    dm.k_block_start = upload(arenas.k_starts, local.k_layout.start);
    return dm;
  }

  static cuda::AttentionShape shape_of(const AttentionProblem& local) {
    return {1,
            local.seq_q(),
            local.seq_k(),
            static_cast<int>(local.heads),
            static_cast<int>(local.head_dim),
            cuda::DType::bf16,
            local.scale};
  }

  // Rows of at least `min_blocks` key blocks split; 0: none does.
  static void split_rows(cuda::SparseAttention& kernel, int min_blocks) {
    kernel.split_long_rows(min_blocks > 0, std::max(2, min_blocks));
  }

  // The kernel over `dm` (and the merge when asked) on placeholder inputs, timed on a second run.
  double timed(const AttentionProblem& local, const cuda::DeviceMask& dm, bool merge,
               int reserved_sms, int split_min_blocks = 0) {
    const cuda::AttentionShape shape = shape_of(local);
    const int64_t q_bytes = local.seq_q() * local.heads * local.head_dim * 2;
    const int64_t k_bytes = local.seq_k() * local.heads * local.head_dim * 2;
    char* q = q_.ensure(q_bytes);
    char* k = k_.ensure(k_bytes);
    char* out = out_.ensure(q_bytes);
    char* part = part_.ensure(q_bytes);
    auto* accumulator = reinterpret_cast<float*>(accumulator_.ensure(q_bytes * 2));
    auto* lse = reinterpret_cast<float*>(lse_.ensure(local.seq_q() * local.heads * 4));
    auto* part_lse = reinterpret_cast<float*>(part_lse_.ensure(local.seq_q() * local.heads * 4));
    cuda::SparseAttention& kernel = kernel_for(shape, dm.block_q, dm.q_blocks);
    kernel.reserve_sms(reserved_sms);
    split_rows(kernel, split_min_blocks);
    kernel.plan(dm, stream_);
    float ms = 0;
    for (int run = 0; run < 2; ++run) {  // the first run warms caches and the launch path
      DBSP_CUDA_RT_CHECK(cudaEventRecord(begin_, stream_));
      kernel.run(dm, q, k, k, merge ? part : out, merge ? part_lse : lse, stream_);
      if (merge) {
        cuda::merge_partial(1, local.seq_q(), static_cast<int>(local.heads),
                            static_cast<int>(local.head_dim), cuda::DType::fp32, accumulator, lse,
                            cuda::DType::bf16, part, part_lse, stream_);
      }
      DBSP_CUDA_RT_CHECK(cudaEventRecord(end_, stream_));
      DBSP_CUDA_RT_CHECK(cudaEventSynchronize(end_));
      DBSP_CUDA_RT_CHECK(cudaEventElapsedTime(&ms, begin_, end_));
    }
    return ms;
  }

  double time_copy(int64_t rows, int64_t row_bytes) {
    constexpr int64_t kSlabRows = 1024, kStride = 4;
    std::vector<device::RowCopy> copies;
    for (int64_t first = 0; first < rows; first += kSlabRows) {
      device::RowCopy copy;
      copy.src_base = 0;
      copy.dst_base = 1;
      copy.src_offset = first * kStride * row_bytes;
      copy.dst_offset = first * row_bytes;
      copy.src_stride = kStride * row_bytes;
      copy.dst_stride = row_bytes;
      copy.rows = std::min(kSlabRows, rows - first);
      copies.push_back(copy);
    }
    const auto* table = upload(copy_table_, copies);
    device::CopyBases bases;
    bases.address[0] = reinterpret_cast<uint64_t>(k_.ensure(rows * kStride * row_bytes));
    bases.address[1] = reinterpret_cast<uint64_t>(out_.ensure(rows * row_bytes));
    return best_ms([&] {
      device::copy_rows(table, static_cast<int64_t>(copies.size()), bases, row_bytes, kSlabRows,
                        stream_);
    });
  }

  // fill_block_indices over `rows` random rows of `words` words, each bit kept with probability
  // eighths / 8, every block wanted.
  double time_block_indices(int64_t rows, int words, int eighths) {
    std::vector<uint64_t> bits(static_cast<size_t>(rows * words));
    std::vector<int64_t> row_offset(static_cast<size_t>(rows));
    uint64_t state = 0x9e3779b97f4a7c15ull;
    int64_t listed = 0;
    for (int64_t r = 0; r < rows; ++r) {
      row_offset[r] = listed;
      for (int w = 0; w < words; ++w) {
        uint64_t word = 0;
        for (int b = 0; b < 64; ++b) {
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          if (static_cast<int>(state >> 61) < eighths) word |= uint64_t{1} << b;
        }
        bits[r * words + w] = word;
        listed += __builtin_popcountll(word);
      }
    }
    const std::vector<uint64_t> wanted(static_cast<size_t>(words), ~uint64_t{0});
    std::vector<int32_t> wanted_before(static_cast<size_t>(words));
    for (int w = 0; w < words; ++w) wanted_before[w] = 64 * w;
    const auto* row_bits = upload(index_arenas_.bits, bits);
    const auto* wanted_on_device = upload(index_arenas_.wanted, wanted);
    const auto* before_on_device = upload(index_arenas_.before, wanted_before);
    const auto* offsets_on_device = upload(index_arenas_.offsets, row_offset);
    auto* indices = reinterpret_cast<int32_t*>(
        index_arenas_.indices.ensure(static_cast<size_t>(listed) * sizeof(int32_t)));
    return best_ms([&] {
      device::fill_block_indices(row_bits, words, rows, wanted_on_device, before_on_device,
                                 offsets_on_device, indices, stream_);
    });
  }

  // The best of three timed runs of launch() on the stream, after one that warms the path.
  template <class Launch>
  double best_ms(Launch&& launch) {
    float best = 0;
    for (int run = 0; run < 4; ++run) {
      DBSP_CUDA_RT_CHECK(cudaEventRecord(begin_, stream_));
      launch();
      DBSP_CUDA_RT_CHECK(cudaEventRecord(end_, stream_));
      DBSP_CUDA_RT_CHECK(cudaEventSynchronize(end_));
      float ms = 0;
      DBSP_CUDA_RT_CHECK(cudaEventElapsedTime(&ms, begin_, end_));
      if (run == 1 || (run > 1 && ms < best)) best = ms;
    }
    return best;
  }

  cuda::SparseAttention& kernel_for(const cuda::AttentionShape& shape, int block_q, int q_blocks,
                                    int slot = 0) {
    const auto key = std::make_tuple(shape.seq_q, shape.seq_k, shape.heads, shape.head_dim, block_q,
                                     q_blocks, shape.scale, slot);
    auto it = kernels_.find(key);
    if (it == kernels_.end()) {
      it = kernels_.emplace(key, std::make_unique<cuda::SparseAttention>(shape, block_q, q_blocks))
               .first;
    }
    return *it->second;
  }

  cudaStream_t stream_ = nullptr, other_stream_ = nullptr;
  cudaEvent_t begin_ = nullptr, end_ = nullptr;
  std::vector<cudaEvent_t> chunk_ends_;
  DeviceArena q_, k_, out_, part_, accumulator_, lse_, part_lse_, copy_table_;
  MaskArenas step_mask_;
  std::vector<std::unique_ptr<MaskArenas>> chunk_masks_;
  // A launch's fixed cost, and the cost per row (copies, block lists) or byte (upload).
  struct CopyCost {
    double fixed_ms = 0, ms_per_unit = 0;
    double ms(int64_t units) const { return fixed_ms + static_cast<double>(units) * ms_per_unit; }
    // The line through two timed sizes (neither part below zero).
    static CopyCost fit(int64_t small, double small_ms, int64_t large, double large_ms) {
      const double per_unit =
          std::max(0.0, (large_ms - small_ms) / static_cast<double>(large - small));
      return {std::max(0.0, small_ms - per_unit * static_cast<double>(small)), per_unit};
    }
  };
  std::map<int64_t, CopyCost> copy_costs_;                     // copy_rows, by row bytes
  std::optional<CopyCost> upload_cost_;                        // the table upload, per byte
  std::optional<std::pair<double, double>> fill_ms_per_byte_;  // table fill: one thread, every core
  std::map<std::pair<int, int>, CopyCost> index_costs_;        // block lists, by words and eighths
  struct IndexArenas {  // the block-list kernel's timing inputs and output
    DeviceArena bits, wanted, before, offsets, indices;
  };
  IndexArenas index_arenas_;
  std::map<std::tuple<int64_t, int64_t, int, int, int, int, double, int>,
           std::unique_ptr<cuda::SparseAttention>>
      kernels_;
};

}  // namespace

std::unique_ptr<StepTimer> make_device_step_timer() {
  int devices = 0;
  DBSP_CUDA_RT_CHECK(cudaGetDeviceCount(&devices));
  require(devices > 0, "emulation on cuda: no GPU visible");
  return std::make_unique<DeviceStepTimer>();
}

}  // namespace dbsp::sp
