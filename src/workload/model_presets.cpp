// Model shapes of the video DiTs that dbsp targets (SPEC 5), by name.
#include <array>

#include "dbsp/error.hpp"
#include "dbsp/workload.hpp"

namespace dbsp {
namespace {

// Latent grids after patching (1 x 2 x 2). CogVideoX1.5 at 1360 x 768 x 161 frames is about 86k
// tokens; its exact patch grid is not fixed here, so 21 x 48 x 85 = 85,680 tokens stands in for it.
// "tiny" is for tests: 975 tokens, deliberately not a multiple of 64.
const std::array<ModelShape, 4>& presets() {
  static const std::array<ModelShape, 4> shapes{{
      {"wan2.1-480p", 40, 40, 128, 21, 30, 52, 50},
      {"wan2.1-720p", 40, 40, 128, 21, 45, 80, 50},
      {"cogvideox1.5", 42, 48, 64, 21, 48, 85, 50},
      {"tiny", 2, 5, 32, 3, 13, 25, 4},
  }};
  return shapes;
}

}  // namespace

const ModelShape& model_preset(std::string_view name) {
  for (const ModelShape& shape : presets()) {
    if (shape.name == name) return shape;
  }
  std::string known;
  for (const ModelShape& shape : presets()) {
    if (!known.empty()) known += ", ";
    known += shape.name;
  }
  fail("model_preset: unknown model '", name, "', expected one of: ", known);
}

std::vector<std::string> model_preset_names() {
  std::vector<std::string> names;
  for (const ModelShape& shape : presets()) names.push_back(shape.name);
  return names;
}

const char* to_string(HeadFamily family) {
  switch (family) {
    case HeadFamily::spatial_window:
      return "spatial_window";
    case HeadFamily::temporal_stripe:
      return "temporal_stripe";
    case HeadFamily::sink_global:
      return "sink_global";
    case HeadFamily::diagonal_band:
      return "diagonal_band";
    case HeadFamily::scattered:
      return "scattered";
  }
  return "unknown";
}

}  // namespace dbsp
