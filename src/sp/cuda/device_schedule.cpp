// Building a layer's device schedule on the host.
#include "sp/cuda/device_schedule.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "sp/head_chunks.hpp"
#include "sp/routing.hpp"

namespace dbsp::sp::device {

namespace {

// Covering blocks of rows [first_row, end_row) of a step's local fine mask: a row's keys are
// sorted tokens of the step buffer, whose blocks are consecutive token ranges of `key_layout`.
int64_t fine_covering_blocks(const FineMask& local, int64_t first_row, int64_t end_row,
                             const BlockLayout& key_layout) {
  const std::vector<int64_t>& offset = local.row_offset();
  const std::vector<int32_t>& keys = local.key_index();
  int64_t blocks = 0;
  for (int64_t r = first_row; r < end_row; ++r) {
    int64_t block_end = -1;  // end token of the last block counted in this row
    for (int64_t e = offset[r]; e < offset[r + 1]; ++e) {
      if (keys[e] < block_end) continue;
      const auto next = std::upper_bound(key_layout.start.begin(), key_layout.start.end(),
                                         static_cast<int64_t>(keys[e]));
      block_end = next == key_layout.start.end() ? key_layout.tokens() : *next;
      ++blocks;
    }
  }
  return blocks;
}

// Everything after the host schedule (sched.host, built by the caller from a block mask or a fine
// mask): copy lists, peer ranges, kernels and the table. `block_mask` is null for a fine layer,
// whose step masks are the host schedule's fine_step_masks.
void build_from_host_schedule(DeviceSchedule& sched, const SpProblem& problem,
                              const BlockMask* block_mask, const Partition& partition, int rank,
                              int ranks, const SpOptions& options, KernelCache& kernels,
                              PinnedMemory& pinned) {
  const int R = partition.grid.ring;
  const int64_t D = problem.head_dim;
  const int64_t H = problem.heads;
  const bool fine = block_mask == nullptr;
  const sp::LayerRouting& route = sched.host.route;
  const int64_t Hg = static_cast<int64_t>(route.heads.size());
  const int64_t tq = route.q_local.tokens(), tk = route.k_local.tokens();
  // Head chunks (pure Ulysses grids only: ring steps address the whole local layout).
  const int chunks = layer_head_chunks(partition.grid, options.head_chunks);
  sched.local_is_input = chunks == 1 && local_is_input(route, static_cast<int>(H));
  std::vector<ChunkCopies> copies = build_chunk_copies(route, partition, rank, ranks, chunks, H, D);
  sched.chunks.assign(static_cast<size_t>(chunks), ChunkPhases{});
  for (int c = 0; c < chunks; ++c) {
    ChunkPhases& chunk = sched.chunks[c];
    static_cast<ChunkCopies&>(chunk) = std::move(copies[c]);
    sched.in_send_bytes = std::max(sched.in_send_bytes, staging_bytes(chunk.in_sends));
    sched.in_recv_bytes = std::max(sched.in_recv_bytes, staging_bytes(chunk.in_recvs));
    sched.out_send_bytes = std::max(sched.out_send_bytes, staging_bytes(chunk.out_sends));
    sched.out_recv_bytes = std::max(sched.out_recv_bytes, staging_bytes(chunk.out_recvs));
    if (chunks > 1 && sched.host.step_kept[0] > 0) {
      // The chunk's rows of the step mask are contiguous (head-major rows).
      const size_t rows_per_head = route.q_blocks.size();
      const size_t first_row = chunk.first_head * rows_per_head;
      const size_t end_row = (chunk.first_head + chunk.heads) * rows_per_head;
      if (fine) {
        chunk.kept =
            fine_covering_blocks(sched.host.fine_step_masks[0], static_cast<int64_t>(first_row),
                                 static_cast<int64_t>(end_row), route.steps[0].key_layout);
      } else {
        const std::vector<int64_t>& offsets = sched.host.step_masks[0].row_offset;
        chunk.kept = offsets[end_row] - offsets[first_row];
      }
      if (chunk.kept > 0) {
        const cuda::AttentionShape shape{
            1, tq, tk, chunk.heads, static_cast<int>(D), cuda::DType::bf16, problem.scale};
        // Neighbouring chunks may run at once (the executor's two compute streams).
        chunk.kernel = &kernels.get(shape, problem.geometry.block_q,
                                    static_cast<int>(route.q_blocks.size()), c % 2);
      }
    }
  }
  // The rank's last chunk kernel may split its long rows. Kernel objects are shared between
  // chunks of one shape, so the executor sets the choice before each plan; the split's scratch
  // is allocated here, outside the queued layer.
  for (auto chunk = sched.chunks.rbegin(); chunk != sched.chunks.rend(); ++chunk) {
    if (chunk->kernel == nullptr) continue;
    chunk->split_rows = sp::split_chunk_rows(options, static_cast<size_t>(chunk->heads), true);
    if (chunk->split_rows) chunk->kernel->split_long_rows(true, options.min_split_blocks);
    break;
  }

  std::vector<StepCopies> step_copies = build_step_copies(route, D);
  sched.steps.assign(static_cast<size_t>(R), DeviceStep{});
  for (int t = 0; t < R; ++t) {
    const sp::RingStep& rs = route.steps[t];
    DeviceStep& step = sched.steps[t];
    static_cast<StepCopies&>(step) = std::move(step_copies[t]);
    if (sched.host.step_kept[t] > 0) {
      const cuda::AttentionShape shape{1,
                                       tq,
                                       rs.key_layout.tokens(),
                                       static_cast<int>(Hg),
                                       static_cast<int>(D),
                                       cuda::DType::bf16,
                                       problem.scale};
      step.kernel =
          &kernels.get(shape, problem.geometry.block_q, static_cast<int>(route.q_blocks.size()));
      // The split's scratch, allocated here rather than in the queued layer (as for the chunks).
      // Key lists (fine layers) never split.
      step.split_rows =
          !fine && sp::split_step_rows(options, static_cast<size_t>(Hg), rs.key_blocks.size());
      if (step.split_rows) step.kernel->split_long_rows(true, options.min_split_blocks);
    }
    if (t == 0) continue;
    sched.step_tokens = std::max(sched.step_tokens, rs.key_layout.tokens());
    sched.ring_send_bytes = std::max(sched.ring_send_bytes, staging_bytes(step.sends));
    sched.ring_recv_bytes = std::max(sched.ring_recv_bytes, staging_bytes(step.recvs));
  }

  UploadTable table(pinned);
  for (ChunkPhases& chunk : sched.chunks) {
    for (CopyList* list : chunk.lists()) {
      list->table_offset = table.add(std::span<const RowCopy>(list->copies));
    }
  }
  const int words = fine ? 0 : block_mask->words_per_row();
  sched.row_words = words;
  if (!fine && sched.host.computing_steps > 0) {
    // The rank's mask rows, straight into the table: one copy per run of consecutive query
    // blocks (a whole head's rows at once when the rank holds its shard as it is).
    const auto& rows = route.q_blocks;
    sched.row_bits_offset = table.reserve<uint64_t>(static_cast<int64_t>(route.heads.size()) *
                                                    static_cast<int64_t>(rows.size()) * words);
    auto* into = reinterpret_cast<uint64_t*>(table.data() + sched.row_bits_offset);
    for (size_t hl = 0; hl < route.heads.size(); ++hl) {
      uint64_t* head_rows = into;
      for (size_t i = 0; i < rows.size();) {
        size_t end = i + 1;
        while (end < rows.size() && rows[end] == rows[end - 1] + 1) ++end;
        const size_t words_in_run = (end - i) * static_cast<size_t>(words);
        std::memcpy(into, block_mask->row_bits(route.heads[hl], rows[i]),
                    words_in_run * sizeof(uint64_t));
        into += words_in_run;
        i = end;
      }
      // Rows of a shared head that the other group computes are emptied (no block listed).
      const BlockRange computed = route.head_rows[hl];
      std::fill(head_rows, head_rows + static_cast<size_t>(computed.begin) * words, uint64_t{0});
      std::fill(head_rows + static_cast<size_t>(computed.end) * words, into, uint64_t{0});
    }
  }
  int64_t index_count = 0;
  for (int t = 0; t < R; ++t) {
    DeviceStep& step = sched.steps[t];
    step.pack.table_offset = table.add(std::span<const RowCopy>(step.pack.copies));
    step.unpack.table_offset = table.add(std::span<const RowCopy>(step.unpack.copies));
    if (sched.host.step_kept[t] == 0) continue;
    if (fine) {
      step.q_start_offset = table.add(std::span<const int64_t>(route.q_local.start));
      const FineMask& local = sched.host.fine_step_masks[t];
      step.key_row_offset_offset = table.add(std::span<const int64_t>(local.row_offset()));
      const std::vector<int32_t>& keys = local.key_index();
      step.key_index_offset = sched.key_list_bytes;
      const auto bytes = static_cast<int64_t>(keys.size() * sizeof(int32_t));
      sched.key_list_uploads.push_back({keys.data(), sched.key_list_bytes, bytes});
      sched.key_list_bytes += (bytes + 15) / 16 * 16;
      continue;
    }
    const BlockCsr& csr = sched.host.step_masks[t];
    step.count_offset = table.add(std::span<const int32_t>(csr.kv_count));
    step.row_offset_offset = table.add(std::span<const int64_t>(csr.row_offset));
    std::vector<uint64_t> wanted(static_cast<size_t>(words), 0);
    for (int j : route.steps[t].key_blocks) wanted[j >> 6] |= uint64_t{1} << (j & 63);
    std::vector<int32_t> wanted_before(static_cast<size_t>(words), 0);
    for (int w = 1; w < words; ++w) {
      wanted_before[w] = wanted_before[w - 1] + std::popcount(wanted[w - 1]);
    }
    step.wanted_offset = table.add(std::span<const uint64_t>(wanted));
    step.wanted_before_offset = table.add(std::span<const int32_t>(wanted_before));
    step.index_at = index_count;
    index_count += sched.host.step_kept[t];
    step.q_start_offset = table.add(std::span<const int64_t>(route.q_local.start));
    step.k_start_offset = table.add(std::span<const int64_t>(route.steps[t].key_layout.start));
  }
  sched.indices.ensure(std::max<int64_t>(1, index_count) * 4);
  sched.key_lists.ensure(std::max<int64_t>(16, sched.key_list_bytes));
  sched.table_bytes = std::max<int64_t>(16, table.size());
  sched.table.ensure(sched.table_bytes);
  pinned.grow(sched.table_bytes, table.size());
}

}  // namespace

void build_device_schedule(DeviceSchedule& sched, const SpProblem& problem, const BlockMask& mask,
                           const Partition& partition, int rank, int ranks,
                           const SpOptions& options, KernelCache& kernels, PinnedMemory& pinned,
                           bool host_prebuilt) {
  if (!host_prebuilt) {
    sched.host = sp::build_schedule(mask, partition, problem, rank, options.mask_aware,
                                    /*host_indices=*/false);
  }
  build_from_host_schedule(sched, problem, &mask, partition, rank, ranks, options, kernels, pinned);
}

void build_device_schedule(DeviceSchedule& sched, const SpProblem& problem, const FineMask& mask,
                           const Partition& partition, int rank, int ranks,
                           const SpOptions& options, KernelCache& kernels, PinnedMemory& pinned,
                           bool host_prebuilt) {
  // Into the kept host schedule: its step masks' memory serves again when recycle() keeps it.
  if (!host_prebuilt) {
    sp::build_fine_schedule(sched.host, mask, partition, problem, rank, options.mask_aware);
  }
  build_from_host_schedule(sched, problem, /*block_mask=*/nullptr, partition, rank, ranks, options,
                           kernels, pinned);
}

}  // namespace dbsp::sp::device
