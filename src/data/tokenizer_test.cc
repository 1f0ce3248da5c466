#include "data/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/test_util.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

const std::string kTestdata = SY_DATA_TESTDATA;

std::string temp_dir() { return test::temp_dir("tok"); }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A tiny model (vocab 400: 256 bytes + 3 specials + the fixture's ~115 characters + merges) in
// well under a second. Trained once per test process.
const std::string& tiny_model() {
  static const std::string path = [] {
    const std::string prefix = fs::temp_directory_path() / fmt::format("sy_tok_model_{}", getpid());
    TokenizerTrainOptions opt;
    opt.num_threads = 1;
    train_tokenizer({kTestdata + "/tokenizer_train.txt"}, prefix, 400, opt);
    test::remove_at_exit(prefix + ".model");
    test::remove_at_exit(prefix + ".vocab");
    return prefix + ".model";
  }();
  return path;
}

TEST(TokenizerTest, TrainsAModelWithTheRequestedVocabulary) {
  const Tokenizer tok(tiny_model());
  EXPECT_EQ(tok.vocab_size(), 400);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.newline_id(), 3 + 0x0A);  // byte pieces follow the specials, in byte order
}

TEST(TokenizerTest, TrainingIsDeterministic) {
  const std::string dir = temp_dir();
  TokenizerTrainOptions opt;
  opt.num_threads = 1;
  // 8 numbered copies of the fixture (~360 lines), of which the seeded sampling keeps 150.
  const std::string base = read_text(kTestdata + "/tokenizer_train.txt");
  std::string big;
  for (int copy = 0; copy < 8; ++copy) {
    size_t start = 0;
    for (size_t nl; (nl = base.find('\n', start)) != std::string::npos; start = nl + 1) {
      big += fmt::format("{} {}\n", copy, base.substr(start, nl - start));
    }
  }
  write_text(dir + "/big.txt", big);
  opt.input_sentence_size = 150;
  train_tokenizer({dir + "/big.txt"}, dir + "/a", 400, opt);
  train_tokenizer({dir + "/big.txt"}, dir + "/b", 400, opt);
  // The .model embeds its own prefix in the trainer spec; the pieces and scores must agree.
  EXPECT_TRUE(read_text(dir + "/a.vocab") == read_text(dir + "/b.vocab"));
  const Tokenizer a(dir + "/a.model"), b(dir + "/b.model");
  const std::string text = read_text(kTestdata + "/roundtrip_code.txt");
  EXPECT_EQ(a.encode(text), b.encode(text));
}

TEST(TokenizerTest, RoundTripsFixturesExactly) {
  const Tokenizer tok(tiny_model());
  for (const char* name : {"roundtrip_code.txt", "roundtrip_blank.txt", "roundtrip_unicode.txt",
                           "roundtrip_crlf.txt", "tokenizer_train.txt"}) {
    const std::string text = read_text(kTestdata + "/" + name);
    ASSERT_FALSE(text.empty()) << name;
    const std::vector<int32_t> ids = tok.encode(text, name);
    EXPECT_EQ(tok.decode(ids), text) << name;
    for (const int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size());
  }
}

TEST(TokenizerTest, RoundTripsEdgeCases) {
  const Tokenizer tok(tiny_model());
  for (const std::string& text : std::vector<std::string>{
           "", "\n", "\n\n\n", " ", "  \n  ", "x", " x", "x ", "\tx\n", "a\n\nb\n", "12345",
           "\xE2\x96\x81", "\xE2\x96\x81\xE2\x96\x81 x", " \xE2\x96\x81", "a \xE2\x96\x81 b",
           "\xE2\x96\x81\n\xE2\x96\x81", "\xF0\x9F\x98\x80", std::string("nul\0byte", 8)}) {
    EXPECT_EQ(tok.decode(tok.encode(text)), text) << "text: [" << text << "]";
  }
}

