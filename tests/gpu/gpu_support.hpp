// Shared helpers of the GPU tests: skipping without a device, device arrays, bf16/fp16 rounding
// on the host, random masks, and the float64 and naive low-precision attention references
// (per query row, so long sequences can be checked on a sample of query blocks).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dbsp/cuda_attention.hpp"

namespace dbsp::gpu_test {

bool gpu_available();

#define DBSP_SKIP_WITHOUT_GPU() \
  if (!::dbsp::gpu_test::gpu_available()) GTEST_SKIP() << "no CUDA device on this machine"

void check_cuda(cudaError_t status, const char* what);

// RAII device array of T.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t count) : count_(count) {
    if (count_ > 0) check_cuda(cudaMalloc(&data_, count_ * sizeof(T)), "cudaMalloc");
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& other) noexcept : data_(other.data_), count_(other.count_) {
    other.data_ = nullptr;
    other.count_ = 0;
  }
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    return *this;
  }

  void upload(const std::vector<T>& host) {
    check_cuda(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
               "upload");
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    check_cuda(cudaDeviceSynchronize(), "kernel");
    check_cuda(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost),
               "download");
    return host;
  }
  // Fills every byte with 0xff: NaN for floats and halves, so unwritten outputs show.
  void poison() { check_cuda(cudaMemset(data_, 0xff, count_ * sizeof(T)), "poison"); }
  T* get() const { return data_; }
  size_t size() const { return count_; }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

// 16-bit storage on the host with round-to-nearest-even conversions.
uint16_t to_half_bits(float x, cuda::DType dtype);
float from_half_bits(uint16_t bits, cuda::DType dtype);
inline float round_to(float x, cuda::DType dtype) {
  return dtype == cuda::DType::fp32 ? x : from_half_bits(to_half_bits(x, dtype), dtype);
}

// A [batch, seq, heads, head_dim] tensor: values already rounded to dtype, plus their bits.
struct HostTensor {
  std::vector<float> values;
  std::vector<uint16_t> bits;
};
HostTensor random_tensor(size_t count, cuda::DType dtype, std::mt19937_64& rng);

// Test-side mask: per (head, query block) row a list of key blocks and a list of single keys.
struct HostMask {
  int heads = 1;
  int block_q = 64;
  int block_k = 64;
  bool dense = false;
  std::vector<int64_t> q_start;              // q_blocks + 1 token starts
  std::vector<int64_t> k_start;              // k_blocks + 1 token starts
  bool custom_layout = false;                // pass q_start/k_start to the kernel
  std::vector<std::vector<int32_t>> blocks;  // [heads * q_blocks]
  std::vector<std::vector<int32_t>> keys;    // [heads * q_blocks], sorted
  bool use_blocks = true;
  bool use_keys = false;

  int q_blocks() const { return static_cast<int>(q_start.size()) - 1; }
  int k_blocks() const { return static_cast<int>(k_start.size()) - 1; }
  int row(int head, int q_block) const { return head * q_blocks() + q_block; }
  int q_block_of(int64_t token) const;
  // Sorted, unique kept keys of a row: keys of its blocks plus its single keys.
  std::vector<int32_t> kept_keys(int head, int q_block, int64_t seq_k) const;
  int64_t kept_scores(int64_t seq_k) const;  // sum over query tokens of kept keys (per batch)

  static HostMask uniform(int heads, int64_t seq_q, int64_t seq_k, int block_q, int block_k);
};

// Random block lists with the given density; every `empty_every`-th row is left empty (0: none)
// and every `full_every`-th row keeps every block (0: none).
void fill_random_blocks(HostMask& mask, double density, std::mt19937_64& rng, int empty_every = 0,
                        int full_every = 0);
// Random single-key lists with the given density of keys per row, avoiding keys of the row's
// blocks so mixed masks stay disjoint.
void fill_random_keys(HostMask& mask, double density, int64_t seq_k, std::mt19937_64& rng,
                      int empty_every = 0);

// The mask's lists on the device, kept alive as long as the DeviceMask is used.
struct DeviceMaskStorage {
  DeviceArray<int32_t> kv_count, kv_index, key_index;
  DeviceArray<int64_t> block_row_offset, key_row_offset, q_start, k_start;
  cuda::DeviceMask view;
};
DeviceMaskStorage upload_mask(const HostMask& mask);

struct Problem {
  int64_t batch = 1;
  int64_t seq_q = 0;
  int64_t seq_k = 0;
  int heads = 1;
  int head_dim = 64;
  cuda::DType dtype = cuda::DType::bf16;
  double scale() const;
  cuda::AttentionShape shape() const;
};

struct ErrorReport {
  double ours_max = 0;   // max |ours - fp64 reference| over checked elements
  double naive_max = 0;  // max |naive low precision - fp64 reference|
  double ours_rel_l2 = 0;
  double naive_rel_l2 = 0;
  double lse_max = 0;                 // max |lse - reference| over finite references
  int64_t lse_infinite_mismatch = 0;  // rows whose -inf-ness differs
  int64_t nonfinite_outputs = 0;      // NaN/inf anywhere in O (all rows, poison included)
  int64_t checked_rows = 0;
  std::string describe() const;
};

// Checks O and LSE (lse may be empty) of query blocks `q_blocks` (empty: all) of every batch and
// head against the float64 reference and the naive path. out holds dtype bits.
ErrorReport compare_with_reference(const Problem& problem, const HostMask& mask,
                                   const HostTensor& q, const HostTensor& k, const HostTensor& v,
                                   const std::vector<uint16_t>& out, const std::vector<float>& lse,
                                   const std::vector<int>& q_blocks = {});

// The acceptance rule: at most 2x the naive path's error (plus a tiny floor), LSE close, no NaN.
void expect_within_naive_bound(const ErrorReport& report);

}  // namespace dbsp::gpu_test
