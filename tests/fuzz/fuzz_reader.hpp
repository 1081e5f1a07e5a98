// What both mask-file fuzzers check: a reader either throws dbsp::Error or returns a series whose
// every mask agrees with the others; any other exception, crash or sanitizer report is a bug.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "dbsp/error.hpp"
#include "dbsp/mask_io.hpp"

namespace dbsp::fuzz {

template <class Reader>
int check_reader(Reader read, const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  // The first byte, when present, also picks a sequence override, so the geometry checks run.
  MaskFileOptions options;
  if (size > 0 && (data[0] & 1)) {
    options.seq_q = data[0] >> 1;
    options.seq_k = 65;
  }
  try {
    const MaskSeries series = read(bytes, "fuzz-input", options);
    if (series.masks.size() != size_t(series.steps) * size_t(series.layers)) std::abort();
    int64_t kept = 0;
    for (const BlockMask& mask : series.masks) {
      if (mask.heads() != series.masks.front().heads()) std::abort();
      if (mask.geometry() != series.masks.front().geometry()) std::abort();
      kept += mask.kept();
    }
    if (kept > int64_t(size)) std::abort();  // one byte per element at least
  } catch (const Error&) {
    // Rejected with a message: the expected outcome for most inputs.
  }
  return 0;
}

}  // namespace dbsp::fuzz
