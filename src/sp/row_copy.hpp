// The descriptor of a strided row copy, as the device copy kernel reads it from an uploaded table
// (sp/cuda/device_copy.hpp). Plain data, built on the host.
#pragma once

#include <cstdint>

namespace dbsp::sp::device {

// The buffers a copy table refers to, by index: tables hold offsets, not addresses, so a table
// built for one layer stays valid when buffers move (grown workspace, other user tensors).
constexpr int kMaxCopyBases = 16;
struct CopyBases {
  uint64_t address[kMaxCopyBases] = {};
};

// Copies `rows` rows of row_bytes bytes from base[src_base] + src_offset (rows src_stride bytes
// apart) to base[dst_base] + dst_offset (rows dst_stride bytes apart).
struct RowCopy {
  int64_t src_offset = 0;
  int64_t dst_offset = 0;
  int64_t src_stride = 0;
  int64_t dst_stride = 0;
  int64_t rows = 0;
  int32_t src_base = 0;
  int32_t dst_base = 0;
};

}  // namespace dbsp::sp::device
