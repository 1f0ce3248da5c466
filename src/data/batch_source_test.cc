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

// Sequence i of a file made by sequences_file(base, n) is {base + i} * (S + 1), S = 3.
std::string sequences_file(int32_t base, int n, const std::string& name) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.insert(t.end(), 4, base + i);
  return write_tokens(t, name);
}

TEST(InterleavedSourceTest, DealsTheSourcesSequencesInTurnUpToTheCap) {
  TokenFileSource a(sequences_file(10, 3, "il_a.bin"), 100, 3, false, 0);
  TokenFileSource b(sequences_file(50, 1, "il_b.bin"), 100, 3, false, 0);
  TokenFileSource c(sequences_file(70, 2, "il_c.bin"), 100, 3, false, 0);
  auto firsts = [](BatchSource& s, int64_t B) {
    std::vector<int32_t> t(B * 4), d(B);
    s.next(t.data(), d.data(), B);
    std::vector<int32_t> out;
    for (int64_t q = 0; q < B; ++q) {
      for (int j = 1; j < 4; ++j) EXPECT_EQ(t[q * 4 + j], t[q * 4]);  // whole sequences
      out.push_back(t[q * 4]);
    }
    return out;
  };
  // All of each: a0 b0 c0 a1 c1 a2 -- every sequence once, in turn while a source lasts.
  InterleavedSource all({&a, &b, &c}, 0, 3);
  EXPECT_EQ(all.sequences_per_epoch(), 6u);
  EXPECT_EQ(firsts(all, 4), (std::vector<int32_t>{10, 50, 70, 11}));
  EXPECT_EQ(firsts(all, 2), (std::vector<int32_t>{71, 12}));  // the last, partial batch
  EXPECT_EQ(all.position(), 6u);
  all.set_position(3);  // resumable: the position is the whole state
  EXPECT_EQ(firsts(all, 1), (std::vector<int32_t>{11}));
  EXPECT_THROW(firsts(all, 3), Error);  // past the end: an error, not a wrap
  // Capped at 1 per source: the first of each.
  InterleavedSource capped({&a, &b, &c}, 1, 3);
  EXPECT_EQ(firsts(capped, 3), (std::vector<int32_t>{10, 50, 70}));
  EXPECT_NE(capped.describe().find("il_b.bin"), std::string::npos);
}

TEST(InterleavedSourceTest, KeepsEachSequencesDomainAndNeedsACapForAnUnboundedSource) {
  SyntheticSource x(64, 8, 1), y(64, 8, 2);
  EXPECT_THROW(InterleavedSource({&x, &y}, 0, 8), Error);
  InterleavedSource mix({&x, &y}, 3, 8);
  std::vector<int32_t> t(6 * 9), d(6), want(9);
  mix.next(t.data(), d.data(), 6);
  for (int q = 0; q < 6; ++q) {
    const SyntheticSource& src = q % 2 == 0 ? x : y;
    EXPECT_EQ(d[q], src.sequence(static_cast<uint64_t>(q / 2), want.data()));
    EXPECT_EQ(std::vector<int32_t>(t.begin() + q * 9, t.begin() + (q + 1) * 9), want);
  }
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
