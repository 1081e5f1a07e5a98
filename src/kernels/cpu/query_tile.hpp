// One thread's work unit: up to kTileRows query rows of one (batch, head), attended to the keys a
// cursor yields, by online softmax over packed tiles. Owns its scratch so a thread reuses it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/tile_math.hpp"

namespace dbsp::cpu {

// Pointers and shape of one attention call. Q/O: [batch, seq_q, heads, head_dim],
// K/V: [batch, seq_k, heads, head_dim], LSE: [batch, heads, seq_q].
template <class T>
struct AttentionTensors {
  const T* q = nullptr;
  const T* k = nullptr;
  const T* v = nullptr;
  T* out = nullptr;
  T* lse = nullptr;
  int64_t seq_q = 0;
  int64_t seq_k = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
  T scale = 0;

  int64_t q_offset(int64_t batch, int64_t token, int64_t head) const {
    return ((batch * seq_q + token) * heads + head) * head_dim;
  }
  int64_t k_offset(int64_t batch, int64_t token, int64_t head) const {
    return ((batch * seq_k + token) * heads + head) * head_dim;
  }
};

template <class T>
class QueryTile {
 public:
  explicit QueryTile(int64_t head_dim)
      : head_dim_(head_dim),
        dim_stride_(padded_dim<T>(head_dim)),
        q_(kTileRows * dim_stride_),
        keys_t_(head_dim * kTileKeys),
        values_(kTileKeys * dim_stride_),
        scores_(kTileRows * kTileKeys),
        acc_(kTileRows * dim_stride_),
        row_max_(kTileRows),
        row_sum_(kTileRows),
        key_tokens_(kTileKeys) {}

  // Attends query rows [row_begin, row_end) (at most kTileRows) of (batch, head).
  template <class KeyCursor>
  void run(const AttentionTensors<T>& t, int64_t batch, int64_t head, int64_t row_begin,
           int64_t row_end, KeyCursor keys) {
    const int rows = static_cast<int>(row_end - row_begin);
    const int dim = static_cast<int>(head_dim_);
    const int stride = static_cast<int>(dim_stride_);
    load_queries(t, batch, head, row_begin, rows);
    std::fill(acc_.begin(), acc_.end(), T(0));
    std::fill(row_max_.begin(), row_max_.end(), -std::numeric_limits<T>::infinity());
    std::fill(row_sum_.begin(), row_sum_.end(), T(0));
    while (const int count = keys.fill(key_tokens_.data(), kTileKeys)) {
      pack_keys(t, batch, head, count);
      tile_scores(q_.data(), keys_t_.data(), scores_.data(), rows, count, dim, stride, t.scale);
      tile_softmax(scores_.data(), row_max_.data(), row_sum_.data(), acc_.data(), rows, count,
                   stride);
      tile_accumulate(scores_.data(), values_.data(), acc_.data(), rows, count, stride);
    }
    store(t, batch, head, row_begin, rows);
  }

 private:
  // Rows past `rows` and columns past head_dim stay zero (the padding contract of tile_math.hpp).
  void load_queries(const AttentionTensors<T>& t, int64_t batch, int64_t head, int64_t row_begin,
                    int rows) {
    std::fill(q_.begin(), q_.end(), T(0));
    for (int i = 0; i < rows; ++i) {
      const T* src = t.q + t.q_offset(batch, row_begin + i, head);
      std::copy(src, src + head_dim_, q_.begin() + i * dim_stride_);
    }
  }

  // K transposed to [head_dim][kTileKeys] (so scores vectorize over keys), zero up to the next
  // whole key group; V as [keys][dim_stride], zero past head_dim.
  void pack_keys(const AttentionTensors<T>& t, int64_t batch, int64_t head, int count) {
    for (int j = 0; j < count; ++j) {
      const int64_t offset = t.k_offset(batch, key_tokens_[j], head);
      const T* k_row = t.k + offset;
      for (int64_t c = 0; c < head_dim_; ++c) keys_t_[c * kTileKeys + j] = k_row[c];
      std::copy(t.v + offset, t.v + offset + head_dim_, values_.begin() + j * dim_stride_);
    }
    const int padded = (count + kPadQuantum<T> - 1) / kPadQuantum<T> * kPadQuantum<T>;
    for (int64_t c = 0; c < head_dim_; ++c) {
      auto column_row = keys_t_.begin() + c * kTileKeys;
      std::fill(column_row + count, column_row + padded, T(0));
    }
  }

  // O = acc / sum and LSE = max + log(sum); a row that saw no key gives O = 0 and LSE = -inf.
  void store(const AttentionTensors<T>& t, int64_t batch, int64_t head, int64_t row_begin,
             int rows) {
    T* lse_row = t.lse + (batch * t.heads + head) * t.seq_q + row_begin;
    for (int i = 0; i < rows; ++i) {
      T* dst = t.out + t.q_offset(batch, row_begin + i, head);
      const T* acc_row = acc_.data() + i * dim_stride_;
      if (row_sum_[i] == T(0)) {
        std::fill(dst, dst + head_dim_, T(0));
        lse_row[i] = -std::numeric_limits<T>::infinity();
        continue;
      }
      const T inverse = T(1) / row_sum_[i];
      for (int64_t c = 0; c < head_dim_; ++c) dst[c] = acc_row[c] * inverse;
      lse_row[i] = row_max_[i] + std::log(row_sum_[i]);
    }
  }

  int64_t head_dim_;
  int64_t dim_stride_;  // head_dim padded to whole vectors (tile_math.hpp)
  std::vector<T> q_;
  std::vector<T> keys_t_;
  std::vector<T> values_;
  std::vector<T> scores_;
  std::vector<T> acc_;
  std::vector<T> row_max_;
  std::vector<T> row_sum_;
  std::vector<int64_t> key_tokens_;
};

}  // namespace dbsp::cpu
