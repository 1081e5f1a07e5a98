#include "sp/cuda/staged_upload.hpp"

#include <algorithm>

#include "sp/parallel_copy.hpp"

namespace dbsp::sp::device {

void StagedUpload::copy(char* device, const void* host, int64_t bytes, cudaStream_t stream) {
  const auto* from = static_cast<const char*>(host);
  for (int64_t at = 0; at < bytes; at += kPieceBytes) {
    Piece& piece = pieces_[next_];
    next_ = (next_ + 1) % pieces_.size();
    // A local copy of queued bytes: it ends, so no deadline is needed.
    if (piece.in_use) DBSP_CUDA_RT_CHECK(cudaEventSynchronize(piece.copied.get()));
    const int64_t size = std::min(kPieceBytes, bytes - at);
    char* staged = piece.memory.ensure(kPieceBytes);
    copy_in_pieces(staged, from + at, static_cast<size_t>(size));
    DBSP_CUDA_RT_CHECK(cudaMemcpyAsync(device + at, staged, static_cast<size_t>(size),
                                       cudaMemcpyHostToDevice, stream));
    piece.copied.record(stream);
    piece.in_use = true;
  }
}

}  // namespace dbsp::sp::device
