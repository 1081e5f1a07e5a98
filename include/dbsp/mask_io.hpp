// Reading and writing block masks as .npy and .safetensors: bool/uint8 arrays shaped
// [heads, q_blocks, k_blocks], optionally with leading [steps, layers] (or [layers]).
// Malformed input throws dbsp::Error naming the file and what is wrong.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "dbsp/block_mask.hpp"

namespace dbsp {

struct MaskFileOptions {
  int block_q = 64;
  int block_k = 64;
  int64_t seq_q = 0;  // 0: q_blocks * block_q
  int64_t seq_k = 0;  // 0: k_blocks * block_k
  std::string tensor_name;  // safetensors: which tensor; empty = the only one (or "mask")
};

// Chooses the reader by extension (.npy, .safetensors).
MaskSeries read_mask_file(const std::filesystem::path& path, const MaskFileOptions& options = {});
MaskSeries read_npy_mask(std::span<const uint8_t> bytes, const std::string& name,
                         const MaskFileOptions& options = {});
MaskSeries read_safetensors_mask(std::span<const uint8_t> bytes, const std::string& name,
                                 const MaskFileOptions& options = {});

// Writes uint8 [steps, layers, heads, qb, kb] (or [heads, qb, kb] for a single mask).
void write_npy_mask(const std::filesystem::path& path, const MaskSeries& series);
void write_safetensors_mask(const std::filesystem::path& path, const MaskSeries& series,
                            const std::string& tensor_name = "mask");

}  // namespace dbsp
