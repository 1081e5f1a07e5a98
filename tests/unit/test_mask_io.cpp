// Mask files: round trips through .npy and .safetensors (ranks 3, 4, 5; bool and uint8), files
// written by real NumPy, and hand-made corrupt files that must fail with the file named.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "dbsp/error.hpp"
#include "dbsp/mask_io.hpp"

namespace dbsp {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// A fresh folder per test, removed afterwards.
class MaskFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("dbsp_mask_io_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& file, const Bytes& bytes) const {
    const fs::path path = dir_ / file;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    return path;
  }
  static Bytes read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), {});
  }

  // Reads a corrupt file and returns the error message, checking that it names the file.
  std::string error_reading(const std::string& file, const Bytes& bytes,
                            const MaskFileOptions& options = {}) const {
    const fs::path path = write(file, bytes);
    try {
      read_mask_file(path, options);
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path.string()), std::string::npos) << message;
      return message;
    }
    ADD_FAILURE() << file << " was accepted";
    return "";
  }

  fs::path dir_;
};

void append_le(Bytes& out, uint64_t value, int width) {
  for (int i = 0; i < width; ++i) out.push_back(uint8_t(value >> (8 * i)));
}

// A .npy file with the given header dictionary (padded as NumPy pads it) and payload.
Bytes npy(const std::string& dict, const Bytes& data, int major = 1) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  Bytes out{0x93, 'N', 'U', 'M', 'P', 'Y', uint8_t(major), 0};
  append_le(out, header.size(), major == 1 ? 2 : 4);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::string npy_dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

Bytes safetensors(const std::string& header, const Bytes& data) {
  Bytes out;
  append_le(out, header.size(), 8);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::string tensor_json(const std::string& dtype, const std::string& shape, size_t begin,
                        size_t end) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

Bytes random_values(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::bernoulli_distribution keep(0.35);
  Bytes values(count);
  for (auto& v : values) v = keep(rng);
  return values;
}

// Row-major values of a series, as the file stores them.
Bytes values_of(const MaskSeries& series) {
  Bytes values;
  for (const BlockMask& mask : series.masks) {
    for (int h = 0; h < mask.heads(); ++h) {
      for (int i = 0; i < mask.q_blocks(); ++i) {
        for (int j = 0; j < mask.k_blocks(); ++j) values.push_back(mask.get(h, i, j));
      }
    }
  }
  return values;
}

MaskSeries random_series(int steps, int layers, int heads, MaskGeometry geometry, uint32_t seed) {
  MaskSeries series{steps, layers, {}};
  std::mt19937 rng(seed);
  std::bernoulli_distribution keep(0.4);
  for (int m = 0; m < steps * layers; ++m) {
    BlockMask& mask = series.masks.emplace_back(heads, geometry);
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < mask.q_blocks(); ++i) {
        for (int j = 0; j < mask.k_blocks(); ++j) mask.set(h, i, j, keep(rng));
      }
    }
  }
  return series;
}

void expect_same(const MaskSeries& a, const MaskSeries& b) {
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.layers, b.layers);
  EXPECT_EQ(a.masks, b.masks);
}

void expect_contains(const std::string& message, const std::string& part) {
  EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
}

// Odd token counts: short last blocks on both axes, 70 key blocks (more than one word).
const MaskGeometry kGeometry{5 * 64 - 3, 70 * 64 - 41, 64, 64};
const MaskFileOptions kOptions{64, 64, kGeometry.seq_q, kGeometry.seq_k, ""};

TEST_F(MaskFiles, NpyRoundTripOfOneMaskIsRank3) {
  const MaskSeries series = random_series(1, 1, 3, kGeometry, 1);
  const fs::path path = dir_ / "one.npy";
  write_npy_mask(path, series);
  const Bytes bytes = read(path);
  const std::string header(bytes.begin() + 10, bytes.begin() + 10 + bytes[8]);
  expect_contains(header, "'shape': (3, 5, 70)");
  expect_contains(header, "'descr': '|u1'");
  EXPECT_EQ((10 + header.size()) % 64, 0u);
  expect_same(read_mask_file(path, kOptions), series);
}

