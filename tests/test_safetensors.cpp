// safetensors: round trips of every dtype, files written by Python, and a clear error for each kind of
// corruption.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include "loom/loom.h"
#include "loom/nn/safetensors.h"

using namespace loom;
namespace fs = std::filesystem;

namespace {

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "loom_safetensors_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes a file by hand: the 8-byte length (header.size() unless overridden), the header, then `data`.
  std::string write_raw(const std::string& header, const std::string& data,
                        std::optional<uint64_t> length = std::nullopt) const {
    std::string p = path("raw.safetensors");
    std::ofstream out(p, std::ios::binary);
    uint64_t len = length.value_or(header.size());
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
    out << header << data;
    return p;
  }

  static std::string read_all(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

// Expects load_safetensors(p) to throw a loom::Error whose message names the file and contains `needle`.
void expect_load_error(const std::string& p, const std::string& needle) {
  try {
    load_safetensors(p);
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("load_safetensors: " + p), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
  }
}

}  // namespace

TEST_F(Safetensors, RoundTripsEveryDtypeShapeAndMetadata) {
  Tensor f32 = tensor<float>({1.5f, -2.25f, 3e-8f, 1e30f, 0.0f, -0.0f}, {2, 3});
  Tensor f64 = tensor<double>({3.141592653589793, -1e-300, 1e300, 2.0}, {4});
  Tensor i64 = tensor<int64_t>({INT64_MIN, -1, 0, INT64_MAX}, {2, 1, 2});
  Tensor i32 = tensor<int32_t>({INT32_MIN, 7, INT32_MAX}, {3});
  Tensor b = tensor<bool>({true, false, false, true, true}, {5});
  Tensor scalar = scalar_tensor(42.5, kFloat64);
  Tensor empty = zeros({0, 3}, kInt32);
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "quotes \" and \\ survive"}};
  std::string p = path("all.safetensors");
  save_safetensors(p,
                   {{"f32", f32},
                    {"f64", f64},
                    {"i64", i64},
                    {"i32", i32},
                    {"b", b},
                    {"scalar", scalar},
                    {"empty", empty}},
                   meta);
  EXPECT_FALSE(fs::exists(p + ".tmp"));

  SafetensorsContents c = load_safetensors_with_metadata(p);
  EXPECT_EQ(c.metadata, meta);
  ASSERT_EQ(c.tensors.size(), 7u);
  auto same = [&](const std::string& name, const Tensor& want) {
    const Tensor& got = c.tensors.at(name);
    EXPECT_EQ(got.dtype(), want.dtype()) << name;
    EXPECT_EQ(got.shape(), want.shape()) << name;
    EXPECT_TRUE(got.device().is_cpu()) << name;
    EXPECT_TRUE(got.is_contiguous()) << name;
    EXPECT_EQ(std::memcmp(got.data_ptr(), want.contiguous().data_ptr(), want.nbytes()), 0) << name;
  };
  same("f32", f32);
  same("f64", f64);
  same("i64", i64);
  same("i32", i32);
  same("b", b);
  same("scalar", scalar);
  same("empty", empty);
  EXPECT_EQ(c.tensors.at("scalar").dim(), 0);
  EXPECT_EQ(c.tensors.at("b").to_vector<bool>(), (std::vector<bool>{true, false, false, true, true}));
}

TEST_F(Safetensors, WritesTheReferenceLayout) {
  std::string p = path("layout.safetensors");
  save_safetensors(p, {{"w", tensor<float>({1, 2, 3}, {3})}, {"n", tensor<int32_t>({4}, {1})}}, {{"k", "v"}});
  std::string bytes = read_all(p);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(len % 8, 0u) << "header must be padded to keep the data 8-byte aligned";
  EXPECT_EQ(bytes.size(), 8 + len + 3 * 4 + 4);
  std::string header = bytes.substr(8, len);
  EXPECT_NE(header.find("\"__metadata__\":{\"k\":\"v\"}"), std::string::npos) << header;
  EXPECT_NE(header.find("\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}"), std::string::npos)
      << header;
  EXPECT_NE(header.find("\"n\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[12,16]}"),
            std::string::npos)
      << header;
  float w[3];
  std::memcpy(w, bytes.data() + 8 + len, sizeof w);
  EXPECT_EQ(w[2], 3.0f);
}

