// Work ordering on the device (see schedule.hpp): tile lengths, per-group totals, group ranks,
// then one radix sort of (group rank, inverted length) keys. Every step is a kernel or a CUB call
// on the stream, so it can be captured in a CUDA graph.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/common/lse_weights.cuh"
#include "kernels/cuda/common/ptx.cuh"
#include "kernels/cuda/sparse_attention/schedule.hpp"
#include "kernels/cuda/sparse_attention/work_item.cuh"

namespace dbsp::cuda::detail {
namespace {

// The head group whose K/V item `item` reads; -1 for the unused items past the split rows.
__device__ int group_of(const SparseAttentionParams& p, int item) {
  if (item < p.num_items) return item / items_per_head(p);
  const int slot = item - p.num_items;
  return slot < *p.split_count ? p.split_item[slot] / items_per_head(p) : -1;
}

__global__ void tile_lengths_kernel(const SparseAttentionParams p, unsigned long long* group_work,
                                    uint32_t* tile_length) {
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= total_items(p)) return;
  const WorkItem w = WorkItem::make(p, item);
  const int tiles = w.q_rows > 0 ? w.tiles() : 0;
  tile_length[item] = static_cast<uint32_t>(tiles);
  if (tiles > 0) atomicAdd(group_work + group_of(p, item), static_cast<unsigned long long>(tiles));
}

// Split rows, pass 1: the key tiles of every row, whole.
__global__ void total_tiles_kernel(const SparseAttentionParams p, unsigned long long* total) {
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= p.num_items) return;
  const WorkItem w = WorkItem::make_row(p, item);
  if (w.q_rows > 0 && w.tiles() > 0) atomicAdd(total, static_cast<unsigned long long>(w.tiles()));
}

// Split rows, pass 2: rows of block lists of at least `min_blocks` blocks and longer than a
// `pieces_per_slot`-th of a consumer's even share of the work go in halves. Each split row has
// more than total / (slots x pieces_per_slot) tiles, so at most slots x pieces_per_slot rows
// split (the capacity).
__global__ void assign_splits_kernel(const SparseAttentionParams p, const unsigned long long* total,
                                     int slots, int pieces_per_slot, int min_blocks,
                                     int32_t* split_slot, int32_t* split_item, int* split_count) {
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= p.num_items) return;
  const WorkItem w = WorkItem::make_row(p, item);
  const unsigned long long share =
      *total / static_cast<unsigned long long>(slots * pieces_per_slot);
  const int blocks = w.block_tiles / p.tiles_per_k_block;
  int slot = -1;
  if (w.q_rows > 0 && w.key_tiles == 0 && blocks >= max(2, min_blocks) &&
      static_cast<unsigned long long>(w.tiles()) > share) {
    slot = atomicAdd(split_count, 1);
    if (slot < p.split_capacity) {
      split_item[slot] = item;
    } else {
      slot = -1;  // unreachable by the bound above; kept whole if it ever were
    }
  }
  split_slot[item] = slot;
}

// Rank of each group by descending work (ties: lower group first). Groups are few (batch x heads).
__global__ void group_rank_kernel(const unsigned long long* group_work, int groups, int* rank) {
  for (int g = threadIdx.x; g < groups; g += blockDim.x) {
    const unsigned long long work = group_work[g];
    int r = 0;
    for (int other = 0; other < groups; ++other) {
      const unsigned long long w = group_work[other];
      r += (w > work) || (w == work && other < g);
    }
    rank[g] = r;
  }
}

__global__ void sort_keys_kernel(const SparseAttentionParams p, const int* group_rank,
                                 unsigned long long* keys, int32_t* items) {
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= total_items(p)) return;
  const uint32_t length = reinterpret_cast<const uint32_t*>(items)[item];
  const int group = group_of(p, item);
  keys[item] = group < 0 ? ~0ull  // unused: last
                         : (static_cast<unsigned long long>(group_rank[group]) << 32) |
                               (0xffffffffu - length);
  items[item] = item;
}

