#include "data/batch_source.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <utility>

#include "core/error.h"
#include "core/rng.h"
#include "data/loader.h"

namespace sy {

SyntheticSource::SyntheticSource(int64_t vocab, int64_t seq_len, uint64_t seed,
                                 uint64_t first_index)
    : vocab_(vocab), seq_len_(seq_len), seed_(seed), first_(first_index) {
  SY_CHECK(vocab >= 2, "synthetic data: model.vocab_size must be >= 2, got {}", vocab);
  active_ = std::min<int64_t>(vocab, kActiveTokens);
  // Each domain draws its active tokens from the vocabulary (domains overlap partly) and links
  // every token to 4 successors among them.
  active_tokens_.resize(static_cast<size_t>(kDomains) * active_);
  for (int d = 0; d < kDomains; ++d) {
    std::vector<int32_t> perm(vocab);
    for (int64_t i = 0; i < vocab; ++i) perm[i] = static_cast<int32_t>(i);
    Rng r(mix64(seed ^ mix64(0xD0D0ull + d)));
    for (int64_t i = 0; i < active_; ++i) std::swap(perm[i], perm[i + r.below(vocab - i)]);
    std::copy(perm.begin(), perm.begin() + active_, active_tokens_.begin() + d * active_);
  }
  successors_.resize(static_cast<size_t>(kDomains) * vocab * 4);
  for (int d = 0; d < kDomains; ++d)
    for (int64_t a = 0; a < vocab; ++a)
      for (int j = 0; j < 4; ++j)
        successors_[(d * vocab + a) * 4 + j] =
            active_tokens_[d * active_ + mix64(seed ^ mix64((static_cast<uint64_t>(d) << 48) ^
                                                            (static_cast<uint64_t>(a) << 8) ^ j)) %
                                             static_cast<uint64_t>(active_)];
}

int32_t SyntheticSource::sequence(uint64_t index, int32_t* out) const {
  Rng r(mix64(seed_ ^ mix64(index)));
  const int32_t d = static_cast<int32_t>(r.below(kDomains));
  const int32_t* succ = successors_.data() + static_cast<size_t>(d) * vocab_ * 4;
  const int32_t* active = active_tokens_.data() + static_cast<size_t>(d) * active_;
  int32_t tok = active[r.below(active_)];
  for (int64_t s = 0; s <= seq_len_; ++s) {
    out[s] = tok;
    const double u = r.uniform();
    // Successor probabilities 0.45, 0.25, 0.12, 0.08; 0.10 uniform noise over the domain's tokens.
    if (u < 0.45)
      tok = succ[tok * 4 + 0];
    else if (u < 0.70)
      tok = succ[tok * 4 + 1];
    else if (u < 0.82)
      tok = succ[tok * 4 + 2];
    else if (u < 0.90)
      tok = succ[tok * 4 + 3];
    else
      tok = active[r.below(active_)];
  }
  return d;
}

void SyntheticSource::next(int32_t* tokens, int32_t* domains, int64_t B) {
  for (int64_t b = 0; b < B; ++b) {
    domains[b] = sequence(first_ + pos_, tokens + b * (seq_len_ + 1));
    ++pos_;
  }
}

std::string SyntheticSource::describe() const {
  return fmt::format("synthetic corpus (seed {}, {} Markov domains of {} tokens each, vocab {})",
                     seed_, kDomains, active_, vocab_);
}

TokenFileSource::TokenFileSource(const std::string& path, int64_t vocab, int64_t seq_len,
                                 bool shuffle, uint64_t seed)
    : path_(path), seq_len_(seq_len), shuffle_(shuffle), seed_(seed) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  SY_CHECK(in, "{}: cannot open token file (raw little-endian int32 token ids expected)", path);
  const std::streamsize bytes = in.tellg();
  SY_CHECK(bytes % 4 == 0,
           "{}: size must be a multiple of 4 bytes (int32 token ids), got {} bytes; is this a "
           "raw int32 token file?",
           path, static_cast<int64_t>(bytes));
  tokens_.resize(static_cast<size_t>(bytes / 4));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(tokens_.data()), bytes);
  SY_CHECK(in.good() || tokens_.empty(), "{}: read failed", path);
  for (size_t i = 0; i < tokens_.size(); ++i)
    SY_CHECK(tokens_[i] >= 0 && tokens_[i] < vocab,
             "{}: token id at index {} must be in [0, {}) (model.vocab_size), got {}", path, i,
             vocab, tokens_[i]);
  n_seq_ = tokens_.size() / static_cast<size_t>(seq_len + 1);
  SY_CHECK(n_seq_ >= 1,
           "{}: the file must hold at least one sequence of seq_len+1 = {} tokens, got {} tokens",
           path, seq_len + 1, tokens_.size());
  order_.resize(n_seq_);
}

void TokenFileSource::make_order(uint64_t epoch) {
  if (epoch == epoch_) return;
  epoch_ = epoch;
  for (uint64_t i = 0; i < n_seq_; ++i) order_[i] = i;
  if (!shuffle_) return;
  Rng r(mix64(seed_ ^ mix64(epoch + 1)));
  for (uint64_t i = n_seq_ - 1; i > 0; --i) std::swap(order_[i], order_[r.below(i + 1)]);
}

void TokenFileSource::set_position(uint64_t p) { pos_ = p; }

void TokenFileSource::next(int32_t* tokens, int32_t* domains, int64_t B) {
  for (int64_t b = 0; b < B; ++b) {
    make_order(pos_ / n_seq_);
    const uint64_t seq = order_[pos_ % n_seq_];
    std::memcpy(tokens + b * (seq_len_ + 1), tokens_.data() + seq * (seq_len_ + 1),
                sizeof(int32_t) * (seq_len_ + 1));
    domains[b] = 0;
    ++pos_;
  }
}

