#include "data/indexed_dataset.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "data/test_util.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

std::string temp_dir() { return test::temp_dir("idx"); }

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Appends v as `n` little-endian bytes, independently of the writer under test.
void put(std::vector<unsigned char>* b, uint64_t v, int n) {
  for (int k = 0; k < n; ++k) b->push_back(static_cast<unsigned char>(v >> (8 * k)));
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected sy::Error mentioning " << parts.front();
  } catch (const Error& e) {
    for (const auto& p : parts) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << p;
    }
  }
}

// The small example: 4 documents (the third empty), 4 sequences (the third empty).
//   doc 0: [1 2 3]   doc 1: [4] []   doc 2: (none)   doc 3: [65535 0]
std::string write_example(const std::string& dir, TokenDtype dtype = TokenDtype::kU16) {
  std::string prefix = dir + "/example";
  IndexedDatasetWriter w(prefix, dtype);
  w.add_document(std::vector<int32_t>{1, 2, 3});
  w.add_sequence(std::vector<int32_t>{4});
  w.add_sequence(std::vector<int32_t>{});
  w.end_document();
  w.end_document();
  w.add_sequence(std::vector<int32_t>{65535, 0});
  w.end_document();
  EXPECT_EQ(w.num_sequences(), 4);
  EXPECT_EQ(w.num_documents(), 4);
  EXPECT_EQ(w.num_tokens(), 6);
  w.finalize();
  return prefix;
}

TEST(IndexedDatasetWriterTest, WritesTheDocumentedByteLayout) {
  const std::string prefix = write_example(temp_dir());
  std::vector<unsigned char> idx;
  for (const char c : std::string("MMIDIDX\0\0", 9)) idx.push_back(static_cast<unsigned char>(c));
  put(&idx, 1, 8);  // offset 9: version
  put(&idx, 8, 1);  // offset 17: dtype code, uint16
  put(&idx, 4, 8);  // offset 18: sequence count
  put(&idx, 5, 8);  // offset 26: document-index count, with the leading 0
  ASSERT_EQ(idx.size(), 34u);
  for (const uint64_t len : {3, 1, 0, 2}) put(&idx, len, 4);  // offset 34: int32 lengths
  for (const uint64_t ptr : {0, 6, 8, 8}) put(&idx, ptr, 8);  // offset 50: int64 pointers
  for (const uint64_t d : {0, 1, 3, 3, 4}) put(&idx, d, 8);   // offset 82: int64 doc indices
  EXPECT_EQ(idx.size(), 122u);
  EXPECT_EQ(read_bytes(prefix + ".idx"), idx);

  std::vector<unsigned char> bin;
  for (const uint64_t t : {1, 2, 3, 4, 65535, 0}) put(&bin, t, 2);
  EXPECT_EQ(read_bytes(prefix + ".bin"), bin);
  EXPECT_FALSE(fs::exists(prefix + ".bin.tmp"));
  EXPECT_FALSE(fs::exists(prefix + ".idx.tmp"));
}

