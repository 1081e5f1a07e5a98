// Stand-ins for the device path when dbsp is built without CUDA and NCCL.
#include "dbsp/error.hpp"
#include "dbsp/sp_attention.hpp"
#include "dbsp/sp_estimate.hpp"
#include "sp/step_timer.hpp"

namespace dbsp {

#ifndef DBSP_HAVE_NCCL
namespace {
[[noreturn]] void no_device_path() {
  fail("the device path needs dbsp built with CUDA and NCCL (-DDBSP_CUDA=ON)");
}
}  // namespace

SpTelemetry SpExecutor::run_device_bf16(const SpProblem&, const BlockMask&, const Partition&,
                                        const void*, const void*, const void*, void*,
                                        ScheduleReuse) {
  no_device_path();
}
SpTelemetry SpExecutor::run_device_bf16(const SpProblem&, const FineMask&, const Partition&,
                                        const void*, const void*, const void*, void*,
                                        ScheduleReuse) {
  no_device_path();
}
DeviceBf16::DeviceBf16(std::span<const float>) { no_device_path(); }
DeviceBf16::DeviceBf16(size_t) { no_device_path(); }
DeviceBf16::~DeviceBf16() = default;
DeviceBf16::DeviceBf16(DeviceBf16&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}
DeviceBf16& DeviceBf16::operator=(DeviceBf16&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  return *this;
}
std::vector<float> DeviceBf16::to_host() const { no_device_path(); }

struct EstimateWorkspace {};
std::shared_ptr<EstimateWorkspace> make_estimate_workspace() {
  return std::make_shared<EstimateWorkspace>();
}
BlockMask estimate_mask_sharded_device_bf16(Communicator&, const SpProblem&, const void*,
                                            const void*, const EstimateOptions&,
                                            EstimateWorkspace*) {
  no_device_path();
}

namespace sp {
std::unique_ptr<StepTimer> make_device_step_timer() { no_device_path(); }
}  // namespace sp
#endif

}  // namespace dbsp
