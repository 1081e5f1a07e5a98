// Reading a mask file from disk: the reader is chosen by the file's extension.
#include <algorithm>
#include <cctype>

#include "dbsp/error.hpp"
#include "dbsp/mask_io.hpp"
#include "mask_array.hpp"

namespace dbsp {

MaskSeries read_mask_file(const std::filesystem::path& path, const MaskFileOptions& options) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const bool npy = extension == ".npy";
  require(npy || extension == ".safetensors", path.string(),
          ": unknown mask file type (expected a .npy or .safetensors extension)");
  const std::vector<uint8_t> bytes = mask_file::read_whole_file(path);
  return npy ? read_npy_mask(bytes, path.string(), options)
             : read_safetensors_mask(bytes, path.string(), options);
}

}  // namespace dbsp
