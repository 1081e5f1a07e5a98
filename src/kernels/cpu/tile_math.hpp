// The arithmetic of one (query tile x key tile) step of online-softmax attention, on packed
// row-major tiles. Overloads for float and double; the .cpp builds an AVX2/FMA clone on x86-64.
//
// Tile padding contract (lets the register-blocked loops run without tail cases):
// - q and acc hold round_up(rows, kRowGroup) rows of `dim_stride` values; padding rows of q are 0;
// - dim_stride = padded_dim(head_dim), and q, values, acc are zero past head_dim in each row;
// - keys_t holds round_up(keys, key_group) columns (key_group = 64 bytes of T) of kTileKeys
//   stride, zero past `keys`.
#pragma once

#include <cstdint>

namespace dbsp::cpu {

inline constexpr int kTileRows = 64;  // queries per tile
inline constexpr int kTileKeys = 64;  // keys per tile
inline constexpr int kRowGroup = 4;   // query rows per register block

// Values per 64 bytes (two 32-byte vectors): the unit in which head_dim and keys are padded.
template <class T>
constexpr int kPadQuantum = static_cast<int>(64 / sizeof(T));

template <class T>
constexpr int64_t padded_dim(int64_t head_dim) {
  return (head_dim + kPadQuantum<T> - 1) / kPadQuantum<T> * kPadQuantum<T>;
}

// scores[i][j] = scale * dot(q[i][:head_dim], keys_t[:][j]) for i < rows, j < keys.
// q: [rows][dim_stride], keys_t: [head_dim][kTileKeys], scores: [kTileRows][kTileKeys].
void tile_scores(const float* q, const float* keys_t, float* scores, int rows, int keys,
                 int head_dim, int dim_stride, float scale);
void tile_scores(const double* q, const double* keys_t, double* scores, int rows, int keys,
                 int head_dim, int dim_stride, double scale);

// Online-softmax update per row: raises row_max to cover the new scores, rescales row_sum and the
// accumulated output acc [rows][dim_stride] to the new max, turns scores into exp(score - max)
// and adds them to row_sum.
void tile_softmax(float* scores, float* row_max, float* row_sum, float* acc, int rows, int keys,
                  int dim_stride);
void tile_softmax(double* scores, double* row_max, double* row_sum, double* acc, int rows, int keys,
                  int dim_stride);

// acc[i][:] += sum_j probs[i][j] * values[j][:]; values: [keys][dim_stride].
void tile_accumulate(const float* probs, const float* values, float* acc, int rows, int keys,
                     int dim_stride);
void tile_accumulate(const double* probs, const double* values, double* acc, int rows, int keys,
                     int dim_stride);

}  // namespace dbsp::cpu
