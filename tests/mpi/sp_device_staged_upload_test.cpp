// The staged upload of fine key lists (sp::device::StagedUpload): arrays from empty to several
// pinned pieces long, ending on and off a piece's edge, arrive byte for byte; a second upload
// queued right behind the first (its pieces reused while the first may still travel) and a host
// array changed as soon as copy() returns leave both arrivals intact.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "device_present.hpp"
#include "sp/cuda/staged_upload.hpp"

namespace dbsp {
namespace {

using sp::device::StagedUpload;

std::vector<char> random_bytes(int64_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<char> data(static_cast<size_t>(bytes));
  for (char& c : data) c = static_cast<char>(rng());
  return data;
}

std::vector<char> download(const char* device, int64_t bytes) {
  std::vector<char> host(static_cast<size_t>(bytes));
  EXPECT_EQ(cudaMemcpy(host.data(), device, host.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

TEST(StagedUpload, EveryByteArrivesAcrossPiecesAndBackToBackUploads) {
  if (!test::has_gpu()) GTEST_SKIP() << "no GPU on this machine";
  constexpr int64_t kPiece = StagedUpload::kPieceBytes;
  StagedUpload upload;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (int64_t bytes : {int64_t{0}, int64_t{1}, kPiece - 1, kPiece, kPiece + 1, 3 * kPiece + 7}) {
    const std::string what = std::to_string(bytes) + " bytes";
    const std::vector<char> first = random_bytes(bytes, 1);
    std::vector<char> second = random_bytes(bytes, 2);
    const std::vector<char> second_sent = second;
    char* device = nullptr;
    ASSERT_EQ(cudaMalloc(&device, 2 * static_cast<size_t>(bytes) + 1), cudaSuccess);
    upload.copy(device, first.data(), bytes, stream);
    upload.copy(device + bytes, second.data(), bytes, stream);
    for (char& c : second) c = static_cast<char>(~c);  // the caller's array may change now
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_TRUE(download(device, bytes) == first) << what << ", first upload";
    EXPECT_TRUE(download(device + bytes, bytes) == second_sent) << what << ", second upload";
    cudaFree(device);
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace dbsp
