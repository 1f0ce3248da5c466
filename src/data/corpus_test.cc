#include "data/corpus.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/indexed_dataset.h"
#include "data/test_util.h"
#include "data/tokenizer.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

const std::string kTestdata = SY_DATA_TESTDATA;

std::string temp_dir() { return test::temp_dir("corpus"); }

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A vocab-400 model trained once per process on the tokenizer fixture.
const std::string& tiny_model() {
  static const std::string path = [] {
    const std::string prefix =
        fs::temp_directory_path() / fmt::format("sy_corpus_model_{}", getpid());
    TokenizerTrainOptions opt;
    opt.num_threads = 1;
    train_tokenizer({kTestdata + "/tokenizer_train.txt"}, prefix, 400, opt);
    test::remove_at_exit(prefix + ".model");
    test::remove_at_exit(prefix + ".vocab");
    return prefix + ".model";
  }();
  return path;
}

TokenizeOptions quiet_with(const std::string& model) {
  TokenizeOptions o;
  o.tokenizer = model;
  o.quiet = true;
  return o;
}

// The texts of every document of a dataset, decoded.
std::vector<std::string> decoded_documents(const std::string& prefix, const Tokenizer& tok) {
  const IndexedDataset ds(prefix);
  std::vector<std::string> out;
  for (int64_t d = 0; d < ds.num_documents(); ++d) {
    const auto [first, last] = ds.document_range(d);
    std::vector<int32_t> ids;
    for (int64_t s = first; s < last; ++s) {
      const auto seq = ds.read(s);
      ids.insert(ids.end(), seq.begin(), seq.end());
    }
    out.push_back(tok.decode(ids));
  }
  return out;
}

TEST(TokenizeFilesTest, OneDocumentPerFileAndPerJsonlLineRoundTrips) {
  const std::string dir = temp_dir();
  // Directory: sorted recursively, dot-files skipped.
  write_text(dir + "/in/b.txt", "second file\n\twith a tab and trailing space \n");
  write_text(dir + "/in/a.txt", "first file, no final newline");
  write_text(dir + "/in/sub/c.py", "def f(x):\n    return x + 1\n\n\n");
  write_text(dir + "/in/.hidden", "not a document");
  write_text(dir + "/docs.jsonl",
             "{\"text\": \"json doc one\\nline two\", \"source\": \"x\"}\n"
             "\n"
             "{\"text\": \"caf\\u00e9 \\u2581 second\"}\n");
  const TokenizeResult r = tokenize_files({dir + "/in", dir + "/docs.jsonl"}, "mine",
                                          dir + "/out/mine", quiet_with(tiny_model()));
  EXPECT_EQ(r.documents, 5);
  const std::vector<std::string> want = {
      "first file, no final newline", "second file\n\twith a tab and trailing space \n",
      "def f(x):\n    return x + 1\n\n\n", "json doc one\nline two",
      "caf\xC3\xA9 \xE2\x96\x81 second"};
  const Tokenizer tok(tiny_model());
  EXPECT_EQ(decoded_documents(dir + "/out/mine", tok), want);
  const IndexedDataset ds(dir + "/out/mine");
  EXPECT_EQ(ds.dtype(), TokenDtype::kU16);
  EXPECT_EQ(ds.num_tokens(), r.tokens);

  const auto meta = nlohmann::json::parse(read_text(dir + "/out/mine.json"));
  EXPECT_EQ(meta["domain"], "mine");
  EXPECT_EQ(meta["documents"], 5);
  EXPECT_EQ(meta["tokenizer"]["eos_id"], tok.eos_id());
  EXPECT_EQ(meta["inputs"].size(), 4u);
}