TEST(IndexedDatasetTest, ReadsSequencesAndDocuments) {
  const std::string prefix = write_example(temp_dir());
  const IndexedDataset ds(prefix);
  EXPECT_EQ(ds.dtype(), TokenDtype::kU16);
  EXPECT_EQ(ds.num_sequences(), 4);
  EXPECT_EQ(ds.num_documents(), 4);
  EXPECT_EQ(ds.num_tokens(), 6);
  const auto s0 = ds.sequence<uint16_t>(0);
  EXPECT_EQ(std::vector<uint16_t>(s0.begin(), s0.end()), (std::vector<uint16_t>{1, 2, 3}));
  EXPECT_EQ(ds.read(3), (std::vector<int32_t>{65535, 0}));
  EXPECT_TRUE(ds.read(2).empty());
  EXPECT_EQ(ds.sequence_pointer(3), 8);
  EXPECT_EQ(ds.document_range(0), std::make_pair(int64_t{0}, int64_t{1}));
  EXPECT_EQ(ds.document_range(1), std::make_pair(int64_t{1}, int64_t{3}));
  EXPECT_EQ(ds.document_range(2), std::make_pair(int64_t{3}, int64_t{3}));
  EXPECT_EQ(ds.document_range(3), std::make_pair(int64_t{3}, int64_t{4}));
  int32_t two[2];
  ds.read(0, 1, 2, two);
  EXPECT_EQ(two[0], 2);
  EXPECT_EQ(two[1], 3);
  expect_error([&] { ds.read(0, 2, 2, two); }, {"token range [2, 4)", "3 tokens"});
  expect_error([&] { ds.sequence_length(4); }, {"sequence index must be in [0, 4), got 4"});
  expect_error([&] { ds.document_range(4); }, {"document index must be in [0, 4), got 4"});
  expect_error([&] { ds.sequence<int32_t>(0); }, {"dtype uint16, got int32"});
}

TEST(IndexedDatasetTest, RoundTripsEveryIntegerDtype) {
  const std::string dir = temp_dir();
  const std::vector<std::pair<TokenDtype, int32_t>> cases = {
      {TokenDtype::kU8, 255},    {TokenDtype::kI8, 127},         {TokenDtype::kI16, 32767},
      {TokenDtype::kU16, 65535}, {TokenDtype::kI32, 2147483647}, {TokenDtype::kI64, 2147483647}};
  for (const auto& [dtype, top] : cases) {
    const std::string prefix = fmt::format("{}/d{}", dir, static_cast<int>(dtype));
    const std::vector<int32_t> a{0, 1, top}, b{top - 1, 7};
    {
      IndexedDatasetWriter w(prefix, dtype);
      w.add_sequence(a);
      w.add_sequence(b);
      w.end_document();
      w.finalize();
    }
    const IndexedDataset ds(prefix);
    EXPECT_EQ(ds.dtype(), dtype);
    EXPECT_EQ(ds.read(0), a);
    EXPECT_EQ(ds.read(1), b);
    EXPECT_EQ(fs::file_size(prefix + ".bin"), 5 * token_dtype_size(static_cast<uint8_t>(dtype)));
  }
}

TEST(IndexedDatasetWriterTest, ChoosesDtypeAsMegatron) {
  EXPECT_EQ(token_dtype_for_vocab(8192), TokenDtype::kU16);
  EXPECT_EQ(token_dtype_for_vocab(65499), TokenDtype::kU16);
  EXPECT_EQ(token_dtype_for_vocab(65500), TokenDtype::kI32);
  EXPECT_EQ(token_dtype_for_vocab(151936), TokenDtype::kI32);
}

TEST(IndexedDatasetWriterTest, RejectsTokensOutsideTheDtype) {
  const std::string prefix = temp_dir() + "/bad";
  IndexedDatasetWriter w(prefix, TokenDtype::kU16);
  expect_error(
      [&] {
        w.add_sequence(std::vector<int32_t>{1, 70000});
      },
      {"bad.bin", "token id must be in [0, 65535] for dtype uint16, got 70000"});
  expect_error([&] { w.add_sequence(std::vector<int32_t>{-1}); }, {"got -1 at position 0"});
  expect_error([] { IndexedDatasetWriter f("/tmp/x", TokenDtype::kF32); },
               {"integer type", "code 7 (float32)"});
}

TEST(IndexedDatasetWriterTest, RequiresClosedDocumentAtFinalize) {
  const std::string prefix = temp_dir() + "/open";
  IndexedDatasetWriter w(prefix, TokenDtype::kI32);
  w.add_sequence(std::vector<int32_t>{1});
  expect_error([&] { w.finalize(); }, {"1 sequence(s) after the last end_document()"});
  w.end_document();
  w.finalize();
  expect_error([&] { w.add_sequence(std::vector<int32_t>{1}); }, {"before finalize()"});
}

