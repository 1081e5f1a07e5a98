// Small device steps of sharded mask estimation (device_estimate.cpp): a finiteness check of the
// pooled blocks and the conversion of the estimator's block lists into mask bits.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dbsp::sp::device {

// ORs `flag_bit` into *flag when any of values[0, count) is NaN or infinite.
void flag_non_finite(const float* values, int64_t count, uint64_t flag_bit, uint64_t* flag,
                     cudaStream_t stream);

// Row r's kept key blocks kv_index[r * k_blocks, + kv_count[r]) (the estimator's fixed-capacity
// lists) as bits[r * words, (r + 1) * words): LSB of word 0 = key block 0, as
// BlockMask::row_bits; every word is written, bits past k_blocks stay zero.
void block_lists_to_bits(const int32_t* kv_count, const int32_t* kv_index, int64_t rows,
                         int k_blocks, int words, uint64_t* bits, cudaStream_t stream);

}  // namespace dbsp::sp::device
