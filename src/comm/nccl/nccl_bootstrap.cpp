// Creating the NCCL world: the unique id travels through another communicator (e.g. MPI) or, for
// launchers without MPI, through a file that rank 0 writes.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "comm/nccl/nccl_check.hpp"
#include "comm/nccl/nccl_communicator.hpp"
#include "comm/poll.hpp"
#include "dbsp/communicator.hpp"

namespace dbsp {

bool nccl_available() { return true; }

int device_for_rank(int world_rank) {
  int devices = 0;
  DBSP_CUDA_RT_CHECK(cudaGetDeviceCount(&devices));
  require(devices > 0, "no CUDA device visible to rank ", world_rank);
  int local_rank = world_rank;
  for (const char* name :
       {"OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"}) {
    if (const char* value = std::getenv(name)) {
      local_rank = std::atoi(value);
      break;
    }
  }
  return local_rank % devices;
}

std::unique_ptr<Communicator> make_nccl_world(Communicator& bootstrap, int device,
                                              const CommOptions& options) {
  ncclUniqueId id{};
  if (bootstrap.rank() == 0) DBSP_NCCL_CHECK(ncclGetUniqueId(&id));
  const std::vector<ncclUniqueId> ids = bootstrap.all_gather(id, "nccl unique id broadcast");
  return std::make_unique<comm::NcclCommunicator>(ids[0], bootstrap.rank(), bootstrap.size(),
                                                  device, options);
}

std::unique_ptr<Communicator> make_nccl_world_from_file(const std::string& id_file, int rank,
                                                        int size, int device,
                                                        const CommOptions& options) {
  namespace fs = std::filesystem;
  require(size >= 1 && rank >= 0 && rank < size, "nccl: rank ", rank, " of ", size);
  ncclUniqueId id{};
  if (rank == 0) {
    // A stale file from an earlier job would hand the other ranks a dead id.
    require(!fs::exists(id_file), "nccl: unique-id file '", id_file,
            "' already exists (left from an earlier run?); remove it or pick a fresh path");
    DBSP_NCCL_CHECK(ncclGetUniqueId(&id));
    const std::string partial = id_file + ".partial";
    {
      std::ofstream out(partial, std::ios::binary);
      out.write(id.internal, sizeof(id.internal));
      require(out.good(), "nccl: cannot write the unique-id file '", partial, "'");
    }
    fs::rename(partial, id_file);  // atomic: readers never see half an id
  } else {
    const bool found =
        comm::poll_until(options.timeout_seconds, [&] { return fs::exists(id_file); });
    require(found, "nccl: rank ", rank, " waited ", options.timeout_seconds,
            " s for the unique-id file '", id_file, "' that rank 0 writes");
    std::ifstream in(id_file, std::ios::binary);
    in.read(id.internal, sizeof(id.internal));
    require(in.gcount() == static_cast<std::streamsize>(sizeof(id.internal)),
            "nccl: unique-id file '", id_file, "' holds ", in.gcount(), " bytes, expected ",
            sizeof(id.internal));
  }
  return std::make_unique<comm::NcclCommunicator>(id, rank, size, device, options);
}

}  // namespace dbsp
