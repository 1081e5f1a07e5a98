// Mask arrays in files: shape validation, geometry from MaskFileOptions, values <-> MaskSeries,
// and the byte-level file reads and writes the .npy and .safetensors formats share.
#include "mask_array.hpp"

#include <cctype>
#include <fstream>
#include <limits>
#include <sstream>

#include "dbsp/error.hpp"

namespace dbsp::mask_file {
namespace {

constexpr uint64_t kMaxAxis = std::numeric_limits<int>::max();

// Token count of one axis: the file counts whole blocks; an override must cut into as many.
int64_t resolve_tokens(int blocks, int64_t requested, int block, const char* axis,
                       const std::string& name) {
  require(block > 0, name, ": block_", axis, " must be > 0, got ", block);
  if (requested == 0) return int64_t{blocks} * block;
  require(requested > 0, name, ": seq_", axis, " must be > 0 (or 0 for whole blocks), got ",
          requested);
  const int64_t implied = (requested - 1) / block + 1;
  require(implied == blocks, name, ": seq_", axis, " = ", requested, " with block_", axis, " = ",
          block, " makes ", implied, " ", axis, "-blocks but the file has ", blocks);
  return requested;
}

}  // namespace

std::string format_dims(std::span<const uint64_t> dims) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < dims.size(); ++i) out << (i ? ", " : "") << dims[i];
  out << ']';
  return out.str();
}

MaskArrayShape shape_from_dims(std::span<const uint64_t> dims, uint64_t available_bytes,
                               const std::string& name) {
  require(dims.size() >= 3 && dims.size() <= 5, name, ": mask shape ", format_dims(dims),
          " has rank ", dims.size(),
          "; expected [heads, q_blocks, k_blocks], [layers, heads, q_blocks, k_blocks] or "
          "[steps, layers, heads, q_blocks, k_blocks]");
  uint64_t elements = 1;
  bool overflow = false;
  for (uint64_t d : dims) {
    require(d > 0, name, ": mask shape ", format_dims(dims), " has an empty axis");
    require(d <= kMaxAxis, name, ": mask shape ", format_dims(dims), " has an axis over ",
            kMaxAxis);
    overflow = overflow || __builtin_mul_overflow(elements, d, &elements);
  }
  require(!overflow, name, ": mask shape ", format_dims(dims),
          " has more elements than a 64-bit count holds");
  // Checked before anything is allocated, so a hostile shape cannot ask for more than the file.
  require(elements <= available_bytes, name, ": mask shape ", format_dims(dims), " needs ",
          elements, " bytes of data but only ", available_bytes, " are there (truncated file?)");
  std::vector<int> axes(dims.begin(), dims.end());
  while (axes.size() < 5) axes.insert(axes.begin(), 1);
  // steps * layers indexes MaskSeries::masks with an int.
  require(int64_t{axes[0]} * axes[1] <= std::numeric_limits<int>::max(), name, ": mask shape ",
          format_dims(dims), " has more than ", kMaxAxis, " (step, layer) pairs");
  return MaskArrayShape{axes[0], axes[1], axes[2], axes[3], axes[4]};
}

MaskSeries series_from_values(std::span<const uint8_t> values, const MaskArrayShape& shape,
                              const std::string& name, const MaskFileOptions& options) {
  require(static_cast<int64_t>(values.size()) == shape.elements(), name, ": the data holds ",
          values.size(), " bytes but the shape needs ", shape.elements());
  MaskGeometry geometry;
  geometry.block_q = options.block_q;
  geometry.block_k = options.block_k;
  geometry.seq_q = resolve_tokens(shape.q_blocks, options.seq_q, options.block_q, "q", name);
  geometry.seq_k = resolve_tokens(shape.k_blocks, options.seq_k, options.block_k, "k", name);

  MaskSeries series;
  series.steps = shape.steps;
  series.layers = shape.layers;
  series.masks.reserve(static_cast<size_t>(shape.steps) * shape.layers);
  const uint8_t* value = values.data();
  for (int m = 0; m < shape.steps * shape.layers; ++m) {
    BlockMask& mask = series.masks.emplace_back(shape.heads, geometry);
    for (int h = 0; h < shape.heads; ++h) {
      for (int i = 0; i < shape.q_blocks; ++i) {
        uint64_t* row = mask.row_bits(h, i);
        for (int j = 0; j < shape.k_blocks; ++j, ++value) {
          if (*value == 0) continue;
          require(*value == 1, name, ": mask values must be 0 or 1, but element ",
                  value - values.data(), " (flat index) is ", int{*value});
          row[j >> 6] |= uint64_t{1} << (j & 63);
        }
      }
    }
  }
  return series;
}

