#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace sy::io {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("sy_io_st_" + std::to_string(::getpid()) + "_" + t->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A safetensors file assembled by hand: size field, header (unpadded unless given), data.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sy::Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_HAS(msg, sub) \
  EXPECT_NE((msg).find(sub), std::string::npos) << "message: " << (msg) << "\nwanted: " << (sub)

std::string open_error(const std::string& path) {
  return error_of([&] { SafetensorsReader r(path); });
}

TEST_F(SafetensorsTest, RoundTripsEveryDtypeBitExactly) {
  const float nan_payload = std::bit_cast<float>(0x7fc01234u);
  std::vector<float> f32 = {1.5f,   -0.0f, nan_payload, std::numeric_limits<float>::infinity(),
                            1e-45f, 3.0f};
  std::vector<double> f64 = {1.0 / 3.0, -2.5e300, 0.0};
  std::vector<int32_t> i32 = {std::numeric_limits<int32_t>::min(), -1, 0,
                              std::numeric_limits<int32_t>::max()};
  std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), -(int64_t{1} << 40),
                              (int64_t{1} << 62) + 1, std::numeric_limits<int64_t>::max()};
  std::vector<uint8_t> u8 = {0, 1, 127, 128, 255};
  float scalar = 3.25f;
  const std::string path = file("all.safetensors");
  write_safetensors(path,
                    {{"f32", "F32", {2, 3}, f32.data()},
                     {"f64", "F64", {3}, f64.data()},
                     {"i32", "I32", {4}, i32.data()},
                     {"i64", "I64", {2, 2}, i64.data()},
                     {"u8", "U8", {5}, u8.data()},
                     {"scalar", "F32", {}, &scalar},
                     {"empty", "F32", {0, 4}, nullptr},
                     {"empty_i64", "I64", {3, 0}, nullptr}},
                    {{"format", "pt"}, {"step", "7"}});

  SafetensorsReader r(path);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"empty", "empty_i64", "f32", "f64", "i32", "i64",
                                                 "scalar", "u8"}));
  EXPECT_EQ(r.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"step", "7"}}));
  EXPECT_EQ(r.info("i64").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(r.info("i64").nbytes(), 32);
  EXPECT_EQ(r.info("scalar").numel(), 1);
  EXPECT_EQ(r.info("empty").nbytes(), 0);

  std::vector<float> f32b(6);
  std::vector<double> f64b(3);
  std::vector<int32_t> i32b(4);
  std::vector<int64_t> i64b(4);
  std::vector<uint8_t> u8b(5);
  float scalarb = 0;
  r.read("f32", {2, 3}, f32b.data());
  r.read("f64", {3}, f64b.data());
  r.read("i32", {4}, i32b.data());
  r.read("i64", {2, 2}, i64b.data());
  r.read("u8", {5}, u8b.data());
  r.read("scalar", {}, &scalarb);
  r.read("empty", "F32", {0, 4}, nullptr);
  // -0.0 and the NaN payload must survive, so compare bits, not values.
  // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit-exact on purpose
  EXPECT_EQ(std::memcmp(f32.data(), f32b.data(), 24), 0);
  // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit-exact on purpose
  EXPECT_EQ(std::memcmp(f64.data(), f64b.data(), 24), 0);
  EXPECT_EQ(i32, i32b);
  EXPECT_EQ(i64, i64b);
  EXPECT_EQ(u8, u8b);
  EXPECT_EQ(scalarb, 3.25f);
}

TEST_F(SafetensorsTest, WritesTheExactByteLayout) {
  const float a[2] = {1.0f, -2.0f};
  const uint8_t b[3] = {1, 2, 3};
  const std::string path = file("small.safetensors");
  // "b" is given first; the writer puts the 4-byte dtype before the 1-byte one.
  write_safetensors(path, {{"b", "U8", {3}, b}, {"a", "F32", {2}, a}}, {{"k", "v"}});

  const std::string json =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
  ASSERT_EQ(json.size(), 132u);
  // 132 bytes of JSON, padded with 4 spaces so the data starts at 8 + 136 = 144, a multiple of 8.
  std::string expected("\x88\0\0\0\0\0\0\0", 8);  // N = 136, little-endian u64
  expected += json + "    ";
  expected += std::string("\x00\x00\x80\x3f", 4);  // 1.0f
  expected += std::string("\x00\x00\x00\xc0", 4);  // -2.0f
  expected += std::string("\x01\x02\x03", 3);
  const std::string got = read_all(path);
  ASSERT_EQ(got.size(), 155u);
  EXPECT_EQ(got, expected);
}

