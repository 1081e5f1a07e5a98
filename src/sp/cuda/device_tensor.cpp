// DeviceBf16: host floats rounded to bf16 on the current GPU, and back.
#include <cuda_runtime.h>

#include <cstring>
#include <utility>

#include "comm/nccl/nccl_check.hpp"
#include "dbsp/sp_attention.hpp"

namespace dbsp {
namespace {

uint16_t to_bf16_bits(float value) {
  const float rounded = round_to_bf16(value);
  uint32_t bits = 0;
  std::memcpy(&bits, &rounded, sizeof(bits));
  return static_cast<uint16_t>(bits >> 16);
}

float from_bf16_bits(uint16_t half) {
  const uint32_t bits = uint32_t{half} << 16;
  float value = 0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

}  // namespace

DeviceBf16::DeviceBf16(std::span<const float> values) : size_(values.size()) {
  std::vector<uint16_t> bits(values.size());
  // Video-sized tensors hold hundreds of millions of values; each rounds on its own.
  const auto count = static_cast<int64_t>(values.size());
#pragma omp parallel for schedule(static) if (count > (int64_t{1} << 20))
  for (int64_t i = 0; i < count; ++i) bits[i] = to_bf16_bits(values[i]);
  if (size_ == 0) return;
  DBSP_CUDA_RT_CHECK(cudaMalloc(&data_, size_ * sizeof(uint16_t)));
  DBSP_CUDA_RT_CHECK(
      cudaMemcpy(data_, bits.data(), size_ * sizeof(uint16_t), cudaMemcpyHostToDevice));
}

DeviceBf16::DeviceBf16(size_t count) : size_(count) {
  if (size_ == 0) return;
  DBSP_CUDA_RT_CHECK(cudaMalloc(&data_, size_ * sizeof(uint16_t)));
  DBSP_CUDA_RT_CHECK(cudaMemset(data_, 0, size_ * sizeof(uint16_t)));
}

DeviceBf16::~DeviceBf16() {
  if (data_) cudaFree(data_);
}

DeviceBf16::DeviceBf16(DeviceBf16&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBf16& DeviceBf16::operator=(DeviceBf16&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  return *this;
}

std::vector<float> DeviceBf16::to_host() const {
  std::vector<uint16_t> bits(size_);
  if (size_ > 0) {
    DBSP_CUDA_RT_CHECK(
        cudaMemcpy(bits.data(), data_, size_ * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  }
  std::vector<float> values(size_);
  const auto count = static_cast<int64_t>(size_);
#pragma omp parallel for schedule(static) if (count > (int64_t{1} << 20))
  for (int64_t i = 0; i < count; ++i) values[i] = from_bf16_bits(bits[i]);
  return values;
}

}  // namespace dbsp
