#include "data/batch_source.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <vector>

#include "core/error.h"

namespace sy {
namespace {

std::string write_tokens(const std::vector<int32_t>& t, const std::string& name) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.size() * 4));
  return path;
}

TEST(SyntheticSourceTest, DeterministicResumableAndInVocabulary) {
  SyntheticSource a(50, 8, 7), b(50, 8, 7);
  std::vector<int32_t> ta(3 * 9), tb(3 * 9), da(3), db(3);
  a.next(ta.data(), da.data(), 3);
  a.next(ta.data(), da.data(), 3);  // second batch
  b.set_position(3);
  b.next(tb.data(), db.data(), 3);
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(da, db);
  for (int32_t t : ta) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, 50);
  }
  SyntheticSource v(50, 8, 7, SyntheticSource::kValidBase);
  v.next(tb.data(), db.data(), 3);
  EXPECT_NE(ta, tb);
}

TEST(SyntheticSourceTest, DomainsAreAllUsedAndDiffer) {
  SyntheticSource s(64, 32, 1);
  std::vector<int32_t> t(33);
  std::set<int32_t> domains;
  for (uint64_t i = 0; i < 64; ++i) domains.insert(s.sequence(i, t.data()));
  EXPECT_EQ(domains.size(), static_cast<size_t>(SyntheticSource::kDomains));
}

TEST(TokenFileSourceTest, EpochIsAPermutationAndResumes) {
  std::vector<int32_t> toks(5 * 4 + 3);  // 5 sequences of S+1 = 4, plus a 3-token tail
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>(i % 10);
  auto path = write_tokens(toks, "epoch.bin");
  TokenFileSource src(path, 10, 3, true, 11);
  EXPECT_EQ(src.sequences_per_epoch(), 5u);
  std::vector<int32_t> batch(4), dom(1);
  std::set<int32_t> firsts;
  for (int i = 0; i < 5; ++i) {
    src.next(batch.data(), dom.data(), 1);
    firsts.insert(batch[0]);
  }
  EXPECT_EQ(firsts.size(), 5u);  // each sequence once per epoch
  std::vector<int32_t> after(4), again(4);
  src.next(after.data(), dom.data(), 1);
  TokenFileSource resumed(path, 10, 3, true, 11);
  resumed.set_position(5);
  resumed.next(again.data(), dom.data(), 1);
  EXPECT_EQ(after, again);
}

TEST(TokenFileSourceTest, RejectsBadFilesWithClearMessages) {
  auto bad_id = write_tokens({1, 2, 99, 3}, "bad_id.bin");
  try {
    TokenFileSource(bad_id, 10, 2, false, 0);  // NOLINT(bugprone-unused-raii): must throw
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 2 must be in [0, 10)"), std::string::npos)
        << e.what();
  }
  std::string odd = ::testing::TempDir() + "odd.bin";
  std::ofstream(odd, std::ios::binary).write("abcde", 5);
  EXPECT_THROW(TokenFileSource(odd, 10, 2, false, 0), Error);
  auto short_file = write_tokens({1, 2}, "short.bin");
  EXPECT_THROW(TokenFileSource(short_file, 10, 4, false, 0), Error);
  EXPECT_THROW(TokenFileSource("/nonexistent/x.bin", 10, 4, false, 0), Error);
}

}  // namespace
}  // namespace sy