// An existing file is overwritten in place (same inode, so its cached pages are reused) and cut
// to the new length: a longer old file leaves no tail behind.
TEST_F(SafetensorsTest, OverwritesALongerFileInPlaceAndCutsItToLength) {
  const std::string path = file("w.safetensors");
  const std::vector<float> big(1000, 7.0f);
  write_safetensors(path, {{"big", "F32", {1000}, big.data()}, {"x", "F32", {1}, big.data()}});
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  const float small[2] = {1.0f, -2.0f};
  write_safetensors(path, {{"a", "F32", {2}, small}});
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  const std::string got = read_all(path);
  const std::string json = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(got.size(), 8 + json.size() + (8 - json.size() % 8) % 8 + 8);
  SafetensorsReader r(path);
  EXPECT_EQ(r.names(), std::vector<std::string>{"a"});
  float back[2] = {};
  r.read("a", {2}, back);
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], -2.0f);
}

TEST_F(SafetensorsTest, OrdersByElementSizeSoEveryTensorIsAligned) {
  const int64_t z[1] = {5};
  const float a[3] = {1, 2, 3};
  const uint8_t m[3] = {1, 2, 3};
  const double d[1] = {2};
  const std::string path = file("order.safetensors");
  write_safetensors(
      path,
      {{"m", "U8", {3}, m}, {"z", "I64", {1}, z}, {"a", "F32", {3}, a}, {"d", "F64", {1}, d}});
  SafetensorsReader r(path);
  EXPECT_EQ(r.info("d").begin, 0);
  EXPECT_EQ(r.info("z").begin, 8);
  EXPECT_EQ(r.info("a").begin, 16);
  EXPECT_EQ(r.info("m").begin, 28);
  const std::string bytes = read_all(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes.find("__metadata__"), std::string::npos);  // omitted when empty
}

TEST_F(SafetensorsTest, ReadsUnpaddedFilesFromOtherWriters) {
  // No padding, no metadata, keys in any order, data not aligned: still valid safetensors.
  const std::string header =
      R"({"x":{"data_offsets":[1,9],"shape":[2],"dtype":"F32"},"y":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  std::string data = "\x07";
  const float x[2] = {0.5f, 4.0f};
  data.append(reinterpret_cast<const char*>(x), 8);
  write_all(file("u.safetensors"), raw_file(header, data));
  SafetensorsReader r(file("u.safetensors"));
  float xb[2];
  uint8_t yb;
  r.read("x", {2}, xb);
  r.read("y", {1}, &yb);
  EXPECT_EQ(xb[0], 0.5f);
  EXPECT_EQ(xb[1], 4.0f);
  EXPECT_EQ(yb, 7);
}

TEST_F(SafetensorsTest, RejectsFileShorterThanTheSizeField) {
  write_all(file("t.safetensors"), "abc");
  const std::string msg = open_error(file("t.safetensors"));
  EXPECT_HAS(msg, file("t.safetensors"));
  EXPECT_HAS(msg, "at least 8 bytes");
  EXPECT_HAS(msg, "got 3");
}

TEST_F(SafetensorsTest, RejectsHeaderSizeLargerThanFile) {
  std::string bytes = raw_file(R"({})", "");
  bytes[0] = 100;  // claims a 100-byte header in a 10-byte file
  write_all(file("h.safetensors"), bytes);
  const std::string msg = open_error(file("h.safetensors"));
  EXPECT_HAS(msg, file("h.safetensors"));
  EXPECT_HAS(msg, "header size must be at most 2 bytes (the file is 10 bytes), got 100");
  EXPECT_HAS(msg, "truncated");
}

TEST_F(SafetensorsTest, RejectsTruncatedFile) {
  const float a[4] = {1, 2, 3, 4};
  write_safetensors(file("t.safetensors"), {{"a", "F32", {4}, a}});
  const auto size = fs::file_size(file("t.safetensors"));
  fs::resize_file(file("t.safetensors"), size - 1);
  const std::string msg = open_error(file("t.safetensors"));
  EXPECT_HAS(msg, "tensor a data_offsets must lie within the 15-byte data buffer, got [0, 16]");
}

TEST_F(SafetensorsTest, RejectsBadJson) {
  write_all(file("j.safetensors"), raw_file(R"({"a": {"dtype": "F32",)", ""));
  const std::string msg = open_error(file("j.safetensors"));
  EXPECT_HAS(msg, file("j.safetensors"));
  EXPECT_HAS(msg, "header must be valid JSON");
}

// Found by fuzz/safetensors_fuzz (fuzz/regressions/safetensors/json-number-overflow): a number
// beyond double's range makes nlohmann::json throw out_of_range, not parse_error, and it escaped
// the reader as a foreign exception.
TEST_F(SafetensorsTest, RejectsJsonNumberOverflowAsSyError) {
  write_all(
      file("n.safetensors"),
      raw_file(R"({"a": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}})", "abcd"));
  const std::string msg = open_error(file("n.safetensors"));
  EXPECT_HAS(msg, file("n.safetensors"));
  EXPECT_HAS(msg, "header must be valid JSON");
  EXPECT_HAS(msg, "number overflow");
}

TEST_F(SafetensorsTest, RejectsHeaderThatIsNotAnObject) {
  write_all(file("j.safetensors"), raw_file("[1, 2]", ""));
  EXPECT_HAS(open_error(file("j.safetensors")), "header must be a JSON object, got array");
}

