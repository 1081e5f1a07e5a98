// estimate_mask_sharded_device_bf16 (dbsp/sp_estimate.hpp): sharded mask estimation on the GPU over
// NCCL. Skeleton: the implementation follows.
#include "dbsp/error.hpp"
#include "dbsp/sp_estimate.hpp"

namespace dbsp {

BlockMask estimate_mask_sharded_device_bf16(Communicator&, const SpProblem&, const void*,
                                            const void*, const EstimateOptions&) {
  fail("estimate_mask_sharded_device_bf16: not implemented yet");
}

}  // namespace dbsp
