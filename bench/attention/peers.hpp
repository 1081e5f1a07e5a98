// Runs the peer script (peers.py: cuDNN SDPA and FlexAttention through PyTorch) on a job list
// and collects its results by job name.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace dbsp::bench {

struct PeerJob {
  std::string name;
  std::string kind;  // "cudnn" or "flex"
  long long seq = 0;
  int heads = 0;
  int head_dim = 0;
  std::string mask_path;  // flex: uint8 [heads, q_blocks, k_blocks] .npy
};

struct PeerResult {
  double ms = 0;
  double kept = 0;  // kept share of blocks (flex), 1 for dense
  int block = 0;    // flex block size used (64 or 128), 0 for dense
  std::string error;
  bool ok() const { return error.empty() && ms > 0; }
};

// Writes the job file into work_dir, runs `python script jobfile`, echoes the script's other
// output to stderr. A missing Python or PyTorch gives errors per job, not an exception.
std::map<std::string, PeerResult> run_peers(const std::vector<PeerJob>& jobs,
                                            const std::string& python, const std::string& script,
                                            const std::string& work_dir);

}  // namespace dbsp::bench
