// The arithmetic of one (query tile x key tile) step of online-softmax attention. Scores are kept
// transposed ([key][query row]) so that the softmax runs down whole vectors of query rows and
// K / V rows are read in place, without packing. Overloads for float and double; the .cpp picks an
// AVX2/FMA build at run time on x86-64.
//
// Padding contract (lets the register-blocked loops run without tail cases):
// - q_t is [head_dim][kTileRows], zero in the columns from `rows` up to round_up(rows,
// kPadQuantum);
// - key / value pointers: kTileKeys entries; those from `count` up to round_up(count, kKeyGroup)
//   point at a zero row of head_dim values;
// - value rows and acc rows hold dim_stride = padded_dim(head_dim) values, zero past head_dim
//   (value rows are read in place when head_dim is already a whole quantum, else packed).
#pragma once

#include <cstdint>

namespace dbsp::cpu {

inline constexpr int kTileRows = 64;  // queries per tile
inline constexpr int kTileKeys = 64;  // keys per tile
inline constexpr int kKeyGroup = 4;   // keys per register block of the score kernel
inline constexpr int kRowGroup = 4;   // query rows per register block of the value kernel

// Values per 64 bytes (two 32-byte vectors): the unit in which head_dim and rows are padded.
template <class T>
constexpr int kPadQuantum = static_cast<int>(64 / sizeof(T));

template <class T>
constexpr int64_t round_up_to_quantum(int64_t n) {
  return (n + kPadQuantum<T> - 1) / kPadQuantum<T> * kPadQuantum<T>;
}

template <class T>
constexpr int64_t padded_dim(int64_t head_dim) {
  return round_up_to_quantum<T>(head_dim);
}

// scores_t[j][i] = scale * dot(q_t[:][i], keys[j][:head_dim]) for j < count, i < rows.
// scores_t: [kTileKeys][kTileRows].
void tile_scores(const float* q_t, const float* const* keys, float* scores_t, int rows, int count,
                 int head_dim, float scale);
void tile_scores(const double* q_t, const double* const* keys, double* scores_t, int rows,
                 int count, int head_dim, double scale);

// Online-softmax update per query row: raises row_max to cover the new scores, rescales row_sum
// and acc [kTileRows][dim_stride] to the new max, turns scores into exp(score - max) and adds them
// to row_sum. row_max / row_sum hold kTileRows entries.
void tile_softmax(float* scores_t, float* row_max, float* row_sum, float* acc, int rows, int count,
                  int dim_stride);
void tile_softmax(double* scores_t, double* row_max, double* row_sum, double* acc, int rows,
                  int count, int dim_stride);

// acc[i][:] += sum_j probs_t[j][i] * values[j][:dim_stride].
void tile_accumulate(const float* probs_t, const float* const* values, float* acc, int rows,
                     int count, int dim_stride);
void tile_accumulate(const double* probs_t, const double* const* values, double* acc, int rows,
                     int count, int dim_stride);

}  // namespace dbsp::cpu
