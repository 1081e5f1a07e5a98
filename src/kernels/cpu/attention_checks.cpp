// Boundary checks of the CPU attention entry points.
#include "kernels/cpu/attention_checks.hpp"

#include <cmath>
#include <cstddef>
#include <span>

#include "dbsp/error.hpp"

namespace dbsp::cpu {
namespace {

constexpr int64_t kMaxHeadDim = 4096;  // scratch is sized by it; real models use 64 to 256

void check_layout(const BlockLayout& layout, const char* name, const char* caller) {
  require(!layout.start.empty() && layout.start.front() == 0, caller, ": ", name,
          ".start must begin with 0 (", name, " has ", layout.start.size(), " entries)");
  for (std::size_t b = 1; b < layout.start.size(); ++b) {
    require(layout.start[b] >= layout.start[b - 1], caller, ": ", name,
            ".start must be non-decreasing, but start[", b, "] = ", layout.start[b], " < start[",
            b - 1, "] = ", layout.start[b - 1]);
  }
}

// Row offsets of a CSR over `rows` rows holding `entries` entries: size rows+1, from 0 to
// entries, non-decreasing.
void check_row_offsets(std::span<const int64_t> row_offset, int64_t rows, std::size_t entries,
                       const char* what, const char* caller) {
  require(static_cast<int64_t>(row_offset.size()) == rows + 1, caller, ": ", what,
          " row_offset must have heads*q_blocks+1 = ", rows + 1, " entries, got ",
          row_offset.size());
  require(row_offset.front() == 0, caller, ": ", what, " row_offset[0] must be 0, got ",
          row_offset.front());
  for (int64_t r = 0; r < rows; ++r) {
    require(row_offset[r + 1] >= row_offset[r], caller, ": ", what,
            " row_offset must be non-decreasing, but row_offset[", r + 1, "] = ", row_offset[r + 1],
            " < row_offset[", r, "] = ", row_offset[r]);
  }
  require(row_offset.back() == static_cast<int64_t>(entries), caller, ": ", what,
          " row_offset ends at ", row_offset.back(), " but the index array holds ", entries,
          " entries");
}

// Entries of each row strictly increasing and inside [0, limit).
void check_row_entries(std::span<const int64_t> row_offset, std::span<const int32_t> entries,
                       int64_t limit, int q_blocks, const char* what, const char* caller) {
  const int64_t rows = static_cast<int64_t>(row_offset.size()) - 1;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t e = row_offset[r]; e < row_offset[r + 1]; ++e) {
      const int32_t value = entries[e];
      require(value >= 0 && value < limit, caller, ": ", what, " of head ", r / q_blocks,
              " query block ", r % q_blocks, " is ", value, ", outside [0, ", limit, ")");
      require(e == row_offset[r] || value > entries[e - 1], caller, ": ", what, "s of head ",
              r / q_blocks, " query block ", r % q_blocks, " must be sorted and unique, but ",
              entries[e - 1], " is followed by ", value);
    }
  }
}

}  // namespace

void check_problem(const AttentionProblem& problem, const char* caller) {
  require(problem.batch >= 0, caller, ": batch must be >= 0, got ", problem.batch);
  require(problem.heads > 0 && problem.heads <= (int64_t{1} << 30), caller,
          ": heads must be in [1, 2^30], got ", problem.heads);
  require(problem.head_dim > 0 && problem.head_dim <= kMaxHeadDim, caller,
          ": head_dim must be in [1, ", kMaxHeadDim, "], got ", problem.head_dim);
  require(std::isfinite(problem.scale), caller, ": softmax scale must be finite, got ",
          problem.scale);
  check_layout(problem.q_layout, "q_layout", caller);
  check_layout(problem.k_layout, "k_layout", caller);
}

void check_pointers(const AttentionProblem& problem, const void* q, const void* k, const void* v,
                    const void* out, const void* lse, const char* caller) {
  const bool any_query = problem.batch > 0 && problem.seq_q() > 0;
  const bool any_key = problem.batch > 0 && problem.seq_k() > 0;
  require(!any_query || q != nullptr, caller, ": q is null");
  require(!any_query || out != nullptr, caller, ": out is null");
  require(!any_query || lse != nullptr, caller, ": lse is null");
  require(!any_key || k != nullptr, caller, ": k is null");
  require(!any_key || v != nullptr, caller, ": v is null");
}

void check_block_csr(const AttentionProblem& problem, const BlockCsr& mask, const char* caller) {
  require(mask.heads == problem.heads, caller, ": mask has ", mask.heads,
          " heads but the problem has ", problem.heads);
  require(mask.q_blocks == problem.q_layout.blocks(), caller, ": mask has ", mask.q_blocks,
          " query blocks but q_layout has ", problem.q_layout.blocks());
  require(mask.k_blocks == problem.k_layout.blocks(), caller, ": mask has ", mask.k_blocks,
          " key blocks but k_layout has ", problem.k_layout.blocks());
  const int64_t rows = int64_t{mask.heads} * mask.q_blocks;
  require(static_cast<int64_t>(mask.kv_count.size()) == rows, caller,
          ": mask kv_count must have heads*q_blocks = ", rows, " entries, got ",
          mask.kv_count.size());
  check_row_offsets(mask.row_offset, rows, mask.kv_index.size(), "mask", caller);
  for (int64_t r = 0; r < rows; ++r) {
    require(mask.kv_count[r] == mask.row_offset[r + 1] - mask.row_offset[r], caller,
            ": mask kv_count[", r, "] = ", mask.kv_count[r], " disagrees with row_offset (",
            mask.row_offset[r + 1] - mask.row_offset[r], ")");
  }
  check_row_entries(mask.row_offset, mask.kv_index, mask.k_blocks, mask.q_blocks, "mask key block",
                    caller);
}

void check_fine_mask(const AttentionProblem& problem, const FineMask& mask, const char* caller) {
  require(mask.heads() == problem.heads, caller, ": fine mask has ", mask.heads(),
          " heads but the problem has ", problem.heads);
  require(mask.q_blocks() == problem.q_layout.blocks(), caller, ": fine mask has ", mask.q_blocks(),
          " query blocks but q_layout has ", problem.q_layout.blocks());
  const int64_t rows = int64_t{mask.heads()} * mask.q_blocks();
  check_row_offsets(mask.row_offset(), rows, mask.key_index().size(), "fine mask", caller);
  check_row_entries(mask.row_offset(), mask.key_index(), problem.seq_k(), mask.q_blocks(),
                    "fine mask key", caller);
}

}  // namespace dbsp::cpu