// One split row per CTA: its two halves, each normalised over its own keys, weighed by their
// LSE into the row's output (in the kernel's element type) and LSE, as merge_partial merges ring
// steps. 8 columns per thread.
template <class Element>
__global__ void merge_splits_kernel(const SparseAttentionParams p, int head_dim) {
  const int slot = blockIdx.x;
  if (slot >= min(*p.split_count, p.split_capacity)) return;
  const WorkItem w = WorkItem::make_row(p, p.split_item[slot]);
  const int per_row = head_dim / 8;
  const float* first = p.split_out + int64_t{2 * slot} * 64 * head_dim;
  const float* second = first + 64 * head_dim;
  const float* first_lse = p.split_lse + int64_t{2 * slot} * 64;
  const float* second_lse = first_lse + 64;
  Element* out = static_cast<Element*>(p.out);
  const int64_t token_stride = int64_t{p.heads} * head_dim;
  for (int i = threadIdx.x; i < w.q_rows * per_row; i += blockDim.x) {
    const int row = i / per_row;
    const int column = (i - row * per_row) * 8;
    // A half without a kept key (LSE -inf) weighs nothing; neither: O = 0, LSE = -inf.
    const LseWeights weight = lse_weights(first_lse[row], second_lse[row]);
    Element values[8];
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      const int64_t at = int64_t{row} * head_dim + column + c;
      values[c] = ElementTraits<Element>::from_float(weight.a * first[at] + weight.b * second[at]);
    }
    *reinterpret_cast<uint4*>(out + (int64_t{w.batch} * p.seq_q + w.q_begin + row) * token_stride +
                              int64_t{w.head} * head_dim + column) =
        *reinterpret_cast<const uint4*>(values);
    if (column == 0 && p.lse != nullptr)
      p.lse[(int64_t{w.batch} * p.heads + w.head) * p.seq_q + w.q_begin + row] = weight.lse;
  }
}

int bits_for(int values) {
  int bits = 1;
  while ((1ll << bits) < values) ++bits;
  return bits;
}

}  // namespace

WorkScheduler::WorkScheduler(int num_items, int groups)
    : num_items_(num_items),
      groups_(groups),
      group_work_(sizeof(unsigned long long) * groups),
      group_rank_(sizeof(int) * groups),
      counter_(sizeof(int)) {
  size_sort(num_items_);
}

void WorkScheduler::size_sort(int items) {
  keys_in_ = DeviceBuffer(sizeof(unsigned long long) * items);
  keys_out_ = DeviceBuffer(sizeof(unsigned long long) * items);
  items_in_ = DeviceBuffer(sizeof(int32_t) * items);
  order_ = DeviceBuffer(sizeof(int32_t) * items);
  sort_temp_bytes_ = 0;
  DBSP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_temp_bytes_, keys_in_.get<unsigned long long>(),
      keys_out_.get<unsigned long long>(), items_in_.get<int32_t>(), order_.get<int32_t>(), items));
  sort_temp_ = DeviceBuffer(sort_temp_bytes_);
}

void WorkScheduler::enable_splits(int capacity, int head_dim) {
  capacity = std::min(capacity, num_items_);
  if (capacity == split_capacity_ && (capacity == 0 || head_dim == split_head_dim_)) return;
  split_capacity_ = capacity;
  split_head_dim_ = head_dim;
  const size_t parts = 2 * static_cast<size_t>(capacity);
  split_slot_ = DeviceBuffer(capacity > 0 ? sizeof(int32_t) * num_items_ : 0);
  split_item_ = DeviceBuffer(sizeof(int32_t) * capacity);
  split_count_ = DeviceBuffer(capacity > 0 ? 16 : 0);
  split_out_ = DeviceBuffer(sizeof(float) * parts * 64 * head_dim);
  split_lse_ = DeviceBuffer(sizeof(float) * parts * 64);
  size_sort(num_items_ + capacity);
}

