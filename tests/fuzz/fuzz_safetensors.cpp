// libFuzzer entry point for the .safetensors mask reader.
#include "fuzz_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return dbsp::fuzz::check_reader(dbsp::read_safetensors_mask, data, size);
}