TEST_F(MaskFiles, NpyRoundTripOfASeriesIsRank5) {
  const MaskSeries series = random_series(2, 3, 2, kGeometry, 2);
  const fs::path path = dir_ / "series.npy";
  write_npy_mask(path, series);
  const MaskSeries back = read_mask_file(path, kOptions);
  expect_same(back, series);
  EXPECT_EQ(back.at(1, 2), series.at(1, 2));
}

TEST_F(MaskFiles, SafetensorsRoundTripOfOneMaskAndASeries) {
  for (const auto& [steps, layers] : {std::pair{1, 1}, std::pair{3, 2}}) {
    const MaskSeries series = random_series(steps, layers, 3, kGeometry, 3);
    const fs::path path = dir_ / "masks.safetensors";
    write_safetensors_mask(path, series, "paro_masks");
    MaskFileOptions options = kOptions;
    expect_same(read_mask_file(path, options), series);  // the only tensor
    options.tensor_name = "paro_masks";
    expect_same(read_mask_file(path, options), series);
    const Bytes bytes = read(path);
    EXPECT_EQ((8 + bytes[0]) % 8, 0u) << "data not 8-byte aligned";
  }
}

TEST_F(MaskFiles, WholeBlockGeometryIsTheDefault) {
  const MaskSeries series = random_series(1, 1, 2, kGeometry, 4);
  const fs::path path = dir_ / "blocks.npy";
  write_npy_mask(path, series);
  const MaskSeries back = read_mask_file(path);
  EXPECT_EQ(back.masks[0].geometry(), MaskGeometry::from_blocks(5, 70));
  EXPECT_EQ(values_of(back), values_of(series));
  MaskFileOptions options;
  options.block_q = 32;
  options.block_k = 16;
  EXPECT_EQ(read_mask_file(path, options).masks[0].geometry(),
            MaskGeometry::from_blocks(5, 70, 32, 16));
}

TEST_F(MaskFiles, Rank4IsLayersOfOneStep) {
  const Bytes values = random_values(2 * 3 * 4 * 5, 5);
  const Bytes as_npy = npy(npy_dict("|u1", "(2, 3, 4, 5)"), values);
  const std::string entry = tensor_json("U8", "[2,3,4,5]", 0, values.size());
  const Bytes as_safetensors = safetensors("{\"mask\":" + entry + "}", values);
  for (const MaskSeries& series : {read_npy_mask(as_npy, "rank4.npy"),
                                   read_safetensors_mask(as_safetensors, "rank4.safetensors")}) {
    EXPECT_EQ(series.steps, 1);
    EXPECT_EQ(series.layers, 2);
    ASSERT_EQ(series.masks.size(), 2u);
    EXPECT_EQ(series.masks[1].heads(), 3);
    EXPECT_EQ(series.masks[1].q_blocks(), 4);
    EXPECT_EQ(series.masks[1].k_blocks(), 5);
    EXPECT_EQ(values_of(series), values);
  }
}

TEST_F(MaskFiles, BoolAndUint8DtypesReadTheSame) {
  const Bytes values = random_values(3 * 4 * 67, 6);
  for (const char* descr : {"|b1", "|u1", "<u1"}) {
    EXPECT_EQ(values_of(read_npy_mask(npy(npy_dict(descr, "(3, 4, 67)"), values), "a.npy")), values)
        << descr;
  }
  for (const char* dtype : {"BOOL", "U8"}) {
    const std::string header = "{\"__metadata__\":{\"source\":\"test\"},\"m\":" +
                               tensor_json(dtype, "[3,4,67]", 0, values.size()) + "}";
    EXPECT_EQ(values_of(read_safetensors_mask(safetensors(header, values), "a.safetensors")),
              values)
        << dtype;
  }
}

