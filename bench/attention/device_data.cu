// Device helpers of the attention benchmark (see device_data.hpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cub/device/device_scan.cuh>

#include "device_data.hpp"
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/common/device_buffer.hpp"

namespace dbsp::bench {
namespace {

__device__ __forceinline__ uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

__device__ __forceinline__ float unit_normal_ish(uint64_t seed, int64_t i) {
  // Sum of four uniforms, centred and scaled to unit variance (Irwin-Hall): cheap and bounded.
  const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(i)));
  float sum = 0.f;
  for (int part = 0; part < 4; ++part) sum += static_cast<float>((h >> (16 * part)) & 0xffff);
  return (sum / 65535.f - 2.f) * 1.7320508f;
}

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float(float x) {
  return __float2half_rn(x);
}

template <class T>
__global__ void fill_kernel(T* data, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x)
    data[i] = from_float<T>(unit_normal_ish(seed, i));
}

template <class T>
__device__ __forceinline__ float as_float(T x);
template <>
__device__ __forceinline__ float as_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <>
__device__ __forceinline__ float as_float(__half x) {
  return __half2float(x);
}

template <class T>
__global__ void nonfinite_kernel(const T* data, int64_t count, unsigned long long* result) {
  unsigned long long local = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x)
    local += !isfinite(as_float(data[i]));
  if (local) atomicAdd(result, local);
}

__device__ __forceinline__ bool keep_key(uint64_t seed, int row, int32_t key, uint32_t threshold) {
  return static_cast<uint32_t>(mix(seed ^ (static_cast<uint64_t>(row) << 32 | uint32_t(key)))) <
         threshold;
}

// One warp per row: pass 1 counts, pass 2 writes ascending keys (block lists are ascending).
template <bool kWrite>
__global__ void thin_kernel(const int32_t* kv_count, const int64_t* block_row_offset,
                            const int32_t* kv_index, int rows, int block_k, int64_t seq_k,
                            uint32_t threshold, uint64_t seed, int64_t* counts_or_offsets,
                            int32_t* key_index) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  int64_t position = kWrite ? counts_or_offsets[row] : 0;
  const int count = kv_count[row];
  for (int b = 0; b < count; ++b) {
    const int64_t first = int64_t{kv_index[block_row_offset[row] + b]} * block_k;
    for (int offset = 0; offset < block_k; offset += 32) {
      const int64_t key = first + offset + lane;
      const bool keep = key < seq_k && keep_key(seed, row, static_cast<int32_t>(key), threshold);
      const unsigned ballot = __ballot_sync(0xffffffffu, keep);
      if (kWrite && keep)
        key_index[position + __popc(ballot & ((1u << lane) - 1))] = static_cast<int32_t>(key);
      position += __popc(ballot);
    }
  }
  if (!kWrite && lane == 0) counts_or_offsets[row] = position;
}

}  // namespace

void fill_random(cuda::DType dtype, void* data, int64_t count, uint64_t seed) {
  if (dtype == cuda::DType::bf16)
    fill_kernel<<<4096, 256>>>(static_cast<__nv_bfloat16*>(data), count, seed);
  else
    fill_kernel<<<4096, 256>>>(static_cast<__half*>(data), count, seed);
  DBSP_CUDA_CHECK_LAUNCH();
}

int64_t count_nonfinite(cuda::DType dtype, const void* data, int64_t count) {
  cuda::detail::DeviceBuffer result(sizeof(unsigned long long));
  DBSP_CUDA_CHECK(cudaMemset(result.get(), 0, result.bytes()));
  if (dtype == cuda::DType::bf16)
    nonfinite_kernel<<<4096, 256>>>(static_cast<const __nv_bfloat16*>(data), count,
                                    result.get<unsigned long long>());
  else
    nonfinite_kernel<<<4096, 256>>>(static_cast<const __half*>(data), count,
                                    result.get<unsigned long long>());
  DBSP_CUDA_CHECK_LAUNCH();
  unsigned long long host = 0;
  DBSP_CUDA_CHECK(cudaMemcpy(&host, result.get(), sizeof host, cudaMemcpyDeviceToHost));
  return static_cast<int64_t>(host);
}

DeviceKeyLists::~DeviceKeyLists() {
  if (row_offset != nullptr) cudaFree(row_offset);
  if (key_index != nullptr) cudaFree(key_index);
}

void thin_blocks_to_keys(const int32_t* kv_count, const int64_t* block_row_offset,
                         const int32_t* kv_index, int rows, int block_k, int64_t seq_k,
                         double keep_probability, uint64_t seed, DeviceKeyLists& out) {
  const uint32_t threshold =
      static_cast<uint32_t>(std::min(keep_probability, 1.0 - 1e-9) * 4294967296.0);
  cuda::detail::DeviceBuffer counts(sizeof(int64_t) * (rows + 1));
  DBSP_CUDA_CHECK(cudaMemset(counts.get(), 0, counts.bytes()));
  const int warps_per_block = 8;
  const int grid = (rows + warps_per_block - 1) / warps_per_block;
  thin_kernel<false><<<grid, 32 * warps_per_block>>>(kv_count, block_row_offset, kv_index, rows,
                                                     block_k, seq_k, threshold, seed,
                                                     counts.get<int64_t>(), nullptr);
  DBSP_CUDA_CHECK_LAUNCH();
  DBSP_CUDA_CHECK(cudaMalloc(&out.row_offset, sizeof(int64_t) * (rows + 1)));
  size_t temp_bytes = 0;
  DBSP_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, counts.get<int64_t>(),
                                                out.row_offset, rows + 1));
  cuda::detail::DeviceBuffer temp(temp_bytes);
  DBSP_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.get(), temp_bytes, counts.get<int64_t>(),
                                                out.row_offset, rows + 1));
  out.host_row_offset.resize(rows + 1);
  DBSP_CUDA_CHECK(cudaMemcpy(out.host_row_offset.data(), out.row_offset,
                             sizeof(int64_t) * (rows + 1), cudaMemcpyDeviceToHost));
  out.total_keys = out.host_row_offset.back();
  DBSP_CUDA_CHECK(
      cudaMalloc(&out.key_index, sizeof(int32_t) * std::max<int64_t>(out.total_keys, 1)));
  thin_kernel<true><<<grid, 32 * warps_per_block>>>(kv_count, block_row_offset, kv_index, rows,
                                                    block_k, seq_k, threshold, seed, out.row_offset,
                                                    out.key_index);
  DBSP_CUDA_CHECK_LAUNCH();
  DBSP_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace dbsp::bench