std::string TokenFileSource::describe() const {
  return fmt::format("{} ({} tokens, {} sequences of {})", path_, tokens_.size(), n_seq_,
                     seq_len_ + 1);
}

InterleavedSource::InterleavedSource(std::vector<BatchSource*> sources, uint64_t cap,
                                     int64_t seq_len)
    : sources_(std::move(sources)), row_(seq_len + 1) {
  std::vector<uint64_t> count(sources_.size());
  uint64_t longest = 0;
  for (size_t k = 0; k < sources_.size(); ++k) {
    const uint64_t n = sources_[k]->sequences_per_epoch();
    SY_CHECK(n > 0 || cap > 0, "interleaving {}: an unbounded source needs a cap",
             sources_[k]->describe());
    count[k] = n == 0 ? cap : (cap == 0 ? n : std::min(n, cap));
    longest = std::max(longest, count[k]);
  }
  for (uint64_t i = 0; i < longest; ++i)
    for (size_t k = 0; k < sources_.size(); ++k)
      if (i < count[k]) order_.push_back({k, i});
}

void InterleavedSource::next(int32_t* tokens, int32_t* domains, int64_t B) {
  SY_CHECK(B >= 0 && pos_ + static_cast<uint64_t>(B) <= order_.size(),
           "interleaved source: {} sequences asked for at position {} of {}", B, pos_,
           order_.size());
  for (int64_t q = 0; q < B; ++q) {
    const Ref& r = order_[pos_ + q];
    BatchSource& src = *sources_[r.source];
    src.set_position(r.index);
    src.next(tokens + q * row_, domains + q, 1);
  }
  pos_ += static_cast<uint64_t>(B);
}

std::string InterleavedSource::describe() const {
  std::string s = fmt::format("{} sequences dealt in turn from", order_.size());
  for (size_t k = 0; k < sources_.size(); ++k)
    s += fmt::format("{} {}", k ? ";" : "", sources_[k]->describe());
  return s;
}

namespace {

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : s) {
    if (ch == ' ' || ch == '\t' || ch == '\n') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// "data/demo/data/literature_train" → "literature".
std::string domain_of_prefix(const std::string& prefix) {
  std::string name = prefix.substr(prefix.find_last_of('/') + 1);
  for (const char* suffix : {"_train", "_valid", "_test"}) {
    const std::string sfx(suffix);
    if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0)
      return name.substr(0, name.size() - sfx.size());
  }
  return name;
}

std::vector<BlendEntry> blend_of(const RunConfig& cfg) {
  const std::vector<std::string> words = split_words(cfg.data.blend);
  std::vector<BlendEntry> blend = parse_data_path(words);
  for (auto& e : blend) e.domain = domain_of_prefix(e.prefix);
  return blend;
}

LoaderOptions loader_options(const RunConfig& cfg, bool shuffle) {
  LoaderOptions o;
  o.seq_len = cfg.model.seq_len;
  o.micro_batch = cfg.train.micro_batch;
  o.vocab_size = cfg.model.vocab_size;
  o.eos_id = static_cast<int32_t>(cfg.data.eos_id);
  o.seed = cfg.train.seed;
  o.composition = parse_composition(cfg.data.composition);
  o.shuffle = shuffle;
  return o;
}

}  // namespace

std::unique_ptr<BatchSource> make_train_source(const RunConfig& cfg) {
  const auto& m = cfg.model;
  if (cfg.data.source == "synthetic")
    return std::make_unique<SyntheticSource>(m.vocab_size, m.seq_len, cfg.data.synthetic_seed);
  if (cfg.data.source == "blend")
    return std::make_unique<BlendedSource>(blend_of(cfg), loader_options(cfg, true));
  return std::make_unique<TokenFileSource>(cfg.data.train_tokens, m.vocab_size, m.seq_len, true,
                                           cfg.train.seed);
}

std::vector<std::string> domain_names(const RunConfig& cfg) {
  std::vector<std::string> names;
  if (cfg.data.source == "synthetic") {
    for (int d = 0; d < SyntheticSource::kDomains; ++d)
      names.push_back(fmt::format("synthetic_{}", d));
  } else if (cfg.data.source == "tokens") {
    names.emplace_back("tokens");
  } else {
    for (const auto& e : blend_of(cfg)) names.push_back(e.domain);
  }
  return names;
}

std::vector<ValidSet> make_valid_sources(const RunConfig& cfg, std::vector<std::string>* domains) {
  const auto& m = cfg.model;
  *domains = domain_names(cfg);
  std::vector<ValidSet> sets;
  if (cfg.data.source == "synthetic") {
    sets.push_back(
        {"", std::make_unique<SyntheticSource>(m.vocab_size, m.seq_len, cfg.data.synthetic_seed,
                                               SyntheticSource::kValidBase)});
  } else if (cfg.data.source == "tokens") {
    if (!cfg.data.valid_tokens.empty())
      sets.push_back({"tokens", std::make_unique<TokenFileSource>(
                                    cfg.data.valid_tokens, m.vocab_size, m.seq_len, false, 0)});
  } else {
    LoaderOptions o = loader_options(cfg, false);
    o.composition = Composition::kMixed;
    for (const std::string& prefix : split_words(cfg.data.valid)) {
      const std::string name = domain_of_prefix(prefix);
      auto it = std::find(domains->begin(), domains->end(), name);
      const int32_t id = static_cast<int32_t>(it - domains->begin());
      if (it == domains->end()) domains->push_back(name);
      sets.push_back({name, BlendedSource::single_domain(prefix, id, name, o)});
    }
  }
  return sets;
}

}  // namespace sy