TEST(TokenizerTest, NewlinesAreTheByteToken) {
  const Tokenizer tok(tiny_model());
  const std::vector<int32_t> ids = tok.encode("ab\n\ncd\n");
  int newlines = 0;
  for (const int32_t id : ids) newlines += id == tok.newline_id();
  EXPECT_EQ(newlines, 3);
  EXPECT_EQ(ids.back(), tok.newline_id());
  // Lines are encoded independently: a line's ids do not depend on its neighbours.
  const auto cd = tok.encode("cd");
  EXPECT_TRUE(std::equal(cd.begin(), cd.end(), ids.end() - 1 - static_cast<int64_t>(cd.size())));
}

TEST(TokenizerTest, DigitsAreSplit) {
  const Tokenizer tok(tiny_model());
  // split_digits: "1859" is at least four pieces even though it occurs in the training text.
  EXPECT_GE(tok.encode("1859").size(), 4u);
}

TEST(TokenizerTest, DecodeSkipsControlIdsAndRejectsOutOfRange) {
  const Tokenizer tok(tiny_model());
  std::vector<int32_t> ids = tok.encode("first doc");
  ids.push_back(tok.eos_id());
  const auto second = tok.encode("second doc");
  ids.insert(ids.end(), second.begin(), second.end());
  EXPECT_EQ(tok.decode(ids), "first docsecond doc");
  const std::vector<int32_t> bad{5, 400};
  EXPECT_NE(error_of([&] { tok.decode(bad); }).find("token id must be in [0, 400), got 400"),
            std::string::npos);
}

TEST(TokenizerTest, RejectsInvalidUtf8WithLineAndColumn) {
  const Tokenizer tok(tiny_model());
  EXPECT_EQ(error_of([&] { tok.encode("ok\nab\xFF", "doc.txt"); }),
            "doc.txt:2:3: text must be valid UTF-8, got byte 0xff (convert the file to UTF-8, "
            "e.g. with iconv)");
  // Overlong, surrogate, truncated.
  for (const std::string bad : {"\xC0\xAF", "\xED\xA0\x80", "\xE2\x96", "\xF4\x90\x80\x80"}) {
    EXPECT_NE(error_of([&] { check_utf8(bad, "t"); }).find("t:1:1: text must be valid UTF-8"),
              std::string::npos);
  }
  check_utf8("\xF4\x8F\xBF\xBF \xEF\xBB\xBF", "t");  // U+10FFFF and a BOM are valid
}

TEST(TokenizerTest, TrainingRejectsNonUtf8InputNamingFileAndLine) {
  const std::string dir = temp_dir();
  write_text(dir + "/latin1.txt", "fine\nalso fine\ncaf\xE9\n");
  const std::string msg =
      error_of([&] { train_tokenizer({dir + "/latin1.txt"}, dir + "/m", 400); });
  EXPECT_NE(msg.find("latin1.txt:3:4: text must be valid UTF-8, got byte 0xe9"), std::string::npos)
      << msg;
  EXPECT_FALSE(fs::exists(dir + "/m.model"));
  EXPECT_NE(error_of([&] {
              train_tokenizer({dir + "/absent.txt"}, dir + "/m", 400);
            }).find("absent.txt: tokenizer training input must be a readable file"),
            std::string::npos);
}

TEST(TokenizerTest, MissingOrCorruptModelFileIsAClearError) {
  const std::string dir = temp_dir();
  const std::string missing = error_of([&] { Tokenizer t(dir + "/none.model"); });
  EXPECT_NE(missing.find("none.model: tokenizer model must be an existing file"), std::string::npos)
      << missing;
  write_text(dir + "/junk.model", "this is not a protobuf \xFF\xFF\xFF\xFF");
  const std::string corrupt = error_of([&] { Tokenizer t(dir + "/junk.model"); });
  EXPECT_NE(corrupt.find("junk.model: tokenizer model must be a SentencePiece .model file"),
            std::string::npos)
      << corrupt;
}

}  // namespace
}  // namespace sy