TEST_F(SafetensorsTest, RejectsOffsetsOutOfRange) {
  write_all(file("o.safetensors"),
            raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"));
  const std::string msg = open_error(file("o.safetensors"));
  EXPECT_HAS(msg, "tensor a data_offsets must lie within the 4-byte data buffer, got [0, 8]");
}

TEST_F(SafetensorsTest, RejectsNegativeOrReversedOffsets) {
  write_all(file("o.safetensors"),
            raw_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[4,2]}})", "1234"));
  EXPECT_HAS(open_error(file("o.safetensors")), "got [4, 2]");
  write_all(file("n.safetensors"),
            raw_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[-2,0]}})", "12"));
  EXPECT_HAS(open_error(file("n.safetensors")), "data_offsets must be [begin, end]");
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  write_all(file("v.safetensors"),
            raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                     "12345678"));
  const std::string msg = open_error(file("v.safetensors"));
  EXPECT_HAS(msg, "must not overlap tensor");
  EXPECT_HAS(msg, "[4, 8]");
}

TEST_F(SafetensorsTest, RejectsGapsAndTrailingBytes) {
  write_all(file("g.safetensors"),
            raw_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                     R"("b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})",
                     "12345"));
  EXPECT_HAS(open_error(file("g.safetensors")), "bytes [2, 3) belong to no tensor");
  write_all(file("t.safetensors"),
            raw_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "1234"));
  EXPECT_HAS(open_error(file("t.safetensors")), "2 trailing bytes belong to no tensor");
}

TEST_F(SafetensorsTest, RejectsOffsetsInconsistentWithDtypeAndShape) {
  write_all(file("s.safetensors"),
            raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678"));
  const std::string msg = open_error(file("s.safetensors"));
  EXPECT_HAS(msg, "tensor a data_offsets must span numel([3]) x 4 bytes (F32) = 12 bytes");
  EXPECT_HAS(msg, "got [0, 8] (8 bytes)");
}

TEST_F(SafetensorsTest, RejectsUnknownDtypeAndMalformedEntries) {
  write_all(file("d.safetensors"),
            raw_file(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", "1"));
  EXPECT_HAS(open_error(file("d.safetensors")), "tensor a: dtype must be one of");
  write_all(file("e.safetensors"), raw_file(R"({"a":{"dtype":"U8","shape":[1.5],)"
                                            R"("data_offsets":[0,1]}})",
                                            "1"));
  EXPECT_HAS(open_error(file("e.safetensors")), "shape must hold non-negative integers");
  write_all(file("m.safetensors"), raw_file(R"({"__metadata__":{"k":1}})", ""));
  EXPECT_HAS(open_error(file("m.safetensors")), "__metadata__[k] must be a string");
}

TEST_F(SafetensorsTest, ReadRejectsShapeDtypeMismatchAndMissingTensor) {
  const float w[6] = {};
  const std::string path = file("r.safetensors");
  write_safetensors(path, {{"w", "F32", {2, 3}, w}});
  SafetensorsReader r(path);
  float dst[6];
  EXPECT_HAS(error_of([&] {
               r.read("w", {3, 2}, dst);
             }),
             path + ": tensor w has shape [2, 3], expected [3, 2]");
  EXPECT_HAS(error_of([&] {
               r.read("w", "F64", {2, 3}, dst);
             }),
             path + ": tensor w has dtype F32, expected F64");
  const std::string missing = error_of([&] { r.read("v", {2, 3}, dst); });
  EXPECT_HAS(missing, path + ": tensor v must be present");
  EXPECT_HAS(missing, "holds 1: w");
  EXPECT_FALSE(r.has("v"));
  EXPECT_TRUE(r.has("w"));
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  const float a[2] = {};
  const std::string path = file("w.safetensors");
  EXPECT_HAS(error_of([&] {
               write_safetensors(path, {{"a", "F32", {2}, a}, {"a", "F32", {2}, a}});
             }),
             "tensor names must be unique, got 'a' twice");
  EXPECT_HAS(error_of([&] {
               write_safetensors(path, {{"a", "F16", {2}, a}});
             }),
             "tensor a dtype must be one of F32, F64, I32, I64, U8, got 'F16'");
  EXPECT_HAS(error_of([&] {
               write_safetensors(path, {{"a", "F32", {-1}, a}});
             }),
             "shape must have non-negative dims");
  EXPECT_HAS(error_of([&] {
               write_safetensors(path, {{"__metadata__", "F32", {2}, a}});
             }),
             "reserved");
  EXPECT_HAS(error_of([&] { write_safetensors(file("no/such/dir/x"), {}); }),
             "cannot open for writing");
}

TEST_F(SafetensorsTest, MissingFileNamesThePath) {
  EXPECT_HAS(open_error(file("absent.safetensors")),
             file("absent.safetensors") + ": cannot open safetensors file");
}

}  // namespace
}  // namespace sy::io
