// The key-block lists of a step's local mask, written on the device from the mask bits: the host
// keeps only counts and offsets (cheap popcounts), so a layer whose mask changed costs no
// per-index work on the CPU and no multi-megabyte upload.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dbsp::sp::device {

// Row r's bits are row_bits[r * words, (r + 1) * words) (one (head, query block) mask row). Its
// kept key blocks are the bits also set in `wanted`, numbered by their rank among the wanted
// blocks (wanted_before[w]: wanted blocks in words before w), ascending, written at
// kv_index + row_offset[r].
void fill_block_indices(const uint64_t* row_bits, int words, int64_t rows, const uint64_t* wanted,
                        const int32_t* wanted_before, const int64_t* row_offset, int32_t* kv_index,
                        cudaStream_t stream);

}  // namespace dbsp::sp::device
