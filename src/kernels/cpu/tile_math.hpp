// The arithmetic of one (query tile x key tile) step of online-softmax attention, on packed
// row-major tiles. Overloads for float and double; the .cpp builds an AVX2/FMA clone on x86-64.
#pragma once

namespace dbsp::cpu {

inline constexpr int kTileRows = 64;  // queries per tile
inline constexpr int kTileKeys = 64;  // keys per tile

// scores[i][j] = scale * dot(q[i][:], keys_t[:][j]) for i < rows, j < keys.
// q: [rows][head_dim], keys_t: [head_dim][kTileKeys], scores: [kTileRows][kTileKeys].
void tile_scores(const float* q, const float* keys_t, float* scores, int rows, int keys,
                 int head_dim, float scale);
void tile_scores(const double* q, const double* keys_t, double* scores, int rows, int keys,
                 int head_dim, double scale);

// Online-softmax update per row: raises row_max to cover the new scores, rescales row_sum and the
// accumulated output acc [rows][head_dim] to the new max, turns scores into exp(score - max) and
// adds them to row_sum.
void tile_softmax(float* scores, float* row_max, float* row_sum, float* acc, int rows, int keys,
                  int head_dim);
void tile_softmax(double* scores, double* row_max, double* row_sum, double* acc, int rows, int keys,
                  int head_dim);

// acc[i][:] += sum_j probs[i][j] * values[j][:]; values: [keys][head_dim].
void tile_accumulate(const float* probs, const float* values, float* acc, int rows, int keys,
                     int head_dim);
void tile_accumulate(const double* probs, const double* values, double* acc, int rows, int keys,
                     int head_dim);

}  // namespace dbsp::cpu
