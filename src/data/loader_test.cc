#include "data/loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "core/rng.h"
#include "data/test_util.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kEos = 1;
constexpr int64_t kVocab = 1000;
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string temp_dir() { return test::temp_dir("loader"); }

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected sy::Error mentioning " << parts.front();
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << p;
  }
}

using Docs = std::vector<std::vector<int32_t>>;

std::string write_docs(const std::string& prefix, const Docs& docs,
                       TokenDtype dtype = TokenDtype::kU16) {
  IndexedDatasetWriter w(prefix, dtype);
  for (const auto& d : docs) w.add_document(d);
  w.finalize();
  return prefix;
}

// n_docs documents of seeded lengths 1..max_len, tokens drawn from [lo, hi) (never kEos), so a
// token tells which dataset it came from.
Docs random_docs(uint64_t seed, int n_docs, int max_len, int32_t lo, int32_t hi) {
  Rng r(seed);
  Docs docs(n_docs);
  for (auto& d : docs) {
    d.resize(1 + r.below(max_len));
    for (auto& t : d) t = lo + static_cast<int32_t>(r.below(hi - lo));
  }
  return docs;
}

// The packed stream by definition: each non-empty document, then an EOS.
std::vector<int32_t> packed_stream(const Docs& docs) {
  std::vector<int32_t> s;
  for (const auto& d : docs) {
    if (d.empty()) continue;
    s.insert(s.end(), d.begin(), d.end());
    s.push_back(kEos);
  }
  return s;
}

LoaderOptions options(int64_t S, int64_t B, Composition c, uint64_t seed = 7) {
  LoaderOptions o;
  o.seq_len = S;
  o.micro_batch = B;
  o.vocab_size = kVocab;
  o.eos_id = kEos;
  o.seed = seed;
  o.composition = c;
  return o;
}

// Three domains of different sizes and disjoint token ranges: a [100, 200), b [200, 300),
// c [300, 400).
struct Corpus {
  std::vector<BlendEntry> blend;
  std::vector<Docs> docs;
};
Corpus three_domains(const std::string& dir, double wa = 0.5, double wb = 0.3, double wc = 0.2) {
  Corpus c;
  c.docs = {random_docs(1, 40, 30, 100, 200), random_docs(2, 15, 20, 200, 300),
            random_docs(3, 6, 25, 300, 400)};
  const char* names[] = {"a", "b", "c"};
  const double w[] = {wa, wb, wc};
  for (int d = 0; d < 3; ++d)
    c.blend.push_back({w[d], write_docs(dir + "/" + names[d], c.docs[d]), names[d]});
  return c;
}

