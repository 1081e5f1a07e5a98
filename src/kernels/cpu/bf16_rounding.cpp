// bf16 rounding on the host: what a bf16 device path sees of a float.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "dbsp/attention.hpp"

namespace dbsp {

float round_to_bf16(float value) {
  if (std::isnan(value)) return value;
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  bits &= 0xffff0000u;
  float rounded = 0;
  std::memcpy(&rounded, &bits, sizeof(rounded));
  return rounded;
}

}  // namespace dbsp
