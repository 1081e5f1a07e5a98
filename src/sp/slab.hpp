// Slabs: the unit the runtime moves. A slab is `rows` consecutive token rows of one head in a
// [tokens, heads, head_dim] tensor; messages are slab lists packed back to back.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace dbsp::sp {

struct Slab {
  int64_t row = 0;  // first token row in the tensor
  int32_t head = 0;
  int32_t rows = 0;
  bool operator==(const Slab&) const = default;
};

inline int64_t slab_rows(std::span<const Slab> slabs) {
  int64_t rows = 0;
  for (const Slab& s : slabs) rows += s.rows;
  return rows;
}

// Copies the slabs of `tensor` ([*, heads, head_dim]) into `packed`, back to back; returns the
// number of elements written.
template <class T>
int64_t pack_slabs(const T* tensor, int64_t heads, int64_t head_dim, std::span<const Slab> slabs,
                   T* packed) {
  int64_t at = 0;
  for (const Slab& s : slabs) {
    for (int64_t r = 0; r < s.rows; ++r) {
      std::memcpy(packed + at, tensor + ((s.row + r) * heads + s.head) * head_dim,
                  sizeof(T) * static_cast<size_t>(head_dim));
      at += head_dim;
    }
  }
  return at;
}

// The inverse of pack_slabs.
template <class T>
int64_t unpack_slabs(const T* packed, int64_t heads, int64_t head_dim, std::span<const Slab> slabs,
                     T* tensor) {
  int64_t at = 0;
  for (const Slab& s : slabs) {
    for (int64_t r = 0; r < s.rows; ++r) {
      std::memcpy(tensor + ((s.row + r) * heads + s.head) * head_dim, packed + at,
                  sizeof(T) * static_cast<size_t>(head_dim));
      at += head_dim;
    }
  }
  return at;
}

}  // namespace dbsp::sp
