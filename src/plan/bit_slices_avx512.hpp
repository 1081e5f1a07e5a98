// The AVX-512 builds of the bit-sliced counting kernels (bit_slices_avx512.cpp). Call them only
// where avx512_usable() says the CPU has the instructions; bit_slices.cpp does the dispatch.
#pragma once

#include <cstddef>
#include <cstdint>

#include "plan/bit_slices.hpp"

namespace dbsp::plan::avx512 {

// AVX-512 F, VL and VPOPCNTDQ, and a compiler that builds this file for them.
bool usable();

void add_rows(const uint64_t* const* rows, int count, int stride, uint64_t* planes, int plane_count,
              bool overwrite);
void sum_heads(const MaskRows& rows, const int* heads, int head_count, int q_begin, int q_end,
               uint64_t* out, int plane_count, size_t row_step, const uint64_t** pointers,
               const uint64_t** bases);

// Per row r and segment s, the weighted popcount of the row's planes under masks[s * stride ..]
// (a full-width mask per segment, so scattered segments cost no more than contiguous ones):
// out[r * out_step + s].
void masked_segment_sums(const uint64_t* planes, int plane_count, int stride, size_t row_step,
                         int rows, const uint64_t* masks, int segments, int32_t* out,
                         size_t out_step);

}  // namespace dbsp::plan::avx512