struct Batch {
  std::vector<int32_t> tokens, domains;
  bool operator==(const Batch&) const = default;
};
std::vector<Batch> take(BlendedSource& src, int n_batches, int64_t B) {
  const int64_t row = src.options().seq_len + 1;
  std::vector<Batch> out(n_batches);
  for (auto& b : out) {
    b.tokens.resize(B * row);
    b.domains.resize(B);
    src.next(b.tokens.data(), b.domains.data(), B);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Packing

TEST(PackedDatasetTest, SamplesAreStreamWindowsOfSPlusOneStartingEveryS) {
  const std::string dir = temp_dir();
  const Docs docs = random_docs(11, 25, 17, 100, 200);
  const std::vector<int32_t> stream = packed_stream(docs);
  for (int64_t S : {1, 4, 7, 16}) {
    PackedDataset ds(write_docs(dir + "/d" + std::to_string(S), docs), S, kEos, kVocab);
    ASSERT_EQ(ds.num_tokens(), static_cast<int64_t>(stream.size()));
    ASSERT_EQ(ds.num_samples(), (static_cast<int64_t>(stream.size()) - 1) / S);
    std::vector<int32_t> got(S + 1), prev(S + 1);
    for (int64_t i = 0; i < ds.num_samples(); ++i) {
      ds.sample(i, got.data());
      for (int64_t j = 0; j <= S; ++j) ASSERT_EQ(got[j], stream[i * S + j]) << i << " " << j;
      if (i > 0) {
        EXPECT_EQ(got.front(), prev.back()) << "samples overlap by one token";
      }
      prev = got;
    }
  }
}

TEST(PackedDatasetTest, EosFollowsEachDocumentsLastTokenAcrossSequencesAndEmptyDocuments) {
  const std::string prefix = temp_dir() + "/multi";
  {
    // doc 0: [10 11] [12]   doc 1: (empty)   doc 2: [] [13]   doc 3: [14 15 16] []
    IndexedDatasetWriter w(prefix, TokenDtype::kI32);
    w.add_sequence(std::vector<int32_t>{10, 11});
    w.add_sequence(std::vector<int32_t>{12});
    w.end_document();
    w.end_document();
    w.add_sequence(std::vector<int32_t>{});
    w.add_sequence(std::vector<int32_t>{13});
    w.end_document();
    w.add_sequence(std::vector<int32_t>{14, 15, 16});
    w.add_sequence(std::vector<int32_t>{});
    w.end_document();
    w.finalize();
  }
  PackedDataset ds(prefix, 2, kEos, kVocab);
  const std::vector<int32_t> want = {10, 11, 12, kEos, 13, kEos, 14, 15, 16, kEos};
  EXPECT_EQ(ds.num_documents(), 3);
  EXPECT_EQ(ds.num_tokens(), 10);
  ASSERT_EQ(ds.num_samples(), 4);  // (10 - 1) / 2
  std::vector<int32_t> got(3);
  for (int64_t i = 0; i < 4; ++i) {
    ds.sample(i, got.data());
    EXPECT_EQ(got, std::vector<int32_t>(want.begin() + 2 * i, want.begin() + 2 * i + 3)) << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Blend schedule

TEST(BlendScheduleTest, DecimalAndIntegerWeightsReduceToSmallPeriods) {
  const std::vector<double> dec = {0.5, 0.3, 0.2};
  BlendSchedule a(dec);
  EXPECT_EQ(a.period(), 10u);
  EXPECT_EQ(a.quanta(), (std::vector<uint64_t>{5, 3, 2}));
  const std::vector<double> ints = {1, 1, 1};
  EXPECT_EQ(BlendSchedule(ints).period(), 3u);
  const std::vector<double> scaled = {30, 10};  // any positive scale
  EXPECT_EQ(BlendSchedule(scaled).quanta(), (std::vector<uint64_t>{3, 1}));
  const std::vector<double> third = {1.0 / 3, 2.0 / 3};
  BlendSchedule t(third);
  EXPECT_EQ(t.quanta()[0] + t.quanta()[1], t.period());
  EXPECT_NEAR(static_cast<double>(t.quanta()[0]) / t.period(), 1.0 / 3, 1e-6);
}

TEST(BlendScheduleTest, ExactEveryPeriodAndWithinOneUnitAtEveryPrefix) {
  const std::vector<double> w = {0.37, 0.21, 0.3, 0.12};
  BlendSchedule s(w);
  const uint64_t P = s.period();
  ASSERT_EQ(P, 100u);
  std::vector<uint64_t> count(w.size(), 0);
  for (uint64_t u = 0; u < 5 * P; ++u) {
    const int32_t d = s.dataset(u);
    ASSERT_EQ(s.rank(u), count[d]) << "rank is the count of earlier units of the dataset";
    ++count[d];
    for (size_t e = 0; e < w.size(); ++e)
      ASSERT_LT(std::abs(static_cast<double>(count[e]) - w[e] * static_cast<double>(u + 1)), 1.0)
          << "unit " << u << " dataset " << e;
    if ((u + 1) % P == 0) {
      for (size_t e = 0; e < w.size(); ++e) ASSERT_EQ(count[e], s.quanta()[e] * ((u + 1) / P));
    }
  }
}

TEST(BlendScheduleTest, RejectsNonPositiveNonFiniteAndNegligibleWeights) {
  for (double bad : {0.0, -1.0, std::nan(""), kInf}) {
    const std::vector<double> w = {1.0, bad};
    expect_error([&] { BlendSchedule s(w); }, {"weight must be positive and finite"});
  }
  const std::vector<double> tiny = {1.0, 1e-9};
  expect_error([&] { BlendSchedule s(tiny); }, {"at least 1/1000000 of the total"});
}

// ---------------------------------------------------------------------------------------------
// Blended source

TEST(BlendedSourceTest, SameSeedSameStreamOtherSeedOtherOrder) {
  const Corpus c = three_domains(temp_dir());
  for (Composition comp : {Composition::kMixed, Composition::kDomainPure}) {
    BlendedSource a(c.blend, options(8, 4, comp, 7)), b(c.blend, options(8, 4, comp, 7));
    BlendedSource other(c.blend, options(8, 4, comp, 8));
    const auto sa = take(a, 60, 4);
    EXPECT_EQ(sa, take(b, 60, 4));
    EXPECT_NE(sa, take(other, 60, 4));
    EXPECT_EQ(a.position(), 240u);
  }
}

TEST(BlendedSourceTest, ResumeMidEpochAndAcrossEpochBoundariesEqualsUninterrupted) {
  const Corpus c = three_domains(temp_dir());
  for (Composition comp : {Composition::kMixed, Composition::kDomainPure}) {
    const int64_t B = 4;
    BlendedSource full(c.blend, options(8, B, comp));
    const auto all = take(full, 120, B);  // several epochs of every dataset
    const int64_t n_c = full.dataset(2).num_samples();
    ASSERT_GT(120 * B * 0.2, 3 * n_c) << "the test must cross epochs of the small domain";
    for (int start : {0, 1, 7, 33, 64, 119}) {
      BlendedSource resumed(c.blend, options(8, B, comp));  // fresh, as after a restart
      resumed.set_position(static_cast<uint64_t>(start) * B);
      const auto rest = take(resumed, 120 - start, B);
      for (int i = start; i < 120; ++i) ASSERT_EQ(rest[i - start], all[i]) << "batch " << i;
    }
    // Backwards on a used source (the trainer's pre-pass rewinds every step).
    full.set_position(10 * B);
    EXPECT_EQ(take(full, 1, B)[0], all[10]);
  }
}

TEST(BlendedSourceTest, ResumeAtEveryPositionOfAMixedStream) {
  const Corpus c = three_domains(temp_dir());
  BlendedSource full(c.blend, options(5, 3, Composition::kMixed));
  const auto all = take(full, 1, 300)[0];  // 300 sequences in one call
  BlendedSource resumed(c.blend, options(5, 3, Composition::kMixed));
  for (uint64_t p : {0u, 1u, 2u, 59u, 137u, 299u}) {
    resumed.set_position(p);
    const auto one = take(resumed, 1, 1)[0];
    EXPECT_EQ(one.domains[0], all.domains[p]);
    EXPECT_TRUE(std::equal(one.tokens.begin(), one.tokens.end(), all.tokens.begin() + p * 6));
  }
}

TEST(BlendedSourceTest, DomainPureMicroBatchesArePureAndSpreadByTheWeights) {
  const Corpus c = three_domains(temp_dir());
  const int64_t B = 3, M = 10;  // a step of M micro-batches holds one period 5/3/2
  BlendedSource src(c.blend, options(8, B, Composition::kDomainPure));
  const int32_t lo[] = {100, 200, 300};
  for (int step = 0; step < 20; ++step) {
    std::map<int32_t, int> per_domain;
    for (const Batch& b : take(src, M, B)) {
      for (int64_t i = 1; i < B; ++i) ASSERT_EQ(b.domains[i], b.domains[0]) << "impure batch";
      ++per_domain[b.domains[0]];
      for (int32_t t : b.tokens)  // the tokens agree with the domain id
        if (t != kEos) {
          ASSERT_TRUE(t >= lo[b.domains[0]] && t < lo[b.domains[0]] + 100) << t;
        }
    }
    EXPECT_EQ(per_domain, (std::map<int32_t, int>{{0, 5}, {1, 3}, {2, 2}})) << "step " << step;
  }
}

TEST(BlendedSourceTest, MixedBlendHoldsTheWeightsWithinOneSequence) {
  const Corpus c = three_domains(temp_dir(), 2, 5, 1);  // integer weights: 0.25 0.625 0.125
  BlendedSource src(c.blend, options(4, 8, Composition::kMixed));
  std::vector<int64_t> count(3, 0);
  int64_t n = 0;
  const double w[] = {0.25, 0.625, 0.125};
  for (const Batch& b : take(src, 500, 8)) {
    std::set<int32_t> in_batch(b.domains.begin(), b.domains.end());
    EXPECT_GT(in_batch.size(), 1u) << "mixed micro-batches draw from several domains";
    for (int32_t d : b.domains) ++count[d];
    n += 8;
    for (int d = 0; d < 3; ++d) ASSERT_LT(std::abs(count[d] - w[d] * n), 1.0) << n;
  }
  EXPECT_EQ(count, (std::vector<int64_t>{1000, 2500, 500}));
}

TEST(BlendedSourceTest, EveryEpochOfEveryDatasetVisitsEachSampleOnce) {
  const Corpus c = three_domains(temp_dir());
  for (Composition comp : {Composition::kMixed, Composition::kDomainPure}) {
    BlendedSource src(c.blend, options(6, 2, comp));
    const int64_t row = 7;
    // Map each sample's content to its index, then check the stream's content per epoch.
    std::vector<std::map<std::vector<int32_t>, int64_t>> index(3);
    for (int d = 0; d < 3; ++d) {
      std::vector<int32_t> s(row);
      for (int64_t i = 0; i < src.dataset(d).num_samples(); ++i) {
        src.dataset(d).sample(i, s.data());
        index[d].emplace(s, i);
      }
    }
    std::vector<std::map<uint64_t, std::vector<int>>> seen(3);  // [d][epoch] -> visits per sample
    std::vector<std::vector<int64_t>> first_epoch_order(3);
    const auto batches = take(src, 400, 2);
    uint64_t g = 0;
    for (const Batch& b : batches)
      for (int64_t i = 0; i < 2; ++i, ++g) {
        const auto ref = src.locate(g);
        const int d = b.domains[i];
        ASSERT_EQ(ref.dataset, d);
        const std::vector<int32_t> s(b.tokens.begin() + i * row, b.tokens.begin() + (i + 1) * row);
        auto it = index[d].find(s);
        ASSERT_NE(it, index[d].end()) << "a sequence that is no sample of its domain's dataset";
        ASSERT_EQ(it->second, ref.sample);
        auto& v = seen[d][ref.epoch];
        v.resize(src.dataset(d).num_samples());
        ++v[ref.sample];
        if (ref.epoch == 0) first_epoch_order[d].push_back(ref.sample);
      }
    for (int d = 0; d < 3; ++d) {
      ASSERT_GE(seen[d].size(), 2u) << "every dataset must complete an epoch in this test";
      for (const auto& [epoch, visits] : seen[d]) {
        const bool complete = seen[d].contains(epoch + 1);
        for (int v : visits) ASSERT_LE(v, 1) << "domain " << d << " epoch " << epoch;
        if (complete) {
          for (int v : visits) ASSERT_EQ(v, 1) << "domain " << d << " epoch " << epoch;
        }
      }
      std::vector<int64_t> in_order(first_epoch_order[d].size());
      std::iota(in_order.begin(), in_order.end(), int64_t{0});
      EXPECT_NE(first_epoch_order[d], in_order) << "training order is shuffled";
    }
  }
}

TEST(BlendedSourceTest, EpochsUseNewPermutations) {
  const Corpus c = three_domains(temp_dir());
  BlendedSource src(c.blend, options(4, 1, Composition::kMixed));
  const int64_t n = src.dataset(2).num_samples();
  std::map<uint64_t, std::vector<int64_t>> order;  // epoch -> samples of dataset 2
  for (uint64_t g = 0; order.size() < 4; ++g) {
    const auto ref = src.locate(g);
    if (ref.dataset == 2) order[ref.epoch].push_back(ref.sample);
  }
  ASSERT_EQ(static_cast<int64_t>(order[0].size()), n);
  EXPECT_NE(order[0], order[1]);
  EXPECT_NE(order[1], order[2]);
}

TEST(BlendedSourceTest, SequencesHoldOnlyTheirDomainsDocumentsSeparatedByEos) {
  const std::string dir = temp_dir();
  const Corpus c = three_domains(dir);
  BlendedSource src(c.blend, options(9, 5, Composition::kMixed));
  // Every window of the packed stream, per dataset, as the set of valid samples.
  std::vector<std::set<std::vector<int32_t>>> windows(3);
  for (int d = 0; d < 3; ++d) {
    const auto stream = packed_stream(c.docs[d]);
    for (size_t i = 0; i + 10 <= stream.size(); i += 9)
      windows[d].emplace(stream.begin() + i, stream.begin() + i + 10);
  }
  const int32_t lo[] = {100, 200, 300};
  for (const Batch& b : take(src, 100, 5))
    for (int i = 0; i < 5; ++i) {
      const int d = b.domains[i];
      const std::vector<int32_t> s(b.tokens.begin() + i * 10, b.tokens.begin() + (i + 1) * 10);
      for (int32_t t : s)
        if (t != kEos) {
          ASSERT_TRUE(t >= lo[d] && t < lo[d] + 100) << "token of another dataset";
        }
      ASSERT_TRUE(windows[d].contains(s)) << "not a window of the packed stream of domain " << d;
    }
}

TEST(BlendedSourceTest, SingleDomainReadsOnePassInStreamOrder) {
  const std::string dir = temp_dir();
  const Docs docs = random_docs(5, 12, 9, 100, 200);
  const std::string prefix = write_docs(dir + "/valid", docs);
  auto src = BlendedSource::single_domain(prefix, 3, "news", options(4, 8, Composition::kMixed));
  const auto stream = packed_stream(docs);
  const uint64_t n = (stream.size() - 1) / 4;
  EXPECT_EQ(src->sequences_per_epoch(), n);
  EXPECT_EQ(src->domain_name(0), "news");
  // Odd micro-batch sizes, as the evaluation's last batch.
  std::vector<int32_t> tokens(3 * 5), domains(3);
  for (uint64_t g = 0; g < n; g += 3) {
    const int64_t B = static_cast<int64_t>(std::min<uint64_t>(3, n - g));
    src->next(tokens.data(), domains.data(), B);
    for (int64_t b = 0; b < B; ++b) {
      EXPECT_EQ(domains[b], 3);
      for (int j = 0; j < 5; ++j) ASSERT_EQ(tokens[b * 5 + j], stream[(g + b) * 4 + j]);
    }
  }
  EXPECT_EQ(src->position(), n);
  EXPECT_NE(src->describe().find("news"), std::string::npos);
}

TEST(BlendedSourceTest, ParsesMegatronDataPath) {
  const std::vector<std::string> pairs = {"0.7", "/data/lit_text_document", "0.3", "news"};
  const auto blend = parse_data_path(pairs);
  ASSERT_EQ(blend.size(), 2u);
  EXPECT_EQ(blend[0].weight, 0.7);
  EXPECT_EQ(blend[0].prefix, "/data/lit_text_document");
  EXPECT_EQ(blend[0].domain, "lit_text_document");
  EXPECT_EQ(blend[1].domain, "news");
  const std::vector<std::string> single = {"/data/x"};
  EXPECT_EQ(parse_data_path(single)[0].weight, 1.0);
  const std::vector<std::string> odd = {"0.5", "a", "0.5"};
  expect_error([&] { parse_data_path(odd); }, {"weight prefix"});
  const std::vector<std::string> noweight = {"a", "b"};
  expect_error([&] { parse_data_path(noweight); }, {"must be a weight", "\"a\""});
  EXPECT_EQ(parse_composition("domain-pure"), Composition::kDomainPure);
  expect_error([] { parse_composition("pure"); }, {"mixed", "domain-pure", "\"pure\""});
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(BlendedSourceTest, MissingPrefixNamesBothFiles) {
  const std::string dir = temp_dir();
  const std::string p = dir + "/nothing";
  expect_error(
      [&] {
        BlendedSource s({{1.0, p, "x"}}, options(4, 2, Composition::kMixed));
      },
      {p + ".idx", p + ".bin", "both are missing", "without the extension"});
  const std::string half = write_docs(dir + "/half", random_docs(1, 5, 9, 100, 200));
  fs::remove(half + ".bin");
  expect_error([&] { PackedDataset d(half, 4, kEos, kVocab); }, {half + ".bin is missing"});
}

TEST(BlendedSourceTest, CorruptOrTruncatedIndexFailsNamingTheFile) {
  const std::string dir = temp_dir();
  const std::string p = write_docs(dir + "/bad", random_docs(1, 5, 9, 100, 200));
  {
    std::fstream f(p + ".idx", std::ios::in | std::ios::out | std::ios::binary);
    f.write("XXXX", 4);  // break the magic
  }
  expect_error([&] { PackedDataset d(p, 4, kEos, kVocab); }, {p + ".idx"});
  const std::string t = write_docs(dir + "/trunc", random_docs(1, 5, 9, 100, 200));
  fs::resize_file(t + ".bin", fs::file_size(t + ".bin") - 2);
  expect_error([&] { PackedDataset d(t, 4, kEos, kVocab); }, {t});
}

TEST(BlendedSourceTest, RejectsBadWeightsTooShortDatasetsAndBadEos) {
  const std::string dir = temp_dir();
  const std::string p = write_docs(dir + "/small", {{100, 101, 102}, {103}});  // 6 packed tokens
  for (double w : {0.0, -0.5, std::nan(""), kInf})
    expect_error(
        [&] {
          BlendedSource s({{w, p, "x"}}, options(4, 2, Composition::kMixed));
        },
        {"entry 0", p, "weight must be positive and finite"});
  EXPECT_EQ(PackedDataset(p, 5, kEos, kVocab).num_samples(), 1);
  expect_error([&] { PackedDataset d(p, 6, kEos, kVocab); },
               {p, "at least one sample of seq_len+1 = 7 tokens", "got 6 tokens"});
  LoaderOptions o = options(4, 2, Composition::kMixed);
  o.eos_id = static_cast<int32_t>(kVocab);
  expect_error([&] { BlendedSource s({{1.0, p, "x"}}, o); }, {"eos_id must be in [0, 1000)"});
  expect_error([&] { BlendedSource s({}, options(4, 2, Composition::kMixed)); },
               {"at least one dataset"});
  expect_error(
      [&] {
        BlendedSource s({{1.0, p, "x"}, {1.0, p, "x"}}, options(2, 2, Composition::kMixed));
      },
      {"domain name must be unique"});
}

TEST(BlendedSourceTest, TokenOutsideTheVocabularyNamesDatasetAndSequence) {
  const std::string dir = temp_dir();
  const std::string p = write_docs(dir + "/big_ids", {{100, 101}, {102, 5000, 103}, {104}});
  PackedDataset ds(p, 3, kEos, kVocab);
  std::vector<int32_t> out(4);
  ds.sample(0, out.data());  // [100 101 EOS 102]: fine
  expect_error([&] { ds.sample(1, out.data()); },
               {p, "sequence 1", "must be in [0, 1000)", "got 5000"});
}

TEST(BlendedSourceTest, DomainPureRejectsOtherMicroBatchSizes) {
  const Corpus c = three_domains(temp_dir());
  BlendedSource src(c.blend, options(4, 4, Composition::kDomainPure));
  std::vector<int32_t> tokens(5 * 5), domains(5);
  expect_error([&] { src.next(tokens.data(), domains.data(), 5); },
               {"domain-pure", "must be the configured 4, got 5"});
  src.set_position(2);
  expect_error([&] { src.next(tokens.data(), domains.data(), 4); },
               {"multiple of the micro-batch size 4", "got 2"});
}

}  // namespace
}  // namespace sy