TEST_F(MaskFiles, NpyVersions2And3AndPython2LongsAreRead) {
  const Bytes values = random_values(2 * 2 * 3, 7);
  for (int major : {2, 3}) {
    EXPECT_EQ(values_of(read_npy_mask(npy(npy_dict("|b1", "(2, 2, 3)"), values, major), "v.npy")),
              values);
  }
  const std::string old_style =
      "{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (2L, 2L, 3L)}";
  EXPECT_EQ(values_of(read_npy_mask(npy(old_style, values), "py2.npy")), values);
}

TEST_F(MaskFiles, SafetensorsPicksTheTensorNamedMaskAmongSeveral) {
  const Bytes first = random_values(2 * 2 * 2, 8);
  const Bytes second = random_values(1 * 3 * 3, 9);
  Bytes data = first;
  data.insert(data.end(), second.begin(), second.end());
  const std::string header = "{\"other\":" + tensor_json("U8", "[2,2,2]", 0, 8) +
                             ",\"mask\":" + tensor_json("BOOL", "[1,3,3]", 8, 17) + "}";
  const Bytes bytes = safetensors(header, data);
  EXPECT_EQ(values_of(read_safetensors_mask(bytes, "two.safetensors")), second);
  MaskFileOptions options;
  options.tensor_name = "other";
  EXPECT_EQ(values_of(read_safetensors_mask(bytes, "two.safetensors", options)), first);
  options.tensor_name = "missing";
  EXPECT_THROW(read_safetensors_mask(bytes, "two.safetensors", options), Error);
}

// Files written by NumPy itself (tests/data/make_numpy_masks.py); values follow its formulas.
const fs::path kData = fs::path(__FILE__).parent_path().parent_path() / "data";

TEST_F(MaskFiles, ReadsUint8MaskWrittenByNumPy) {
  const MaskSeries series = read_mask_file(kData / "mask_numpy_u8.npy");
  ASSERT_EQ(series.masks.size(), 1u);
  const BlockMask& mask = series.masks[0];
  ASSERT_EQ(mask.heads(), 3);
  ASSERT_EQ(mask.q_blocks(), 5);
  ASSERT_EQ(mask.k_blocks(), 70);
  for (int h = 0; h < 3; ++h) {
    for (int i = 0; i < 5; ++i) {
      for (int j = 0; j < 70; ++j) EXPECT_EQ(mask.get(h, i, j), (7 * h + 3 * i + j) % 5 < 2);
    }
  }
}

TEST_F(MaskFiles, ReadsBoolSeriesWrittenByNumPy) {
  const MaskSeries series = read_mask_file(kData / "mask_numpy_bool.npy");
  ASSERT_EQ(series.steps, 2);
  ASSERT_EQ(series.layers, 1);
  for (int s = 0; s < 2; ++s) {
    const BlockMask& mask = series.at(s, 0);
    ASSERT_EQ(mask.heads(), 2);
    ASSERT_EQ(mask.q_blocks(), 3);
    ASSERT_EQ(mask.k_blocks(), 65);
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 65; ++j) {
          EXPECT_EQ(mask.get(h, i, j), (s + 5 * h + 3 * i + j) % 4 == 0);
        }
      }
    }
  }
}