TEST_F(Safetensors, SavesNonContiguousViewsAsTheirValues) {
  Tensor base = tensor<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  std::string p = path("view.safetensors");
  save_safetensors(p, {{"t", base.t()}, {"col", base.select(1, 2)}});
  auto loaded = load_safetensors(p);
  EXPECT_EQ(loaded.at("t").shape(), (Shape{3, 2}));
  EXPECT_EQ(loaded.at("t").to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(loaded.at("col").to_vector<float>(), (std::vector<float>{2, 5}));
}

TEST_F(Safetensors, SavesCudaTensors) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor t = tensor<float>({1, 2, 3, 4}, {2, 2}).to(kCUDA);
  std::string p = path("cuda.safetensors");
  save_safetensors(p, {{"t", t.t()}});
  EXPECT_EQ(load_safetensors(p).at("t").to_vector<float>(), (std::vector<float>{1, 3, 2, 4}));
}

TEST_F(Safetensors, OverwritesAtomicallyAndKeepsTheOldFileOnError) {
  std::string p = path("model.safetensors");
  save_safetensors(p, {{"a", tensor<float>({1}, {1})}});
  save_safetensors(p, {{"a", tensor<float>({2}, {1})}});
  EXPECT_EQ(load_safetensors(p).at("a").item<float>(), 2.0f);
  // A failed save (duplicate names) leaves the previous file intact and no temporary behind.
  Tensor x = tensor<float>({3}, {1});
  EXPECT_THROW(save_safetensors(p, {{"a", x}, {"a", x}}), Error);
  EXPECT_EQ(load_safetensors(p).at("a").item<float>(), 2.0f);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(Safetensors, RejectsBadNamesAndUnwritablePaths) {
  Tensor x = tensor<float>({1}, {1});
  try {
    save_safetensors(path("d.safetensors"), {{"a", x}, {"a", x}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor name 'a' appears twice"), std::string::npos) << e.what();
  }
  EXPECT_THROW(save_safetensors(path("m.safetensors"), {{"__metadata__", x}}), Error);
  EXPECT_THROW(save_safetensors(path("e.safetensors"), {{"", x}}), Error);
  EXPECT_THROW(save_safetensors(path("u.safetensors"), {{"u", Tensor()}}), Error);
  try {
    save_safetensors(path("no/such/dir/x.safetensors"), {{"a", x}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
  }
}

TEST_F(Safetensors, EmptyFileListRoundTrips) {
  std::string p = path("none.safetensors");
  save_safetensors(p, {});
  EXPECT_TRUE(load_safetensors(p).empty());
}

TEST_F(Safetensors, ErrorMissingFile) {
  expect_load_error(path("absent.safetensors"), "no such file");
  expect_load_error(dir_.string(), "not a regular file");
}

TEST_F(Safetensors, ErrorFileShorterThanLengthPrefix) {
  std::string p = path("short.safetensors");
  std::ofstream(p, std::ios::binary) << "abcde";
  expect_load_error(p, "file has 5 bytes, fewer than the 8-byte header length");
}

TEST_F(Safetensors, ErrorHeaderLengthBeyondFile) {
  expect_load_error(write_raw("{}", "", 1000), "header length 1000 runs past the end of the 10-byte file");
  expect_load_error(write_raw("{}", "", UINT64_MAX - 1), "runs past the end");  // must not wrap around
}

TEST_F(Safetensors, ErrorInvalidJson) {
  expect_load_error(write_raw("{\"a\": {\"dtype\": ", ""), "header is not valid JSON");
  expect_load_error(write_raw("[1, 2]", ""), "header must be a JSON object, got array");
}

TEST_F(Safetensors, ErrorUnknownDtype) {
  expect_load_error(write_raw(R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", "abcd"),
                    "tensor 'h': unsupported dtype 'F16'");
}

TEST_F(Safetensors, ErrorMalformedEntries) {
  expect_load_error(write_raw(R"({"x":{"dtype":"F32","shape":[1]}})", "abcd"),
                    "tensor 'x': missing field 'data_offsets'");
  expect_load_error(write_raw(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"),
                    "shape entries must be non-negative");
  expect_load_error(write_raw(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "abcd"),
                    "data_offsets must be two non-negative integers");
  expect_load_error(write_raw(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "abcd"),
                    "end before they begin");
  expect_load_error(
      write_raw(R"({"x":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", "abcd"),
      "at most 8");
  expect_load_error(write_raw(R"({"__metadata__":{"k":1}})", ""), "__metadata__ entry 'k' must be a string");
}

TEST_F(Safetensors, ErrorOffsetsOutOfBounds) {
  expect_load_error(write_raw(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "abcd"),
                    "tensor 'x': data_offsets [0, 8] run past the 4-byte data buffer");
}

TEST_F(Safetensors, ErrorOffsetsNotMatchingShape) {
  expect_load_error(write_raw(R"({"x":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}})", "abcdefgh"),
                    "tensor 'x': shape [2] of I64 needs 16 bytes but data_offsets [0, 8] hold 8");
  // An absurd shape must be rejected, not overflow into a small byte count.
  expect_load_error(
      write_raw(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", "abcd"),
      "needs more than 4");
}

TEST_F(Safetensors, ErrorOverlappingTensors) {
  expect_load_error(write_raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              "abcdefgh"),
                    "tensors 'a' and 'b' overlap");
}

TEST_F(Safetensors, ErrorGapBetweenTensors) {
  expect_load_error(write_raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                              "abcdefghijkl"),
                    "bytes [4, 8) of the data buffer belong to no tensor");
}

TEST_F(Safetensors, ErrorTrailingGarbage) {
  expect_load_error(write_raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcdXYZ"),
                    "3 trailing bytes after the last tensor");
}

TEST_F(Safetensors, ErrorInvalidBoolByte) {
  expect_load_error(
      write_raw(R"({"b":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\1\0\2", 3)),
      "BOOL tensor 'b' holds byte 2 at element 2");
}

// A file written by Python (tests/golden/make_golden.py, in the layout of the reference `safetensors`
// package: metadata first, tensors sorted by alignment then name, header padded with spaces) with known
// values.
TEST(SafetensorsPython, ReadsFileWrittenByPython) {
  SafetensorsContents c =
      load_safetensors_with_metadata(std::string(LOOM_TEST_DATA_DIR) + "/golden/format.safetensors");
  EXPECT_NE(c.metadata.count("torch_version"), 0u);
  EXPECT_EQ(c.metadata.at("generator"), "tests/golden/make_golden.py");
  const auto& t = c.tensors;
  ASSERT_EQ(t.size(), 7u);
  EXPECT_EQ(t.at("f32").shape(), (Shape{2, 3}));
  EXPECT_EQ(t.at("f32").to_vector<float>(), (std::vector<float>{0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f}));
  EXPECT_EQ(t.at("f64").to_vector<double>(), (std::vector<double>{3.141592653589793, -2.718281828459045}));
  EXPECT_EQ(t.at("i64").to_vector<int64_t>(), (std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX}));
  EXPECT_EQ(t.at("i64").shape(), (Shape{2, 2}));
  EXPECT_EQ(t.at("i32").to_vector<int32_t>(), (std::vector<int32_t>{INT32_MIN, 5, INT32_MAX}));
  EXPECT_EQ(t.at("bool").to_vector<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(t.at("scalar").dim(), 0);
  EXPECT_EQ(t.at("scalar").item<float>(), 7.0f);
  EXPECT_EQ(t.at("empty").shape(), (Shape{0, 4}));
}
