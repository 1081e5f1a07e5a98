// The NCCL test fixture: one NCCL world per test binary, bootstrapped over the MPI world, one GPU
// per rank; tests skip on machines without a GPU. Plus an RAII device buffer.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#include "dbsp/communicator.hpp"
#include "dbsp/error.hpp"
#include "mpi_test_support.hpp"

namespace dbsp {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_ > 0 && cudaMalloc(&data_, bytes_) != cudaSuccess) throw Error("cudaMalloc failed");
  }
  ~DeviceBuffer() {
    if (data_) cudaFree(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return data_; }
  template <class T>
  void upload(const std::vector<T>& host) {
    ASSERT_EQ(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  template <class T>
  std::vector<T> download(size_t count) const {
    std::vector<T> host(count);
    if (count > 0) cudaMemcpy(host.data(), data_, count * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_;
};

class Nccl : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) return;
    Communicator& world = test::world();
    const int device = device_for_rank(world.rank());
    cudaSetDevice(device);
    nccl_ = make_nccl_world(world, device, {.timeout_seconds = 60}).release();
  }
  static void TearDownTestSuite() {
    delete nccl_;
    nccl_ = nullptr;
  }
  void SetUp() override {
    if (nccl_ == nullptr) GTEST_SKIP() << "no GPU on this machine";
  }
  static inline Communicator* nccl_ = nullptr;
};

}  // namespace dbsp