TEST_F(MaskFiles, CorruptNpyFilesNameTheFileAndTheProblem) {
  const Bytes values = random_values(2 * 3 * 4, 10);
  const Bytes good = npy(npy_dict("|u1", "(2, 3, 4)"), values);
  ASSERT_NO_THROW(read_mask_file(write("good.npy", good)));

  Bytes bad_magic = good;
  bad_magic[1] = 'X';
  expect_contains(error_reading("bad_magic.npy", bad_magic), "magic");
  expect_contains(error_reading("empty.npy", {}), "magic");
  Bytes bad_version = good;
  bad_version[6] = 4;
  expect_contains(error_reading("bad_version.npy", bad_version), "version 4.0");
  expect_contains(error_reading("truncated_length.npy", Bytes(good.begin(), good.begin() + 9)),
                  "header length");
  expect_contains(error_reading("truncated_header.npy", Bytes(good.begin(), good.begin() + 40)),
                  "header length");
  expect_contains(error_reading("truncated_data.npy", Bytes(good.begin(), good.end() - 1)),
                  "needs 24 bytes of data but only 23");
  Bytes trailing = good;
  trailing.push_back(0);
  expect_contains(error_reading("trailing.npy", trailing), "25 follow the header");
  expect_contains(error_reading("float.npy", npy(npy_dict("<f4", "(2, 3, 4)"), values)),
                  "dtype '<f4'");
  expect_contains(error_reading("fortran.npy", npy(npy_dict("|u1", "(2, 3, 4)", true), values)),
                  "Fortran order");
  expect_contains(error_reading("rank2.npy", npy(npy_dict("|u1", "(6, 4)"), values)), "rank 2");
  expect_contains(error_reading("rank6.npy", npy(npy_dict("|u1", "(1, 1, 2, 1, 3, 4)"), values)),
                  "rank 6");
  expect_contains(error_reading("zero_axis.npy", npy(npy_dict("|u1", "(0, 3, 4)"), {})),
                  "empty axis");
  Bytes two = values;
  two[17] = 2;
  const std::string value_error =
      error_reading("value2.npy", npy(npy_dict("|u1", "(2, 3, 4)"), two));
  expect_contains(value_error, "is 2");
  expect_contains(value_error, "element 17");
  expect_contains(
      error_reading("bad_dict.npy", npy("{'descr': '|u1', 'shape': (2, 3, 4), }", values)),
      "must contain the keys");
  expect_contains(
      error_reading("garbage.npy", npy("{'descr': '|u1', 'shape': [2, 3, 4], }", values)),
      "expected '('");
  expect_contains(
      error_reading(
          "extra_key.npy",
          npy("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4), 'x': 1}", values)),
      "unexpected key");
  expect_contains(
      error_reading("structured.npy", npy("{'descr': [('a', '|u1')], 'fortran_order': False, "
                                          "'shape': (2, 3, 4), }",
                                          values)),
      "structured");
}

TEST_F(MaskFiles, HugeShapesFailWithoutAllocating) {
  const Bytes values = random_values(8, 11);
  expect_contains(
      error_reading("overflow.npy",
                    npy(npy_dict("|u1", "(4294967295, 4294967295, 4294967295)"), values)),
      "has an axis over");
  expect_contains(
      error_reading(
          "product.npy",
          npy(npy_dict("|u1", "(2147483647, 2147483647, 2147483647, 2147483647, 8)"), values)),
      "more elements than a 64-bit count");
  expect_contains(
      error_reading("big.npy", npy(npy_dict("|u1", "(1000000, 1000000, 1000)"), values)),
      "truncated");
  expect_contains(
      error_reading("digits.npy", npy(npy_dict("|u1", "(99999999999999999999999, 1, 1)"), values)),
      "integer too large");
  expect_contains(
      error_reading(
          "huge.safetensors",
          safetensors("{\"mask\":" + tensor_json("U8", "[65536,65536,65536]", 0, 8) + "}", values)),
      "needs 281474976710656 bytes");
}

TEST_F(MaskFiles, ShapeMustMatchTheSequenceOverride) {
  const Bytes file = npy(npy_dict("|u1", "(2, 3, 4)"), random_values(24, 12));
  MaskFileOptions options;
  options.seq_q = 3 * 64;  // matches
  options.seq_k = 4 * 64 - 63;
  EXPECT_EQ(read_mask_file(write("ok.npy", file), options).masks[0].geometry(),
            (MaskGeometry{3 * 64, 4 * 64 - 63, 64, 64}));
  options.seq_k = 3 * 64;  // three key blocks, the file has four
  expect_contains(error_reading("mismatch.npy", file, options), "the file has 4");
  options.seq_k = -5;
  expect_contains(error_reading("negative.npy", file, options), "seq_k");
  options.seq_k = 0;
  options.block_q = 0;
  expect_contains(error_reading("block0.npy", file, options), "block_q");
}