std::vector<uint64_t> dims_of(const MaskSeries& series, const std::string& name) {
  require(series.steps >= 1 && series.layers >= 1, name, ": a mask series needs steps >= 1 and ",
          "layers >= 1, got ", series.steps, " x ", series.layers);
  require(static_cast<int64_t>(series.masks.size()) == int64_t{series.steps} * series.layers, name,
          ": the series has ", series.masks.size(),
          " masks but steps * layers = ", int64_t{series.steps} * series.layers);
  const BlockMask& first = series.masks.front();
  require(first.heads() > 0 && first.q_blocks() > 0 && first.k_blocks() > 0, name,
          ": cannot write an empty mask (", first.heads(), " heads, ", first.q_blocks(), " x ",
          first.k_blocks(), " blocks)");
  for (const BlockMask& mask : series.masks) {
    require(mask.heads() == first.heads() && mask.q_blocks() == first.q_blocks() &&
                mask.k_blocks() == first.k_blocks(),
            name, ": every mask of the series must have the same shape, but one has ", mask.heads(),
            " heads x ", mask.q_blocks(), " x ", mask.k_blocks(), " blocks and ", "the first ",
            first.heads(), " x ", first.q_blocks(), " x ", first.k_blocks());
  }
  const uint64_t heads = first.heads(), qb = first.q_blocks(), kb = first.k_blocks();
  if (series.masks.size() == 1) return {heads, qb, kb};
  return {uint64_t(series.steps), uint64_t(series.layers), heads, qb, kb};
}

std::vector<uint8_t> values_of(const MaskSeries& series) {
  std::vector<uint8_t> values;
  for (const BlockMask& mask : series.masks) {
    for (int h = 0; h < mask.heads(); ++h) {
      for (int i = 0; i < mask.q_blocks(); ++i) {
        const uint64_t* row = mask.row_bits(h, i);
        for (int j = 0; j < mask.k_blocks(); ++j) values.push_back((row[j >> 6] >> (j & 63)) & 1);
      }
    }
  }
  return values;
}

std::vector<uint8_t> read_whole_file(const std::filesystem::path& path) {
  std::error_code error;
  require(std::filesystem::is_regular_file(path, error), path.string(),
          ": no such file (or not a regular file)");
  const uintmax_t size = std::filesystem::file_size(path, error);
  require(!error, path.string(), ": cannot read the file size: ", error.message());
  std::ifstream in(path, std::ios::binary);
  require(in.good(), path.string(), ": cannot open the file for reading");
  std::vector<uint8_t> bytes(size);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  require(static_cast<uintmax_t>(in.gcount()) == size, path.string(), ": read only ", in.gcount(),
          " of ", size, " bytes");
  return bytes;
}

void write_whole_file(const std::filesystem::path& path, std::span<const uint8_t> header,
                      std::span<const uint8_t> data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  require(out.good(), path.string(), ": cannot open the file for writing");
  out.write(reinterpret_cast<const char*>(header.data()),
            static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  out.close();
  require(!out.fail(), path.string(), ": writing the file failed");
}

std::string printable(std::string_view text, size_t max_shown) {
  std::ostringstream out;
  out << '"';
  for (size_t i = 0; i < text.size() && i < max_shown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (std::isprint(c) && c != '\\' && c != '"') {
      out << static_cast<char>(c);
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out << "\\x" << kHex[c >> 4] << kHex[c & 15];
    }
  }
  out << (text.size() > max_shown ? "...\"" : "\"");
  return out.str();
}

uint64_t load_le(std::span<const uint8_t> bytes) {
  uint64_t value = 0;
  for (size_t i = bytes.size(); i-- > 0;) value = (value << 8) | bytes[i];
  return value;
}

void append_le(std::vector<uint8_t>& out, uint64_t value, int width) {
  for (int i = 0; i < width; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

}  // namespace dbsp::mask_file