TEST(TokenizeFilesTest, TrainsANewTokenizerOnTheInputs) {
  const std::string dir = temp_dir();
  write_text(dir + "/extra.txt", "one more document\n");
  TokenizeOptions o;
  o.vocab_size = 400;
  o.threads = 1;
  o.quiet = true;
  const TokenizeResult r = tokenize_files({kTestdata + "/tokenizer_train.txt", dir + "/extra.txt"},
                                          "fixture", dir + "/fx", o);
  EXPECT_EQ(r.tokenizer, dir + "/fx.tokenizer.model");
  const Tokenizer tok(r.tokenizer);
  EXPECT_EQ(tok.vocab_size(), 400);
  const auto docs = decoded_documents(dir + "/fx", tok);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0], read_text(kTestdata + "/tokenizer_train.txt"));
  EXPECT_EQ(docs[1], "one more document\n");
  EXPECT_FALSE(fs::exists(dir + "/fx.tokenizer_sample.txt"));
}

TEST(TokenizeFilesTest, RejectsNonUtf8NamingFileAndLine) {
  const std::string dir = temp_dir();
  write_text(dir + "/bad.txt", "fine\nalso fine\nbroken \xFF here\n");
  const std::string msg = error_of(
      [&] { tokenize_files({dir + "/bad.txt"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find(dir + "/bad.txt:3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir + "/o.idx"));

  write_text(dir + "/bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"x\xC0\"}\n");
  const std::string msg2 = error_of(
      [&] { tokenize_files({dir + "/bad.jsonl"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg2.find(dir + "/bad.jsonl:2:"), std::string::npos) << msg2;
}

TEST(TokenizeFilesTest, RejectsEmptyInput) {
  const std::string dir = temp_dir();
  write_text(dir + "/empty.txt", "");
  std::string msg = error_of(
      [&] { tokenize_files({dir + "/empty.txt"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find(dir + "/empty.txt: document must be non-empty"), std::string::npos) << msg;

  write_text(dir + "/empty.jsonl", "\n\n");
  msg = error_of(
      [&] { tokenize_files({dir + "/empty.jsonl"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find(dir + "/empty.jsonl: JSONL input must hold at least one document"),
            std::string::npos)
      << msg;

  fs::create_directories(dir + "/nothing");
  msg = error_of(
      [&] { tokenize_files({dir + "/nothing"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find("at least one file"), std::string::npos) << msg;

  msg = error_of([&] { tokenize_files({}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find("at least one path"), std::string::npos) << msg;

  msg = error_of(
      [&] { tokenize_files({dir + "/missing.txt"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find(dir + "/missing.txt: input must be an existing file"), std::string::npos)
      << msg;
}

TEST(TokenizeFilesTest, RejectsJsonlLineWithoutTextNamingFileAndLine) {
  const std::string dir = temp_dir();
  write_text(dir + "/a.jsonl", "{\"text\": \"fine\"}\n\n{\"body\": \"no text\"}\n");
  std::string msg = error_of(
      [&] { tokenize_files({dir + "/a.jsonl"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find(dir + "/a.jsonl:3: JSON object must have a \"text\" field"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("body"), std::string::npos) << msg;

  write_text(dir + "/b.jsonl", "{\"text\": 5}\n");
  msg = error_of(
      [&] { tokenize_files({dir + "/b.jsonl"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find(dir + "/b.jsonl:1: \"text\" must be a string"), std::string::npos) << msg;

  write_text(dir + "/c.jsonl", "{\"text\": \"ok\"}\nnot json\n");
  msg = error_of(
      [&] { tokenize_files({dir + "/c.jsonl"}, "d", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find(dir + "/c.jsonl:2: line must be a JSON object"), std::string::npos) << msg;
}

TEST(TokenizeFilesTest, RejectsBadDomainName) {
  const std::string dir = temp_dir();
  write_text(dir + "/a.txt", "x");
  const std::string msg = error_of(
      [&] { tokenize_files({dir + "/a.txt"}, "a b", dir + "/o", quiet_with(tiny_model())); });
  EXPECT_NE(msg.find("domain must be"), std::string::npos) << msg;
}

TEST(TokenizeFilesTest, RejectsAMissingTokenizer) {
  const std::string dir = temp_dir();
  write_text(dir + "/a.txt", "x");
  const std::string msg = error_of(
      [&] { tokenize_files({dir + "/a.txt"}, "d", dir + "/o", quiet_with(dir + "/nope.model")); });
  EXPECT_NE(msg.find(dir + "/nope.model"), std::string::npos) << msg;
}

}  // namespace
}  // namespace sy
