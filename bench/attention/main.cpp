// bench_attention: in one run, checks every kernel variant against the float64 CPU oracle, times
// dense, block-sparse and fine-grained (FG-Attn) attention at several densities on video-DiT
// shapes with structured (synthetic workload) and uniform random masks, times the peers (cuDNN
// SDPA dense, FlexAttention with the same block mask) through peers.py, and prints one table.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_masks.hpp"
#include "dbsp/block_mask.hpp"
#include "dbsp/cuda_attention.hpp"
#include "dbsp/mask_io.hpp"
#include "dbsp/workload.hpp"
#include "device_data.hpp"
#include "equal_mass.hpp"
#include "estimate_steps.hpp"
#include "kernels/cuda/common/cuda_check.hpp"
#include "kernels/cuda/common/device_buffer.hpp"
#include "peers.hpp"
#include "timing.hpp"
#include "variant_check.hpp"

namespace dbsp::bench {
namespace {

using cuda::detail::DeviceBuffer;

struct Options {
  std::vector<std::string> shapes{"wan2.1-480p", "wan2.1-720p", "cogvideox1.5"};
  std::vector<double> densities{0.05, 0.10, 0.25, 0.50};
  std::vector<std::string> sources{"structured", "uniform"};
  std::vector<std::string> kernels{"ws", "wgmma", "mma_sync"};
  int reps = 5;
  bool peers = true;
  std::string python = "python3";
  std::string peer_script = "bench/attention/peers.py";
  std::string work_dir = "/tmp/dbsp_bench_attention";
  std::string csv;
  uint64_t seed = 2026;
  std::string equal_mass_shape = "wan2.1-480p";  // "" skips the experiment
  double equal_mass_target = 0.95;
};

struct Case {
  std::string source;
  double target = 0;
  BlockMask mask;       // block-sparse variant
  BlockMask fine_base;  // fine variant: keys thinned by half from this mask (2x target)
  std::string name(const std::string& shape) const {
    std::ostringstream out;
    out << shape << "/" << source << "/" << target;
    return out.str();
  }
};

struct Row {
  std::string shape, source, variant, peer;
  double density = 0, ours_ms = 0, peer_ms = 0, tflops = 0, of_cudnn = 0, vs_dense = 0;
  std::string check;
  std::string peer_key;  // job name of the Flex peer; filled in after the peers ran
};
cuda::AttentionKernel kernel_named(const std::string& name) {
  // wsp: the warp-specialised kernel with adjacent rows paired (SparseAttention::pair_query_rows).
  if (name == "ws" || name == "wsp") return cuda::AttentionKernel::warp_specialized;
  if (name == "wgmma") return cuda::AttentionKernel::wgmma;
  if (name == "mma_sync") return cuda::AttentionKernel::mma_sync;
  fail("unknown kernel family '", name, "' (expected ws, wsp, wgmma or mma_sync)");
}
std::string short_name(const std::string& kernel) {
  if (kernel == "ws" || kernel == "wsp") return kernel;
  return kernel == "wgmma" ? "wg" : "mma";
}

Row make_row(const std::string& shape, const std::string& source, const std::string& variant,
             const std::string& peer = "") {
  Row row;
  row.shape = shape;
  row.source = source;
  row.variant = variant;
  row.peer = peer;
  return row;
}

// Sum over rows of (query tokens x kept key tokens): the scores a kernel must compute.
double kept_scores(const BlockMask& mask) {
  const MaskGeometry& g = mask.geometry();
  auto size = [](int64_t seq, int block, int index) {
    return std::min<int64_t>(block, seq - int64_t{index} * block);
  };
  double total = 0;
  for (int h = 0; h < mask.heads(); ++h)
    for (int i = 0; i < mask.q_blocks(); ++i) {
      int64_t keys = 0;
      for (int j = 0; j < mask.k_blocks(); ++j)
        if (mask.get(h, i, j)) keys += size(g.seq_k, g.block_k, j);
      total += double(size(g.seq_q, g.block_q, i)) * double(keys);
    }
  return total;
}

double kept_scores(const DeviceKeyLists& keys, int heads, int q_blocks, int64_t seq_q) {
  double total = 0;
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < q_blocks; ++i) {
      const int row = h * q_blocks + i;
      const int64_t rows = std::min<int64_t>(64, seq_q - int64_t{i} * 64);
      total += double(rows) * double(keys.host_row_offset[row + 1] - keys.host_row_offset[row]);
    }
  return total;
}

struct DeviceBlockLists {
  DeviceBuffer count, offset, index;
  cuda::DeviceMask mask;
};
DeviceBlockLists upload(const BlockMask& mask) {
  const BlockCsr csr = mask.to_csr();
  DeviceBlockLists lists;
  lists.count = DeviceBuffer(csr.kv_count.size() * 4);
  lists.offset = DeviceBuffer(csr.row_offset.size() * 8);
  lists.index = DeviceBuffer(std::max<size_t>(csr.kv_index.size(), 1) * 4);
  DBSP_CUDA_CHECK(cudaMemcpy(lists.count.get(), csr.kv_count.data(), lists.count.bytes(),
                             cudaMemcpyHostToDevice));
  DBSP_CUDA_CHECK(cudaMemcpy(lists.offset.get(), csr.row_offset.data(), lists.offset.bytes(),
                             cudaMemcpyHostToDevice));
  DBSP_CUDA_CHECK(cudaMemcpy(lists.index.get(), csr.kv_index.data(), csr.kv_index.size() * 4,
                             cudaMemcpyHostToDevice));
  lists.mask.q_blocks = mask.q_blocks();
  lists.mask.block_q = mask.geometry().block_q;
  lists.mask.block_k = mask.geometry().block_k;
  lists.mask.kv_count = lists.count.get<int32_t>();
  lists.mask.block_row_offset = lists.offset.get<int64_t>();
  lists.mask.kv_index = lists.index.get<int32_t>();
  return lists;
}

// Peer columns: Flex for block rows, cuDNN for dense rows; %cuDNN and x_dense for every row.
void fill_peers(std::vector<Row>& rows, const std::map<std::string, PeerResult>& peers) {
  const auto find = [&](const std::string& key) -> const PeerResult* {
    const auto it = peers.find(key);
    return it != peers.end() && it->second.ok() ? &it->second : nullptr;
  };
  for (Row& row : rows) {
    const PeerResult* cudnn = find(row.shape + "/dense");
    if (cudnn != nullptr) {
      const double cudnn_tflops = row.tflops * row.ours_ms / row.density / cudnn->ms;
      row.of_cudnn = 100 * row.tflops / cudnn_tflops;
      row.vs_dense = cudnn->ms / row.ours_ms;
    }
    if (row.variant.rfind("dense", 0) == 0 && cudnn != nullptr) row.peer_ms = cudnn->ms;
    if (row.variant.rfind("block", 0) == 0) {
      const PeerResult* flex = find(row.peer_key);
      row.peer = flex != nullptr ? "Flex-" + std::to_string(flex->block) : "Flex (n/a)";
      row.peer_ms = flex != nullptr ? flex->ms : 0;
    }
  }
}

void print_table(const std::vector<Row>& rows, std::ostream& out) {
  char line[512];
  std::snprintf(line, sizeof line, "%-13s %-10s %-9s %7s %9s %-22s %9s %6s %8s %8s %7s  %s\n",
                "shape", "mask", "kernel", "density", "ours_ms", "peer", "peer_ms", "ratio",
                "TFLOP/s", "%cuDNN", "x_dense", "check");
  out << line;
  for (const Row& r : rows) {
    std::snprintf(line, sizeof line,
                  "%-13s %-10s %-9s %6.2f%% %9.3f %-22s %9.3f %6.2f %8.1f %7.1f%% %7.2f  %s\n",
                  r.shape.c_str(), r.source.c_str(), r.variant.c_str(), 100 * r.density, r.ours_ms,
                  r.peer.c_str(), r.peer_ms, r.peer_ms > 0 ? r.peer_ms / r.ours_ms : 0, r.tflops,
                  r.of_cudnn, r.vs_dense, r.check.c_str());
    out << line;
  }
}

void write_csv(const std::vector<Row>& rows, const std::string& path) {
  std::ofstream out(path);
  out << "shape,mask,kernel,density,ours_ms,peer,peer_ms,tflops,pct_cudnn,x_dense,check\n";
  for (const Row& r : rows)
    out << r.shape << ',' << r.source << ',' << r.variant << ',' << r.density << ',' << r.ours_ms
        << ',' << r.peer << ',' << r.peer_ms << ',' << r.tflops << ',' << r.of_cudnn << ','
        << r.vs_dense << ',' << r.check << '\n';
}

int run(const Options& options) {
  cudaDeviceProp props{};
  DBSP_CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
  std::cout << "# device: " << props.name << ", " << props.multiProcessorCount << " SMs, L2 "
            << props.l2CacheSize / (1 << 20) << " MiB; bf16; reps " << options.reps
            << " (median)\n";
  std::filesystem::create_directories(options.work_dir);

  // Masks first (host); the peer script runs after our kernels, once our buffers are freed, so a
  // slow or failing PyTorch never costs our figures (they are printed before it starts).
  std::map<std::string, std::vector<Case>> cases;
  std::vector<PeerJob> jobs;
  for (const std::string& shape_name : options.shapes) {
    const ModelShape& shape = model_preset(shape_name);
    const SyntheticWorkload workload(shape, options.seed, 64);
    const BlockMask synthetic = workload.block_mask(0, 0);
    const MaskGeometry geometry = workload.geometry();
    jobs.push_back(
        {shape_name + "/dense", "cudnn", shape.tokens(), shape.heads, shape.head_dim, ""});
    for (const std::string& source : options.sources)
      for (double density : options.densities) {
        Case c;
        c.source = source;
        c.target = density;
        const uint64_t seed = options.seed + static_cast<uint64_t>(density * 1000);
        const double fine_base = std::min(1.0, 2 * density);
        if (source == "structured") {
          c.mask = structured_mask(synthetic, density, seed);
          c.fine_base = structured_mask(synthetic, fine_base, seed + 1);
        } else if (source == "twins") {
          c.mask = with_twin_rows(structured_mask(synthetic, density, seed));
          c.fine_base = with_twin_rows(structured_mask(synthetic, fine_base, seed + 1));
        } else {
          c.mask = uniform_mask(shape.heads, geometry, density, seed);
          c.fine_base = uniform_mask(shape.heads, geometry, fine_base, seed + 1);
        }
        const std::string path = options.work_dir + "/" + shape_name + "_" + source + "_" +
                                 std::to_string(static_cast<int>(density * 100)) + ".npy";
        if (options.peers) {
          MaskSeries series;
          series.masks.push_back(c.mask);
          write_npy_mask(path, series);
          jobs.push_back(
              {c.name(shape_name), "flex", shape.tokens(), shape.heads, shape.head_dim, path});
        }
        cases[shape_name].push_back(std::move(c));
      }
  }

  // Checks: each variant on fresh random inputs, per head dim benchmarked.
  std::map<std::string, std::string> checks;
  for (const std::string& shape_name : options.shapes) {
    const int head_dim = model_preset(shape_name).head_dim;
    for (const std::string& kernel : options.kernels)
      for (Variant v : {Variant::dense, Variant::block_sparse, Variant::fine}) {
        const std::string key = std::string(to_string(v)) + std::to_string(head_dim) + kernel;
        if (!checks.count(key))
          checks[key] =
              check_variant(v, head_dim, 0.25, options.seed + head_dim, kernel_named(kernel))
                  .describe();
      }
  }

  std::vector<Row> rows;
  for (const std::string& shape_name : options.shapes) {
    const ModelShape& shape = model_preset(shape_name);
    cuda::AttentionShape attention_shape;
    attention_shape.seq_q = attention_shape.seq_k = shape.tokens();
    attention_shape.heads = shape.heads;
    attention_shape.head_dim = shape.head_dim;
    const int64_t elements = shape.tokens() * shape.heads * shape.head_dim;
    DeviceBuffer q(elements * 2), k(elements * 2), v(elements * 2), out(elements * 2),
        lse(shape.tokens() * shape.heads * 4);
    fill_random(cuda::DType::bf16, q.get(), elements, options.seed + 11);
    fill_random(cuda::DType::bf16, k.get(), elements, options.seed + 12);
    fill_random(cuda::DType::bf16, v.get(), elements, options.seed + 13);
    std::vector<std::pair<std::string, cuda::SparseAttention>> families;
    for (const std::string& kernel : options.kernels) {
      families.emplace_back(kernel,
                            cuda::SparseAttention(attention_shape, 64, 0, kernel_named(kernel)));
      if (kernel == "wsp") families.back().second.pair_query_rows(true);
    }
    for (const auto& [kernel, attention] : families)
      std::cout << "# " << shape_name << " " << kernel << ": " << attention.ctas_per_sm()
                << " CTAs per SM" << std::endl;
    const double full_scores = double(shape.tokens()) * double(shape.tokens()) * shape.heads;
    const auto flop = [&](double scores) { return 4.0 * scores * shape.head_dim; };
    const auto poison_then_check = [&](const std::string& variant_check, auto&& launch) {
      DBSP_CUDA_CHECK(cudaMemset(out.get(), 0xff, out.bytes()));
      launch();
      DBSP_CUDA_CHECK(cudaDeviceSynchronize());
      const int64_t bad = count_nonfinite(cuda::DType::bf16, out.get(), elements);
      return bad == 0 ? variant_check : variant_check + ", " + std::to_string(bad) + " non-finite";
    };
    const std::string dim = std::to_string(shape.head_dim);
    // Times one variant of every kernel family on one mask; returns the rows (family order).
    const auto time_mask = [&](const cuda::DeviceMask& mask, const std::string& source,
                               const std::string& variant, double density) {
      std::vector<Row> timed;
      for (auto& [kernel, attention] : families) {
        const double plan_ms = median_ms(options.reps, [&] { attention.plan(mask, nullptr); });
        Row row = make_row(shape_name, source, variant + ":" + short_name(kernel));
        row.density = density;
        const auto launch = [&] {
          attention.run(mask, q.get(), k.get(), v.get(), out.get(), lse.get<float>(), nullptr);
        };
        row.check = poison_then_check(checks[variant + dim + kernel], launch);
        row.ours_ms = median_ms(options.reps, launch);
        row.tflops = flop(density * full_scores) / row.ours_ms * 1e-9;
        std::cout << "# " << shape_name << " " << source << " " << variant << " " << kernel
                  << " density " << density << ": " << row.ours_ms << " ms (plan " << plan_ms
                  << " ms)" << std::endl;
        timed.push_back(row);
      }
      return timed;
    };

    cuda::DeviceMask dense;
    dense.dense = true;
    for (Row& row : time_mask(dense, "full", "dense", 1.0)) {
      row.peer = "cuDNN-SDPA";
      row.peer_key = shape_name + "/dense";
      rows.push_back(row);
    }

    double block_ms_at_10 = 0;
    for (const Case& c : cases[shape_name]) {
      const std::string peer_name = c.name(shape_name);
      DeviceBlockLists lists = upload(c.mask);
      const std::vector<Row> blocks =
          time_mask(lists.mask, c.source, "block", kept_scores(c.mask) / full_scores);
      for (Row row : blocks) {
        row.peer_key = peer_name;
        rows.push_back(row);
      }
      if (c.source == options.sources.front() && c.target == 0.10)
        block_ms_at_10 = blocks.front().ours_ms;

      // Fine: keys of a mask at twice the density, each kept with probability 1/2.
      DeviceBlockLists base = upload(c.fine_base);
      DeviceKeyLists keys;
      thin_blocks_to_keys(base.mask.kv_count, base.mask.block_row_offset, base.mask.kv_index,
                          shape.heads * c.fine_base.q_blocks(), 64, shape.tokens(), 0.5,
                          options.seed + 7, keys);
      cuda::DeviceMask fine;
      fine.q_blocks = c.fine_base.q_blocks();
      fine.key_row_offset = keys.row_offset;
      fine.key_index = keys.key_index;
      const double fine_density =
          kept_scores(keys, shape.heads, c.fine_base.q_blocks(), shape.tokens()) / full_scores;
      const std::vector<Row> fines = time_mask(fine, c.source, "fine", fine_density);
      for (size_t i = 0; i < fines.size(); ++i) {
        Row row = fines[i];
        row.peer = "block:" + short_name(families[i].first) + "@same-work";
        row.peer_ms = blocks[i].ours_ms * row.density / blocks[i].density;
        rows.push_back(row);
      }
      DBSP_CUDA_CHECK(cudaDeviceSynchronize());
    }

    // Mask estimation on the device (pooling, scores, top-p, CSR), tau 0.9.
    cuda::EstimateConfig config;
    cuda::MaskEstimator estimator(shape.tokens(), shape.tokens(), shape.heads, shape.head_dim,
                                  cuda::DType::bf16, config);
    const double estimate_ms =
        median_ms(options.reps, [&] { estimator.estimate(q.get(), k.get(), nullptr); });
    const EstimateSteps steps = time_estimate_steps(q.get(), k.get(), shape.tokens(), shape.heads,
                                                    shape.head_dim, options.reps);
    std::cout << "# " << shape_name << " mask estimation steps: pool Q+K " << steps.pool_ms
              << " ms, scores " << steps.scores_ms << " ms, top-p " << steps.top_p_ms << " ms\n";
    std::cout << "# " << shape_name << " mask estimation: " << estimate_ms << " ms";
    if (block_ms_at_10 > 0)
      std::cout << " = " << 100 * estimate_ms / block_ms_at_10
                << "% of the block-sparse kernel at 10% density";
    std::cout << std::endl;
  }

  std::cout << "\n# ours (before peers):\n";
  print_table(rows, std::cout);
  if (options.peers) {
    std::cout << "# running peers (" << jobs.size() << " jobs)..." << std::endl;
    const std::map<std::string, PeerResult> peers =
        run_peers(jobs, options.python, options.peer_script, options.work_dir);
    fill_peers(rows, peers);
    for (const auto& [name, result] : peers)
      if (!result.ok()) std::cout << "# peer " << name << " failed: " << result.error << "\n";
    std::cout << "\n";
    print_table(rows, std::cout);
  }
  std::cout << "# ratio = peer_ms / ours_ms (>1: ours faster). fine rows: peer = our block "
               "kernel scaled to the fine row's kept work. x_dense = cuDNN dense ms / ours ms.\n";
  if (!options.csv.empty()) write_csv(rows, options.csv);
  if (!options.equal_mass_shape.empty()) try {
      const EqualMassResult r =
          equal_mass_experiment(options.equal_mass_shape, options.equal_mass_target, options.reps,
                                options.seed, kernel_named(options.kernels.front()));
      const auto side = [](const char* name, const EqualMassSide& s) {
        std::printf(
            "#   %-16s tau %.4f  retained %.4f  kept %6.2f%%  estimate %8.3f ms  kernel %8.3f ms\n",
            name, s.tau, s.mass, 100 * s.density, s.estimate_ms, s.kernel_ms);
      };
      std::printf(
          "# equal retained softmax mass (%s, synthetic Q/K step 0 layer 0, target %.0f%% of "
          "each query row's true mass, mean over rows; %s kernel):\n",
          r.shape.c_str(), 100 * r.target, options.kernels.front().c_str());
      side("block 64x64", r.block);
      side("fine 64x1", r.fine);
      std::printf(
          "#   fine / block: kept work %.2fx, kernel time %.2fx (block / fine = %.2fx faster)\n",
          r.fine.density / r.block.density, r.fine.kernel_ms / r.block.kernel_ms,
          r.block.kernel_ms / r.fine.kernel_ms);
      std::cout << std::flush;
    } catch (const std::exception& error) {
      std::cout << "# equal-mass experiment failed: " << error.what() << std::endl;
    }
  for (const Row& r : rows)
    if (r.check.rfind("ok", 0) != 0) return 1;
  return 0;
}

}  // namespace
}  // namespace dbsp::bench

