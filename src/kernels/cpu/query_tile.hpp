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
        values_in_place_(dim_stride_ == head_dim),
        q_t_(head_dim * kTileRows),
        scores_t_(kTileKeys * kTileRows),
        acc_(kTileRows * dim_stride_),
        row_max_(kTileRows),
        row_sum_(kTileRows),
        zero_row_(dim_stride_, T(0)),
        packed_values_(values_in_place_ ? 0 : kTileKeys * dim_stride_, T(0)),
        key_tokens_(kTileKeys),
        key_rows_(kTileKeys, zero_row_.data()),
        value_rows_(kTileKeys, zero_row_.data()) {}

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
      point_at_keys(t, batch, head, count);
      tile_scores(q_t_.data(), key_rows_.data(), scores_t_.data(), rows, count, dim, t.scale);
      tile_softmax(scores_t_.data(), row_max_.data(), row_sum_.data(), acc_.data(), rows, count,
                   stride);
      tile_accumulate(scores_t_.data(), value_rows_.data(), acc_.data(), rows, count, stride);
    }
    store(t, batch, head, row_begin, rows);
  }

 private:
  // Q transposed to [head_dim][kTileRows], zero past `rows` (the padding contract of tile_math).
  void load_queries(const AttentionTensors<T>& t, int64_t batch, int64_t head, int64_t row_begin,
                    int rows) {
    std::fill(q_t_.begin(), q_t_.end(), T(0));
    for (int i = 0; i < rows; ++i) {
      const T* src = t.q + t.q_offset(batch, row_begin + i, head);
      for (int64_t c = 0; c < head_dim_; ++c) q_t_[c * kTileRows + i] = src[c];
    }
  }

  // K rows are read in place; so are V rows when head_dim is a whole padding quantum, else they
  // are copied into zero-padded rows. Key slots past `count` up to the next key group point at
  // zeros.
  void point_at_keys(const AttentionTensors<T>& t, int64_t batch, int64_t head, int count) {
    for (int j = 0; j < count; ++j) {
      const int64_t offset = t.k_offset(batch, key_tokens_[j], head);
      key_rows_[j] = t.k + offset;
      if (values_in_place_) {
        value_rows_[j] = t.v + offset;
      } else {
        T* row = packed_values_.data() + j * dim_stride_;
        std::copy(t.v + offset, t.v + offset + head_dim_, row);
        value_rows_[j] = row;
      }
    }
    const int group_end = std::min(kTileKeys, (count + kKeyGroup - 1) / kKeyGroup * kKeyGroup);
    for (int j = count; j < group_end; ++j) key_rows_[j] = zero_row_.data();
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
  int64_t dim_stride_;    // head_dim padded to whole vectors (tile_math.hpp)
  bool values_in_place_;  // V rows already hold dim_stride values
  std::vector<T> q_t_;
  std::vector<T> scores_t_;
  std::vector<T> acc_;
  std::vector<T> row_max_;
  std::vector<T> row_sum_;
  std::vector<T> zero_row_;
  std::vector<T> packed_values_;
  std::vector<int64_t> key_tokens_;
  std::vector<const T*> key_rows_;
  std::vector<const T*> value_rows_;
};

}  // namespace dbsp::cpu
