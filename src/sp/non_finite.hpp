// Non-finite values in a layer's output. NaN or Inf in any rank's Q, K or V spreads to every
// output row that attends to it, so each rank scans its output shard after the layer, and the
// layer's closing gather tells every rank which ranks found one: all of them then fail with the
// same error instead of passing the values on.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dbsp::sp {

// First index i in [0, count) with data[i] NaN or +-Inf, or -1.
int64_t first_non_finite(const float* data, int64_t count);

// Where flat index `index` of an output shard [tokens, heads, head_dim] starting at global token
// `first_token` lies: {token, head}, or {-1, -1} for index -1.
std::array<int64_t, 2> output_place(int64_t index, int64_t first_token, int64_t heads,
                                    int64_t head_dim);

// Every rank's output_place, by rank: "" when all are {-1, -1}, else the error naming each rank
// with a non-finite output and where its first one is.
std::string non_finite_outputs_error(const std::vector<std::array<int64_t, 2>>& by_rank);

}  // namespace dbsp::sp