int main(int argc, char** argv) {
  dbsp::bench::Options options;
  CLI::App app{"Attention kernels vs cuDNN SDPA and FlexAttention, with answer checks"};
  app.add_option("--shapes", options.shapes,
                 "model presets (wan2.1-480p wan2.1-720p cogvideox1.5)");
  app.add_option("--densities", options.densities, "target block densities");
  app.add_option("--sources", options.sources,
                 "mask sources: structured, uniform, twins (structured with row 2i + 1 = row 2i)");
  app.add_option("--kernels", options.kernels,
                 "kernel families: ws (warp-specialised), wsp (ws with paired rows), wgmma, "
                 "mma_sync");
  app.add_option("--reps", options.reps, "timed repetitions (median)");
  app.add_flag("!--no-peers", options.peers, "skip the PyTorch peers");
  app.add_option("--python", options.python, "Python with PyTorch");
  app.add_option("--peer-script", options.peer_script, "path of peers.py");
  app.add_option("--work-dir", options.work_dir, "scratch folder for mask files");
  app.add_option("--csv", options.csv, "also write the table as CSV");
  app.add_option("--seed", options.seed, "seed of masks and inputs");
  app.add_option("--equal-mass-shape", options.equal_mass_shape,
                 "shape of the fine-vs-block equal-mass experiment (\"\" skips it)");
  app.add_option("--equal-mass-target", options.equal_mass_target, "retained mass share");
  CLI11_PARSE(app, argc, argv);
  try {
    return dbsp::bench::run(options);
  } catch (const std::exception& error) {
    std::cerr << "bench_attention: " << error.what() << '\n';
    return 2;
  }
}
