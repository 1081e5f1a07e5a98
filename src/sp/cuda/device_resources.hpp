// RAII device resources of the GPU runtime: grow-only device and pinned host buffers, and events.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "comm/nccl/nccl_check.hpp"

namespace dbsp::sp::device {

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
  char* ensure(int64_t bytes) { return grow(bytes, 0); }
  // The same, keeping the first `keep` bytes when the buffer moves.
  char* grow(int64_t bytes, int64_t keep) {
    if (bytes > bytes_) {
      void* larger = nullptr;
      DBSP_CUDA_RT_CHECK(
          cudaHostAlloc(&larger, static_cast<size_t>(with_headroom(bytes)), cudaHostAllocDefault));
      if (data_ && keep > 0) std::memcpy(larger, data_, static_cast<size_t>(keep));
      if (data_) DBSP_CUDA_RT_CHECK(cudaFreeHost(data_));
      data_ = larger;
      bytes_ = with_headroom(bytes);
    }
    return static_cast<char*>(data_);
  }
  char* get() const { return static_cast<char*>(data_); }

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

inline float elapsed_ms(const Event& from, const Event& to) {
  float ms = 0;
  return cudaEventElapsedTime(&ms, from.get(), to.get()) == cudaSuccess ? ms : 0.0f;
}

}  // namespace dbsp::sp::device