void WorkScheduler::attach_splits(SparseAttentionParams& params) const {
  if (split_capacity_ == 0 || params.pair_rows || params.dense) return;
  params.split_capacity = std::min(split_capacity_, params.num_items);
  params.split_slot = split_slot_.get<int32_t>();
  params.split_item = split_item_.get<int32_t>();
  params.split_count = split_count_.get<int>();
  params.split_out = split_out_.get<float>();
  params.split_lse = split_lse_.get<float>();
}

void WorkScheduler::merge_splits(const SparseAttentionParams& params, bool fp16,
                                 cudaStream_t stream) const {
  if (params.split_capacity == 0) return;
  const int head_dim = split_head_dim_;
  if (fp16) {
    merge_splits_kernel<__half><<<params.split_capacity, 128, 0, stream>>>(params, head_dim);
  } else {
    merge_splits_kernel<__nv_bfloat16><<<params.split_capacity, 128, 0, stream>>>(params, head_dim);
  }
  DBSP_CUDA_CHECK_LAUNCH();
}

void WorkScheduler::build(const SparseAttentionParams& params, cudaStream_t stream, int slots,
                          int min_split_blocks) {
  // Paired rows make fewer items than the schedule is sized for.
  require(params.num_items <= num_items_ && params.split_capacity <= split_capacity_,
          "work schedule sized for ", num_items_, " items and ", split_capacity_,
          " split rows, asked for ", params.num_items, " and ", params.split_capacity);
  const int num_items = total_items(params);
  constexpr int kThreads = 256;
  if (params.split_capacity > 0) {
    require(slots > 0, "split rows need the number of consumers working at once, got ", slots);
    auto* total = reinterpret_cast<unsigned long long*>(split_count_.get<char>() + 8);
    DBSP_CUDA_CHECK(cudaMemsetAsync(split_count_.get(), 0, split_count_.bytes(), stream));
    const int row_blocks = (params.num_items + kThreads - 1) / kThreads;
    total_tiles_kernel<<<row_blocks, kThreads, 0, stream>>>(params, total);
    DBSP_CUDA_CHECK_LAUNCH();
    assign_splits_kernel<<<row_blocks, kThreads, 0, stream>>>(
        params, total, slots, kPiecesPerSlot, min_split_blocks, split_slot_.get<int32_t>(),
        split_item_.get<int32_t>(), split_count_.get<int>());
    DBSP_CUDA_CHECK_LAUNCH();
  }
  const int blocks = (num_items + kThreads - 1) / kThreads;
  DBSP_CUDA_CHECK(cudaMemsetAsync(group_work_.get(), 0, group_work_.bytes(), stream));
  // The tile lengths go through items_in_ (same size) before it receives the item ids.
  tile_lengths_kernel<<<blocks, kThreads, 0, stream>>>(
      params, group_work_.get<unsigned long long>(), items_in_.get<uint32_t>());
  DBSP_CUDA_CHECK_LAUNCH();
  group_rank_kernel<<<1, 1024, 0, stream>>>(group_work_.get<unsigned long long>(), groups_,
                                            group_rank_.get<int>());
  DBSP_CUDA_CHECK_LAUNCH();
  sort_keys_kernel<<<blocks, kThreads, 0, stream>>>(
      params, group_rank_.get<int>(), keys_in_.get<unsigned long long>(), items_in_.get<int32_t>());
  DBSP_CUDA_CHECK_LAUNCH();
  size_t temp_bytes = sort_temp_bytes_;
  // Unused split items (every key bit set) sort last.
  const int end_bit = 32 + bits_for(groups_);
  DBSP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      sort_temp_.get(), temp_bytes, keys_in_.get<unsigned long long>(),
      keys_out_.get<unsigned long long>(), items_in_.get<int32_t>(), order_.get<int32_t>(),
      num_items, 0, end_bit, stream));
}

}  // namespace dbsp::cuda::detail
