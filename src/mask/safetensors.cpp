// .safetensors mask files: the 8-byte header length, the JSON header (tensor entries and optional
// __metadata__), the choice of tensor, the BOOL/U8 payload, and the writer.
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "dbsp/error.hpp"
#include "dbsp/mask_io.hpp"
#include "mask_array.hpp"

namespace dbsp {
namespace {

using nlohmann::json;

constexpr size_t kLengthBytes = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data that follows the header
  uint64_t end = 0;
};

std::vector<uint64_t> unsigned_list(const json& value, const std::string& what,
                                    const std::string& context) {
  require(value.is_array(), context, ": ", what, " must be a list of non-negative integers");
  std::vector<uint64_t> out;
  for (const json& item : value) {
    require(item.is_number_unsigned(), context, ": ", what,
            " must be a list of non-negative integers, but holds a ", item.type_name(),
            item.is_number_integer() ? " (negative)" : "");
    out.push_back(item.get<uint64_t>());
  }
  return out;
}

TensorEntry parse_entry(const std::string& key, const json& value, uint64_t data_bytes,
                        const std::string& name) {
  const std::string context = name + ": tensor " + mask_file::printable(key);
  require(value.is_object(), context, ": the header entry must be an object");
  TensorEntry entry;
  entry.name = key;
  const auto dtype = value.find("dtype");
  require(dtype != value.end() && dtype->is_string(), context, ": missing string 'dtype'");
  entry.dtype = dtype->get<std::string>();
  const auto shape = value.find("shape");
  require(shape != value.end(), context, ": missing 'shape'");
  // A mask has at most 5 axes; cap the list before copying a hostile one.
  require(!shape->is_array() || shape->size() <= 16, context, ": 'shape' has ", shape->size(),
          " axes");
  entry.shape = unsigned_list(*shape, "'shape'", context);
  const auto offsets = value.find("data_offsets");
  require(offsets != value.end(), context, ": missing 'data_offsets'");
  require(offsets->is_array() && offsets->size() == 2, context,
          ": 'data_offsets' must be [begin, end]");
  const std::vector<uint64_t> range = unsigned_list(*offsets, "'data_offsets'", context);
  entry.begin = range[0];
  entry.end = range[1];
  require(entry.begin <= entry.end && entry.end <= data_bytes, context, ": data_offsets [",
          entry.begin, ", ", entry.end, "] lie outside the ", data_bytes,
          " data bytes after the header");
  return entry;
}

// The requested tensor; with no name, the only tensor, or else the one called "mask".
const TensorEntry& choose(const std::vector<TensorEntry>& entries, const std::string& wanted,
                          const std::string& name) {
  if (wanted.empty() && entries.size() == 1) return entries.front();
  const std::string target = wanted.empty() ? "mask" : wanted;
  for (const TensorEntry& entry : entries) {
    if (entry.name == target) return entry;
  }
  constexpr size_t kMaxListed = 8;
  std::string names = entries.empty() ? "none" : "";
  for (size_t t = 0; t < entries.size() && t < kMaxListed; ++t) {
    names += (t ? ", " : "") + mask_file::printable(entries[t].name);
  }
  if (entries.size() > kMaxListed) names += ", ...";
  fail(name, ": no tensor ", mask_file::printable(target), " in the file (tensors: ", names, ")",
       wanted.empty() ? "; name one with tensor_name" : "");
}

}  // namespace

MaskSeries read_safetensors_mask(std::span<const uint8_t> bytes, const std::string& name,
                                 const MaskFileOptions& options) {
  require(bytes.size() >= kLengthBytes, name, ": not a .safetensors file (", bytes.size(),
          " bytes; the 8-byte header length is missing)");
  const uint64_t header_length = mask_file::load_le(bytes.first(kLengthBytes));
  const uint64_t after_length = bytes.size() - kLengthBytes;
  require(header_length <= after_length, name, ": .safetensors header length ", header_length,
          " is larger than the ", after_length, " bytes that follow it");
  const auto header_bytes = bytes.subspan(kLengthBytes, header_length);
  const auto data = bytes.subspan(kLengthBytes + header_length);

  json header;
  try {
    header = json::parse(header_bytes.begin(), header_bytes.end());
  } catch (const json::exception& e) {
    // nlohmann quotes the last token read, which a hostile header can make arbitrarily long.
    fail(name,
         ": the .safetensors header is not valid JSON: ", mask_file::printable(e.what(), 200));
  }
  require(header.is_object(), name, ": the .safetensors header must be a JSON object");

  std::vector<TensorEntry> entries;
  for (const auto& item : header.items()) {
    if (item.key() == kMetadataKey) {
      require(item.value().is_object(), name, ": '__metadata__' must be an object");
      continue;
    }
    entries.push_back(parse_entry(item.key(), item.value(), data.size(), name));
  }
  const TensorEntry& tensor = choose(entries, options.tensor_name, name);
  const std::string context = name + ": tensor " + mask_file::printable(tensor.name);
  require(tensor.dtype == "BOOL" || tensor.dtype == "U8", context, ": dtype ",
          mask_file::printable(tensor.dtype), " is not supported (expected BOOL or U8)");
  const uint64_t stored = tensor.end - tensor.begin;
  const auto shape = mask_file::shape_from_dims(tensor.shape, stored, context);
  require(static_cast<int64_t>(stored) == shape.elements(), context, ": shape ",
          mask_file::format_dims(tensor.shape), " needs ", shape.elements(),
          " bytes but data_offsets span ", stored);
  return mask_file::series_from_values(data.subspan(tensor.begin, stored), shape, context, options);
}

void write_safetensors_mask(const std::filesystem::path& path, const MaskSeries& series,
                            const std::string& tensor_name) {
  require(!tensor_name.empty() && tensor_name != kMetadataKey, path.string(),
          ": invalid tensor name ", mask_file::printable(tensor_name));
  const std::vector<uint64_t> dims = mask_file::dims_of(series, path.string());
  const std::vector<uint8_t> values = mask_file::values_of(series);
  json header;
  header[std::string(kMetadataKey)] = {
      {"format", "dbsp block mask"},
      {"axes",
       dims.size() == 3 ? "heads,q_blocks,k_blocks" : "steps,layers,heads,q_blocks,k_blocks"}};
  header[tensor_name] = {{"dtype", "U8"}, {"shape", dims}, {"data_offsets", {0, values.size()}}};
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // a tensor name that is not valid UTF-8
    fail(path.string(), ": cannot write the tensor name ", mask_file::printable(tensor_name), ": ",
         e.what());
  }
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<uint8_t> head;
  mask_file::append_le(head, text.size(), kLengthBytes);
  head.insert(head.end(), text.begin(), text.end());
  mask_file::write_whole_file(path, head, values);
}

}  // namespace dbsp