TEST_F(MaskFiles, CorruptSafetensorsFilesNameTheFileAndTheProblem) {
  const Bytes values = random_values(2 * 3 * 4, 13);
  const std::string good_header = "{\"mask\":" + tensor_json("U8", "[2,3,4]", 0, 24) + "}";
  ASSERT_NO_THROW(read_mask_file(write("good.safetensors", safetensors(good_header, values))));

  expect_contains(error_reading("short.safetensors", {1, 2, 3}), "8-byte header length");
  Bytes long_header = safetensors(good_header, values);
  long_header[5] = 1;  // a header length of 2^40
  expect_contains(error_reading("long_header.safetensors", long_header), "is larger than");
  expect_contains(error_reading("bad_json.safetensors", safetensors("{\"mask\": [1,", values)),
                  "not valid JSON");
  expect_contains(error_reading("not_object.safetensors", safetensors("[1, 2]", values)),
                  "JSON object");
  expect_contains(
      error_reading("past_end.safetensors",
                    safetensors("{\"mask\":" + tensor_json("U8", "[2,3,4]", 0, 25) + "}", values)),
      "outside the 24 data bytes");
  expect_contains(
      error_reading("reversed.safetensors",
                    safetensors("{\"mask\":" + tensor_json("U8", "[2,3,4]", 20, 4) + "}", values)),
      "data_offsets [20, 4]");
  expect_contains(
      error_reading("span.safetensors",
                    safetensors("{\"mask\":" + tensor_json("U8", "[2,3,4]", 0, 20) + "}", values)),
      "truncated");
  expect_contains(
      error_reading("float.safetensors",
                    safetensors("{\"mask\":" + tensor_json("F32", "[2,3]", 0, 24) + "}", values)),
      "dtype \"F32\"");
  expect_contains(
      error_reading("rank2.safetensors",
                    safetensors("{\"mask\":" + tensor_json("U8", "[6,4]", 0, 24) + "}", values)),
      "rank 2");
  expect_contains(
      error_reading("negative.safetensors",
                    safetensors("{\"mask\":" + tensor_json("U8", "[2,-3,4]", 0, 24) + "}", values)),
      "non-negative");
  expect_contains(
      error_reading("no_dtype.safetensors",
                    safetensors("{\"mask\":{\"shape\":[2,3,4],\"data_offsets\":[0,24]}}", values)),
      "dtype");
  expect_contains(
      error_reading(
          "metadata.safetensors",
          safetensors("{\"__metadata__\":3,\"mask\":" + tensor_json("U8", "[2,3,4]", 0, 24) + "}",
                      values)),
      "__metadata__");
  expect_contains(error_reading("none.safetensors", safetensors("{}", values)),
                  "no tensor \"mask\"");
  Bytes two = values;
  two[5] = 7;
  expect_contains(error_reading("value7.safetensors", safetensors(good_header, two)),
                  "element 5 (flat index) is 7");
}

TEST_F(MaskFiles, MissingFilesAndUnknownExtensionsAreNamed) {
  const fs::path missing = dir_ / "missing.npy";
  try {
    read_mask_file(missing);
    FAIL() << "missing file accepted";
  } catch (const Error& e) {
    expect_contains(e.what(), missing.string());
  }
  expect_contains(error_reading("mask.txt", {1, 2, 3}), ".npy or .safetensors");
}

TEST_F(MaskFiles, WritersRejectInconsistentSeries) {
  MaskSeries series = random_series(2, 1, 2, kGeometry, 14);
  series.masks[1] = BlockMask(3, kGeometry);
  EXPECT_THROW(write_npy_mask(dir_ / "mixed.npy", series), Error);
  series.masks.pop_back();
  EXPECT_THROW(write_safetensors_mask(dir_ / "short.safetensors", series), Error);
  EXPECT_THROW(write_safetensors_mask(dir_ / "utf8.safetensors",
                                      random_series(1, 1, 1, kGeometry, 1), "bad\xff name"),
               Error);
  EXPECT_THROW(write_npy_mask(dir_ / "no_such_dir" / "x.npy", random_series(1, 1, 1, kGeometry, 1)),
               Error);
}

}  // namespace
}  // namespace dbsp
