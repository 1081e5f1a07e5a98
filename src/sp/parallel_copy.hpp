// A large host copy spread over every core: one thread writes memory at a few GB/s, and a fine
// layer's schedule table holds hundreds of megabytes of key lists at video sizes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dbsp::sp {

// Copies in pieces of a few megabytes over OpenMP threads; copies of up to two pieces (8 MiB)
// stay on the calling thread, where a team's start would cost more than it saves.
inline void copy_in_pieces(void* into, const void* from, size_t bytes) {
  constexpr size_t kPiece = size_t{4} << 20;
  auto* target = static_cast<char*>(into);
  const auto* source = static_cast<const char*>(from);
  const auto pieces = static_cast<int64_t>((bytes + kPiece - 1) / kPiece);
#pragma omp parallel for schedule(static) if (pieces > 2)
  for (int64_t i = 0; i < pieces; ++i) {
    const size_t at = static_cast<size_t>(i) * kPiece;
    std::memcpy(target + at, source + at, std::min(kPiece, bytes - at));
  }
}

}  // namespace dbsp::sp
