// NumPy .npy mask files (format versions 1.0, 2.0, 3.0): the header's Python-literal dictionary,
// the bool/uint8 payload in C order, and the writer.
#include <cctype>
#include <string_view>

#include "dbsp/error.hpp"
#include "dbsp/mask_io.hpp"
#include "mask_array.hpp"

namespace dbsp {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
};

// The header is a Python dict literal such as
//   {'descr': '|b1', 'fortran_order': False, 'shape': (2, 3, 4), }
// This parser accepts exactly the literal forms NumPy writes (strings, True/False, tuples of
// integers, Python 2's 123L) and nothing that would need evaluation.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  NpyHeader parse() {
    NpyHeader header;
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    while (skip_space() != '}') {
      const std::string key = parse_string();
      expect(':');
      if (key == "descr") {
        once(have_descr, key);
        if (skip_space() == '[') error("structured dtypes are not supported");
        header.descr = parse_string();
      } else if (key == "fortran_order") {
        once(have_order, key);
        header.fortran_order = parse_bool();
      } else if (key == "shape") {
        once(have_shape, key);
        header.shape = parse_shape();
      } else {
        error("unexpected key " + mask_file::printable(key) +
              " (expected descr, fortran_order, shape)");
      }
      if (skip_space() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        error("expected ',' or '}'");
      }
    }
    ++pos_;
    skip_space();
    if (pos_ != text_.size()) error("unexpected text after the dictionary");
    if (!have_descr || !have_order || !have_shape) {
      fail(name_, ": .npy header ", mask_file::printable(text_),
           " must contain the keys 'descr', 'fortran_order' and 'shape'");
    }
    return header;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(name_, ": malformed .npy header: ", what, " at offset ", pos_, " of ",
         mask_file::printable(text_));
  }
  void once(bool& seen, const std::string& key) const {
    if (seen) error("duplicate key '" + key + "'");
    seen = true;
  }
  // The next character, or '\0' at the end (never a valid character of a header).
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  char skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
    return peek();
  }
  void expect(char c) {
    if (skip_space() != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string parse_string() {
    const char quote = skip_space();
    if (quote != '\'' && quote != '"') error("expected a quoted string");
    const size_t begin = ++pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\') error("escape sequences are not supported");
      ++pos_;
    }
    if (pos_ == text_.size()) error("unterminated string");
    return std::string(text_.substr(begin, pos_++ - begin));
  }
  bool parse_bool() {
    skip_space();
    for (const auto& [word, value] :
         {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    error("expected True or False");
  }
  uint64_t parse_integer() {
    if (!std::isdigit(static_cast<unsigned char>(skip_space()))) error("expected an integer");
    uint64_t value = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      const uint64_t digit = static_cast<uint64_t>(text_[pos_] - '0');
      if (__builtin_mul_overflow(value, 10, &value) ||
          __builtin_add_overflow(value, digit, &value)) {
        error("integer too large");
      }
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 long literal
    return value;
  }
  std::vector<uint64_t> parse_shape() {
    expect('(');
    std::vector<uint64_t> dims;
    while (skip_space() != ')') {
      // A mask has at most 5 axes; stop long tuples before they grow.
      if (dims.size() > 5) error("too many axes in the shape");
      dims.push_back(parse_integer());
      if (skip_space() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        error("expected ',' or ')' in the shape");
      }
    }
    ++pos_;
    return dims;
  }

  std::string_view text_;
  const std::string& name_;
  size_t pos_ = 0;
};

bool is_mask_dtype(const std::string& descr) {
  if (descr.size() != 3) return false;
  const char order = descr[0];
  const std::string_view type = std::string_view(descr).substr(1);
  const bool any_order = order == '|' || order == '<' || order == '>' || order == '=';
  return any_order && (type == "b1" || type == "u1");
}

}  // namespace

MaskSeries read_npy_mask(std::span<const uint8_t> bytes, const std::string& name,
                         const MaskFileOptions& options) {
  const auto text = [&](size_t begin, size_t count) {
    return std::string_view(reinterpret_cast<const char*>(bytes.data()) + begin, count);
  };
  require(bytes.size() >= kMagic.size() + 2 && text(0, kMagic.size()) == kMagic, name,
          ": not a .npy file (it does not start with the magic string \\x93NUMPY and a version)");
  const int major = bytes[6], minor = bytes[7];
  require((major == 1 || major == 2 || major == 3) && minor == 0, name, ": .npy format version ",
          major, ".", minor, " is not supported (expected 1.0, 2.0 or 3.0)");
  // Version 1.0 stores the header length in 2 bytes, 2.0 and 3.0 (UTF-8 header) in 4.
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t header_begin = kMagic.size() + 2 + length_bytes;
  require(bytes.size() >= header_begin, name, ": .npy file truncated inside the header length (",
          bytes.size(), " bytes)");
  const uint64_t header_length = mask_file::load_le(bytes.subspan(8, length_bytes));
  require(header_length <= bytes.size() - header_begin, name, ": .npy header length ",
          header_length, " runs past the end of the file (", bytes.size() - header_begin,
          " bytes follow the length field)");

  const NpyHeader header = HeaderParser(text(header_begin, header_length), name).parse();
  require(is_mask_dtype(header.descr), name, ": .npy dtype '", header.descr,
          "' is not supported (expected '|b1' bool or '|u1' uint8)");
  require(!header.fortran_order, name,
          ": .npy array is in Fortran order (fortran_order: True); only C order is supported");

  const auto data = bytes.subspan(header_begin + header_length);
  const auto shape = mask_file::shape_from_dims(header.shape, data.size(), name);
  require(static_cast<int64_t>(data.size()) == shape.elements(), name, ": shape ",
          mask_file::format_dims(header.shape), " needs ", shape.elements(), " bytes of data but ",
          data.size(), " follow the header");
  return mask_file::series_from_values(data, shape, name, options);
}

void write_npy_mask(const std::filesystem::path& path, const MaskSeries& series) {
  const std::vector<uint64_t> dims = mask_file::dims_of(series, path.string());
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < dims.size(); ++i) dict += (i ? ", " : "") + std::to_string(dims[i]);
  dict += "), }";
  // NumPy pads with spaces and ends with a newline so the data starts 64-byte aligned.
  constexpr size_t kPrefix = kMagic.size() + 2 + 2;
  const size_t padded = (kPrefix + dict.size() + 1 + 63) / 64 * 64 - kPrefix;
  dict.append(padded - dict.size() - 1, ' ');
  dict += '\n';

  std::vector<uint8_t> head(kMagic.begin(), kMagic.end());
  head.push_back(1);  // format version 1.0: the header is far below 64 KiB
  head.push_back(0);
  mask_file::append_le(head, dict.size(), 2);
  head.insert(head.end(), dict.begin(), dict.end());
  mask_file::write_whole_file(path, head, mask_file::values_of(series));
}

}  // namespace dbsp
