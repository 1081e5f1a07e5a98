// Mask sources shared by the plan and simulate subcommands.
#include "mask_source.hpp"

#include "dbsp/error.hpp"

namespace dbsp::cli {

void MaskSourceOptions::add_to(CLI::App& command) {
  auto* w = command.add_option("--workload", workload, "synthetic workload preset")
                ->check(CLI::IsMember(model_preset_names()));
  auto* m = command.add_option("--mask", mask_file, ".npy or .safetensors block mask")
                ->check(CLI::ExistingFile);
  w->excludes(m);
  m->excludes(w);
  command.add_option("--seed", seed, "workload seed")->capture_default_str();
  command.add_option("--block", block, "block size in tokens")->capture_default_str();
}

MaskSource::MaskSource(const MaskSourceOptions& options) {
  require(!options.workload.empty() || !options.mask_file.empty(),
          "give a mask source: --workload NAME or --mask FILE");
  if (!options.mask_file.empty()) {
    MaskFileOptions file_options;
    file_options.block_q = file_options.block_k = options.block;
    series_ = read_mask_file(options.mask_file, file_options);
    steps_ = series_->steps;
    layers_ = series_->layers;
    name_ = options.mask_file;
  } else {
    workload_ = std::make_unique<SyntheticWorkload>(model_preset(options.workload), options.seed,
                                                    options.block);
    steps_ = workload_->shape().steps;
    layers_ = workload_->shape().layers;
    name_ = options.workload;
  }
}

BlockMask MaskSource::mask(int step, int layer) const {
  require(step >= 0 && step < steps_ && layer >= 0 && layer < layers_, "mask (step ", step,
          ", layer ", layer, ") outside ", steps_, " steps x ", layers_, " layers of ", name_);
  if (series_) return series_->at(step, layer);
  return workload_->block_mask(step, layer);
}

}  // namespace dbsp::cli
