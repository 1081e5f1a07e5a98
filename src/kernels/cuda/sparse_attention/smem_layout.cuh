// Shared-memory tile layouts of the attention kernels, as byte offsets of 16-byte chunks.
// XorRows (mma.sync kernel): one row of head_dim per row, chunk ^ (row % 8), so the 8 rows an
// ldmatrix phase reads hit all 32 banks. Sw128Columns (wgmma kernel): the hardware's 128-byte
// swizzle atoms, 64 elements wide, with head_dim split into column blocks of kRows x 128 bytes,
// which is the layout a wgmma descriptor reads as K-major (Q, K) or N-major (V).
#pragma once

namespace dbsp::cuda::detail {

template <int kChunksPerRow>
struct XorRows {
  __device__ __forceinline__ static int offset(int row, int chunk) {
    return (row * kChunksPerRow + (chunk ^ (row & 7))) * 16;
  }
};

template <int kRows>
struct Sw128Columns {
  static constexpr int kColumnBlockBytes = kRows * 128;
  __device__ __forceinline__ static int offset(int row, int chunk) {
    return (chunk >> 3) * kColumnBlockBytes + row * 128 + (((chunk & 7) ^ (row & 7)) << 4);
  }
};

}  // namespace dbsp::cuda::detail
