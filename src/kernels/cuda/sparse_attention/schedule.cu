// Work ordering on the device (see schedule.hpp): tile lengths, per-group totals, group ranks,
// then one radix sort of (group rank, inverted length) keys. Every step is a kernel or a CUB call
// on the stream, so it can be captured in a CUDA graph.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/sparse_attention/schedule.hpp"
#include "kernels/cuda/sparse_attention/work_item.cuh"

namespace dbsp::cuda::detail {
namespace {

__global__ void tile_lengths_kernel(const SparseAttentionParams p, unsigned long long* group_work,
                                    uint32_t* tile_length) {
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= p.num_items) return;
  const WorkItem w = WorkItem::make(p, item);
  const int tiles = w.q_rows > 0 ? w.tiles() : 0;
  tile_length[item] = static_cast<uint32_t>(tiles);
  if (tiles > 0)
    atomicAdd(group_work + item / items_per_head(p), static_cast<unsigned long long>(tiles));
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
  if (item >= p.num_items) return;
  const uint32_t length = reinterpret_cast<const uint32_t*>(items)[item];
  const int group = item / items_per_head(p);
  keys[item] = (static_cast<unsigned long long>(group_rank[group]) << 32) | (0xffffffffu - length);
  items[item] = item;
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
      keys_in_(sizeof(unsigned long long) * num_items),
      keys_out_(sizeof(unsigned long long) * num_items),
      items_in_(sizeof(int32_t) * num_items),
      order_(sizeof(int32_t) * num_items),
      counter_(sizeof(int)) {
  DBSP_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(nullptr, sort_temp_bytes_, keys_in_.get<unsigned long long>(),
                                      keys_out_.get<unsigned long long>(), items_in_.get<int32_t>(),
                                      order_.get<int32_t>(), num_items_));
  sort_temp_ = DeviceBuffer(sort_temp_bytes_);
}

void WorkScheduler::build(const SparseAttentionParams& params, cudaStream_t stream) {
  // Paired rows make fewer items than the schedule is sized for.
  require(params.num_items <= num_items_, "work schedule sized for ", num_items_,
          " items, asked for ", params.num_items);
  const int num_items = params.num_items;
  constexpr int kThreads = 256;
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
  DBSP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      sort_temp_.get(), temp_bytes, keys_in_.get<unsigned long long>(),
      keys_out_.get<unsigned long long>(), items_in_.get<int32_t>(), order_.get<int32_t>(),
      num_items, 0, 32 + bits_for(groups_), stream));
}

}  // namespace dbsp::cuda::detail
