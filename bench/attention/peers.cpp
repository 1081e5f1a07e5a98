// The peer-script runner (see peers.hpp).
#include "peers.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "dbsp/error.hpp"

namespace dbsp::bench {

std::map<std::string, PeerResult> run_peers(const std::vector<PeerJob>& jobs,
                                            const std::string& python, const std::string& script,
                                            const std::string& work_dir) {
  std::map<std::string, PeerResult> results;
  if (jobs.empty()) return results;
  const std::string job_file = work_dir + "/peer_jobs.txt";
  {
    std::ofstream out(job_file);
    require(static_cast<bool>(out), "cannot write the peer job file ", job_file);
    for (const PeerJob& job : jobs)
      out << job.name << ' ' << job.kind << ' ' << job.seq << ' ' << job.heads << ' '
          << job.head_dim << ' ' << job.mask_path << '\n';
  }
  for (const PeerJob& job : jobs) results[job.name].error = "no answer from the peer script";
  const std::string command = python + " " + script + " " + job_file + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    for (auto& [name, result] : results) result.error = "cannot start " + command;
    return results;
  }
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) {
    std::istringstream line(buffer);
    std::string tag, name;
    line >> tag >> name;
    if (tag == "RESULT" && results.count(name)) {
      PeerResult& result = results[name];
      line >> result.ms >> result.kept >> result.block;
      result.error.clear();
    } else if (tag == "ERROR" && results.count(name)) {
      std::string rest;
      std::getline(line, rest);
      results[name].error = rest.empty() ? "error" : rest;
      std::cerr << "peer " << name << ":" << rest << '\n';
    } else {
      std::cerr << "peers.py: " << buffer;
    }
  }
  const int status = pclose(pipe);
  if (status != 0) std::cerr << "peers.py exited with status " << status << '\n';
  return results;
}

}  // namespace dbsp::bench
