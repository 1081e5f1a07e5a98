// libFuzzer entry point for the .npy mask reader.
#include "fuzz_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return dbsp::fuzz::check_reader(dbsp::read_npy_mask, data, size);
}
