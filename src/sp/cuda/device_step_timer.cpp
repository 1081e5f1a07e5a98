// The emulator's GPU step timer: the bf16 sparse attention kernel over block lists or (fine masks)
// key lists, and the fp32 LSE merge, on placeholder inputs, timed with events around a second,
// warm run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "comm/nccl/nccl_check.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/error.hpp"
#include "sp/cuda/device_copy.hpp"
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
    DBSP_CUDA_RT_CHECK(cudaEventCreate(&begin_));
    DBSP_CUDA_RT_CHECK(cudaEventCreate(&end_));
  }
  ~DeviceStepTimer() override {
    kernels_.clear();
    cudaEventDestroy(begin_);
    cudaEventDestroy(end_);
    cudaStreamDestroy(stream_);
  }

  double step_ms(const AttentionProblem& local, const BlockCsr& mask, int block_q, int block_k,
                 bool merge, int reserved_sms) override {
    cuda::DeviceMask dm;
    dm.block_q = block_q;
    dm.block_k = block_k;
    dm.q_blocks = mask.q_blocks;
    dm.kv_count = upload(counts_, mask.kv_count);
    dm.block_row_offset = upload(offsets_, mask.row_offset);
    dm.kv_index = upload(indices_, mask.kv_index);
    dm.q_block_start = upload(q_starts_, local.q_layout.start);
    dm.k_block_start = upload(k_starts_, local.k_layout.start);
    return timed(local, dm, merge, reserved_sms);
  }

  // Key lists only (no block lists), as the kernels run a fine mask: keys are local K/V tokens.
  double fine_step_ms(const AttentionProblem& local, const FineMask& mask, bool merge,
                      int reserved_sms) override {
    cuda::DeviceMask dm;
    dm.block_q = mask.geometry().block_q;
    dm.block_k = mask.geometry().block_k;
    dm.q_blocks = mask.q_blocks();
    dm.key_row_offset = upload(offsets_, mask.row_offset());
    dm.key_index = upload(indices_, mask.key_index());
    dm.q_block_start = upload(q_starts_, local.q_layout.start);
    dm.k_block_start = upload(k_starts_, local.k_layout.start);
    return timed(local, dm, merge, reserved_sms);
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
        double best = 0;
        for (int run = 0; run < 4; ++run) {
          const Stopwatch clock;
          copy_in_pieces(pinned, source.data(), static_cast<size_t>(size));
          const double ms = clock.elapsed_ms();
          if (run == 1 || (run > 1 && ms < best)) best = ms;
        }
        return best / static_cast<double>(size);
      };
      fill_ms_per_byte_ = std::pair{time(kSmall), time(kLarge)};
      DBSP_CUDA_RT_CHECK(cudaFreeHost(pinned));
    }
    const auto [small, large] = *fill_ms_per_byte_;
    return static_cast<double>(bytes) * (bytes <= 2 * kSmall ? small : large);
  }

 private:
  // The kernel over `dm` (and the merge when asked) on placeholder inputs, timed on a second run.
  double timed(const AttentionProblem& local, const cuda::DeviceMask& dm, bool merge,
               int reserved_sms) {
    const cuda::AttentionShape shape{1,
                                     local.seq_q(),
                                     local.seq_k(),
                                     static_cast<int>(local.heads),
                                     static_cast<int>(local.head_dim),
                                     cuda::DType::bf16,
                                     local.scale};
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

  cuda::SparseAttention& kernel_for(const cuda::AttentionShape& shape, int block_q, int q_blocks) {
    const auto key = std::make_tuple(shape.seq_q, shape.seq_k, shape.heads, shape.head_dim, block_q,
                                     q_blocks, shape.scale);
    auto it = kernels_.find(key);
    if (it == kernels_.end()) {
      it = kernels_.emplace(key, std::make_unique<cuda::SparseAttention>(shape, block_q, q_blocks))
               .first;
    }
    return *it->second;
  }

  cudaStream_t stream_ = nullptr;
  cudaEvent_t begin_ = nullptr, end_ = nullptr;
  DeviceArena q_, k_, out_, part_, accumulator_, lse_, part_lse_;
  DeviceArena counts_, offsets_, indices_, q_starts_, k_starts_, copy_table_;
  struct CopyCost {  // a launch's fixed cost, and the cost per row (copies) or byte (upload)
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
  std::map<std::tuple<int64_t, int64_t, int, int, int, int, double>,
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