TEST(IndexedDatasetWriterTest, AbandonedWriterLeavesNoFiles) {
  const std::string dir = temp_dir();
  {
    IndexedDatasetWriter w(dir + "/gone", TokenDtype::kI32);
    w.add_document(std::vector<int32_t>{1, 2});
  }
  EXPECT_TRUE(fs::is_empty(dir));
}

// Corruptions of the example: each must fail on open with a message naming the file and fault.
class CorruptDatasetTest : public testing::Test {
 protected:
  void SetUp() override {
    prefix_ = write_example(temp_dir());
    idx_ = read_bytes(prefix_ + ".idx");
    bin_ = read_bytes(prefix_ + ".bin");
  }
  void expect_open_fails(const std::vector<std::string>& parts) {
    write_bytes(prefix_ + ".idx", idx_);
    write_bytes(prefix_ + ".bin", bin_);
    expect_error([&] { IndexedDataset ds(prefix_); }, parts);
  }
  std::string prefix_;
  std::vector<unsigned char> idx_, bin_;
};

TEST_F(CorruptDatasetTest, RejectsTruncatedBin) {
  bin_.resize(bin_.size() - 2);
  expect_open_fails({"example.bin", "sequence 3", "past its end", "truncated .bin"});
}

TEST_F(CorruptDatasetTest, RejectsBinLongerThanIndex) {
  bin_.push_back(0);
  bin_.push_back(0);
  expect_open_fails({"example.bin", "file size must be 12 bytes", "got 14"});
}

TEST_F(CorruptDatasetTest, RejectsWrongMagic) {
  idx_[0] = 'X';
  expect_open_fails({"example.idx", "magic must be \"MMIDIDX"});
}

TEST_F(CorruptDatasetTest, RejectsWrongVersion) {
  idx_[9] = 2;
  expect_open_fails({"example.idx", "version must be 1, got 2"});
}

TEST_F(CorruptDatasetTest, RejectsBadDtypeCode) {
  idx_[17] = 9;
  expect_open_fails({"example.idx", "dtype code must be an integer token type", "got 9 (unknown"});
  idx_[17] = 6;
  expect_open_fails({"got 6 (float64"});
}

TEST_F(CorruptDatasetTest, RejectsPointerPastEnd) {
  idx_[50 + 3 * 8] = 200;  // sequence 3 pointer: 8 -> 200
  expect_open_fails({"example.bin", "sequence 3 (bytes [200, 204))", "inside the file of 12"});
}

// Found by fuzz/indexed_dataset_fuzz (fuzz/regressions/indexed_dataset/pointer-near-int64-max):
// the message's end offset, pointer + length * itemsize, overflowed int64_t (UBSan:
// signed-integer-overflow) for a pointer near INT64_MAX.
TEST_F(CorruptDatasetTest, RejectsPointerNearInt64MaxWithoutOverflow) {
  for (int k = 0; k < 8; ++k) idx_[50 + 3 * 8 + k] = k == 7 ? 0x7f : 0xff;
  idx_[50 + 3 * 8] = 0xfe;  // sequence 3 pointer: INT64_MAX - 1, a multiple of 2
  expect_open_fails({"example.bin", "sequence 3 (bytes [9223372036854775806, 9223372036854775810))",
                     "inside the file of 12"});
}

TEST_F(CorruptDatasetTest, RejectsOverlappingPointers) {
  idx_[50 + 1 * 8] = 4;  // sequence 1 starts inside sequence 0
  expect_open_fails(
      {"example.idx", "sequence 1 pointer must be a multiple of 2 and >= 6", "got 4"});
}

TEST_F(CorruptDatasetTest, RejectsTruncatedIndex) {
  idx_.resize(idx_.size() - 8);
  expect_open_fails({"example.idx", "file size must be 122 bytes", "got 114", "truncated"});
  idx_.resize(20);
  expect_open_fails({"at least the 34-byte MMIDIDX header, got 20"});
}

