// Counter-based randomness for the synthetic workloads: every draw is a hash of (seed, what,
// where), so results never depend on call order, thread count or the standard library's
// distributions.
#pragma once

#include <cstdint>

namespace dbsp::workload {

// splitmix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
constexpr uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Hash of a tuple of integers, order sensitive.
template <class... Values>
constexpr uint64_t hash_of(uint64_t seed, Values... values) {
  uint64_t h = mix64(seed);
  ((h = mix64(h ^ static_cast<uint64_t>(values))), ...);
  return h;
}

// Uniform in [0, 1) from the top 53 bits.
constexpr double unit_of(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// A cheap 32-bit mix (lowbias32, Wellons) for the per-block-pair inner loops: it vectorises.
constexpr uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Approximately standard normal: Irwin-Hall sum of four uniforms, rescaled (pure arithmetic, so
// identical on every platform).
inline double normal_of(uint64_t h) {
  double sum = 0.0;
  for (int part = 0; part < 4; ++part) {
    h = mix64(h);
    sum += unit_of(h);
  }
  return (sum - 2.0) * 1.7320508075688772;  // variance of the sum is 4/12
}

// Salts keep the different kinds of draws apart (passed as the first value of hash_of).
enum class Salt : uint64_t {
  family = 1,
  density_kind,
  density_value,
  density_drift,
  width_a,
  width_b,
  width_c,
  width_drift,
  noise_amplitude,
  noise_row,
  content_gain,
  sinks,
  cell,
  saliency,
  features,
  topic,
};

}  // namespace dbsp::workload
