// Shared by the .npy and .safetensors readers and writers: the shape of a mask array in a file,
// its conversion to and from a MaskSeries, and whole-file reads and writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dbsp/block_mask.hpp"
#include "dbsp/mask_io.hpp"

namespace dbsp::mask_file {

// [steps, layers, heads, q_blocks, k_blocks] of a validated file shape (rank 3, 4 or 5).
struct MaskArrayShape {
  int steps = 1;
  int layers = 1;
  int heads = 0;
  int q_blocks = 0;
  int k_blocks = 0;
  int64_t elements() const {
    return int64_t{steps} * layers * heads * int64_t{q_blocks} * k_blocks;
  }
};

// Checks the rank, that no axis is zero and that every axis and the element count fit;
// `available_bytes` bounds the element count (one byte per element), so a hostile shape can
// never make the reader allocate more than the file holds.
MaskArrayShape shape_from_dims(std::span<const uint64_t> dims, uint64_t available_bytes,
                               const std::string& name);
std::string format_dims(std::span<const uint64_t> dims);

// One byte per element, row-major over the shape; each must be 0 or 1.
MaskSeries series_from_values(std::span<const uint8_t> values, const MaskArrayShape& shape,
                              const std::string& name, const MaskFileOptions& options);

// Writer side: the file shape ([heads, qb, kb] for one mask, else [steps, layers, heads, qb, kb])
// and the values, after checking that every mask of the series has the same shape.
std::vector<uint64_t> dims_of(const MaskSeries& series, const std::string& name);
std::vector<uint8_t> values_of(const MaskSeries& series);

std::vector<uint8_t> read_whole_file(const std::filesystem::path& path);
void write_whole_file(const std::filesystem::path& path, std::span<const uint8_t> header,
                      std::span<const uint8_t> data);

// A quoted, printable and length-capped rendering of untrusted file text for error messages.
std::string printable(std::string_view text, size_t max_shown = 80);

// Little-endian fixed-width integers, independent of the host byte order.
uint64_t load_le(std::span<const uint8_t> bytes);
void append_le(std::vector<uint8_t>& out, uint64_t value, int width);

}  // namespace dbsp::mask_file