TEST_F(CorruptDatasetTest, RejectsInconsistentDocumentIndex) {
  idx_[82 + 4 * 8] = 3;  // last document index 4 -> 3
  expect_open_fails({"example.idx", "last document index must be the sequence count 4, got 3"});
  idx_[82 + 4 * 8] = 4;
  idx_[82 + 2 * 8] = 0;  // 0 1 0 3 4: decreasing
  expect_open_fails({"document index 2 must be in [1, 4]", "got 0"});
  idx_[82 + 2 * 8] = 3;
  idx_[82] = 1;  // leading entry must be 0
  expect_open_fails({"document index 0 must be 0, got 1"});
}

TEST_F(CorruptDatasetTest, RejectsHugeCountsInHeader) {
  idx_[18 + 7] = 0x7f;  // sequence count ~ 2^62
  expect_open_fails({"example.idx", "corrupt header"});
}

TEST(IndexedDatasetTest, MissingFilesNameThePath) {
  const std::string dir = temp_dir();
  expect_error([&] { IndexedDataset ds(dir + "/nothing"); },
               {"nothing.idx", "must be readable", "dataset prefix"});
  const std::string prefix = write_example(dir);
  fs::remove(prefix + ".bin");
  expect_error([&] { IndexedDataset ds(prefix); }, {"example.bin", "must be readable"});
}

TEST(IndexedDatasetTest, EmptyDatasetOpens) {
  const std::string prefix = temp_dir() + "/empty";
  IndexedDatasetWriter w(prefix, TokenDtype::kU16);
  w.finalize();
  const IndexedDataset ds(prefix);
  EXPECT_EQ(ds.num_sequences(), 0);
  EXPECT_EQ(ds.num_documents(), 0);
  EXPECT_EQ(fs::file_size(prefix + ".idx"), 34u + 8u);
}

// Regression: the .bin was memory-mapped, so a file truncated under a running job (e.g. by
// preprocessing rerun in place) killed the process with a bare SIGBUS at the next read.
TEST(IndexedDatasetTest, BinTruncatedWhileOpenIsAnErrorNamingTheFile) {
  const std::string dir = temp_dir();
  for (const TokenDtype dtype : {TokenDtype::kU16, TokenDtype::kI32}) {
    const std::string prefix = fmt::format("{}/d{}", dir, static_cast<int>(dtype));
    const int64_t item = token_dtype_size(static_cast<uint8_t>(dtype));
    std::vector<int32_t> doc(5000);
    for (size_t t = 0; t < doc.size(); ++t) doc[t] = static_cast<int32_t>(t % 1000);
    {
      IndexedDatasetWriter w(prefix, dtype);
      for (int d = 0; d < 3; ++d) w.add_document(doc);
      w.finalize();
    }
    const IndexedDataset ds(prefix);
    const int64_t size = 3 * 5000 * item, cut = 6000 * item;  // pages past the cut are gone
    ASSERT_EQ(static_cast<int64_t>(fs::file_size(prefix + ".bin")), size);
    fs::resize_file(prefix + ".bin", static_cast<uintmax_t>(cut));
    fs::resize_file(prefix + ".idx", 0);  // read at open: no longer needed
    EXPECT_EQ(ds.read(0), doc);
    const std::string what = fmt::format(
        "{}.bin: was truncated while in use ({} bytes when opened, {} now); restore the file "
        "and resume",
        prefix, size, cut);
    expect_error([&] { ds.read(2); }, {what});
    int32_t out[10];
    expect_error([&] { ds.read(1, 4995, 5, out); }, {what});
    ds.read(1, 0, 10, out);  // still inside the file
    EXPECT_EQ(out[9], 9);
  }
}

}  // namespace
}  // namespace sy
