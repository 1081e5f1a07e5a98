// Uploads of large pageable host arrays (a fine layer's key lists, hundreds of megabytes at video
// sizes) through a few fixed pinned pieces, instead of a pinned copy of the whole array: pinning
// memory costs far more than copying it (cudaHostAlloc of 322 MB took 132 ms on an H200 host, the
// key lists' build 54 ms; BENCHMARKS.md, session 14), and the host's fill of one piece overlaps
// the transfer of the one before.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "sp/cuda/device_resources.hpp"

namespace dbsp::sp::device {

class StagedUpload {
 public:
  // Copies host[0, bytes) to device[0, bytes) on `stream`. Returns once the last piece is queued:
  // `host` may change then, and work queued on `stream` after this sees the whole array.
  void copy(char* device, const void* host, int64_t bytes, cudaStream_t stream);

  static constexpr int64_t kPieceBytes = int64_t{16} << 20;

 private:
  struct Piece {
    PinnedMemory memory;
    Event copied;  // the piece's last transfer out
    bool in_use = false;
  };
  std::array<Piece, 3> pieces_;
  size_t next_ = 0;
};

}  // namespace dbsp::sp::device
