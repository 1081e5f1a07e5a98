// Where the CLI's masks come from: a synthetic workload (--workload) or a mask file (--mask).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "dbsp/block_mask.hpp"
#include "dbsp/mask_io.hpp"
#include "dbsp/workload.hpp"

namespace dbsp::cli {

struct MaskSourceOptions {
  std::string workload;
  std::string mask_file;
  uint64_t seed = 0;
  int block = 64;

  // Adds --workload / --mask / --seed / --block to a subcommand (exactly one source required).
  void add_to(CLI::App& command);
};

class MaskSource {
 public:
  explicit MaskSource(const MaskSourceOptions& options);

  int steps() const { return steps_; }
  int layers() const { return layers_; }
  bool from_file() const { return series_.has_value(); }
  std::string name() const { return name_; }
  // The mask of (step, layer); synthetic masks are generated on demand.
  BlockMask mask(int step, int layer) const;
  // The synthetic workload behind the masks (its Q and K too); null for a mask file.
  const SyntheticWorkload* workload() const { return workload_.get(); }

 private:
  std::string name_;
  int steps_ = 1;
  int layers_ = 1;
  std::optional<MaskSeries> series_;
  std::unique_ptr<SyntheticWorkload> workload_;
};

}  // namespace dbsp::cli
