#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <utility>

#include "core/error.h"
#include "core/rng.h"

namespace sy {

Composition parse_composition(std::string_view name) {
  if (name == "mixed") return Composition::kMixed;
  if (name == "domain-pure") return Composition::kDomainPure;
  fail(fmt::format("data: composition must be \"mixed\" or \"domain-pure\", got \"{}\"", name));
}

std::string_view composition_name(Composition c) {
  return c == Composition::kMixed ? "mixed" : "domain-pure";
}

namespace {

std::string file_name(const std::string& prefix) {
  const size_t slash = prefix.find_last_of('/');
  return slash == std::string::npos ? prefix : prefix.substr(slash + 1);
}

// Megatron's --data-path weights parse as floats; a prefix is anything that does not.
bool parse_weight(const std::string& s, double* w) {
  size_t used = 0;
  try {
    *w = std::stod(s, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == s.size();
}

// Checked before mapping, so the message can say what a prefix is.
const std::string& existing_prefix(const std::string& prefix) {
  namespace fs = std::filesystem;
  const bool idx = fs::exists(prefix + ".idx"), bin = fs::exists(prefix + ".bin");
  SY_CHECK(idx && bin,
           "{}: dataset prefix must name an indexed dataset: expected {}.idx and {}.bin, {} "
           "missing; pass the path without the extension",
           prefix, prefix, prefix,
           !idx && !bin ? "both are"
           : !idx       ? fmt::format("{}.idx is", prefix)
                        : fmt::format("{}.bin is", prefix));
  return prefix;
}

std::vector<double> checked_weights(const std::vector<BlendEntry>& blend) {
  SY_CHECK(!blend.empty(), "data blend: must hold at least one dataset, got none");
  std::vector<double> w;
  for (size_t i = 0; i < blend.size(); ++i) {
    SY_CHECK(std::isfinite(blend[i].weight) && blend[i].weight > 0,
             "data blend entry {} ({}): weight must be positive and finite, got {}", i,
             blend[i].prefix, blend[i].weight);
    w.push_back(blend[i].weight);
  }
  return w;
}

const LoaderOptions& checked_options(const LoaderOptions& opt) {
  SY_CHECK(opt.seq_len >= 1, "data loader: seq_len must be >= 1, got {}", opt.seq_len);
  SY_CHECK(opt.micro_batch >= 1 || opt.composition == Composition::kMixed,
           "data loader: micro_batch must be >= 1 for domain-pure batches, got {}",
           opt.micro_batch);
  SY_CHECK(opt.vocab_size >= 1, "data loader: vocab_size must be >= 1, got {}", opt.vocab_size);
  SY_CHECK(opt.eos_id >= 0 && opt.eos_id < opt.vocab_size,
           "data loader: eos_id must be in [0, {}) (model.vocab_size), got {}", opt.vocab_size,
           opt.eos_id);
  return opt;
}

}  // namespace

std::vector<BlendEntry> parse_data_path(std::span<const std::string> args) {
  std::vector<BlendEntry> out;
  double w = 0;
  if (args.size() == 1 && !parse_weight(args[0], &w))
    return {BlendEntry{1.0, args[0], file_name(args[0])}};
  SY_CHECK(!args.empty() && args.size() % 2 == 0,
           "data path: must be \"weight prefix\" pairs or a single prefix, got {} items",
           args.size());
  for (size_t i = 0; i < args.size(); i += 2) {
    SY_CHECK(parse_weight(args[i], &w),
             "data path item {}: must be a weight (a number) before prefix {}, got \"{}\"", i,
             args[i + 1], args[i]);
    out.push_back(BlendEntry{w, args[i + 1], file_name(args[i + 1])});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// PackedDataset

PackedDataset::PackedDataset(const std::string& prefix, int64_t seq_len, int32_t eos_id,
                             int64_t vocab_size)
    : ds_(existing_prefix(prefix)), seq_len_(seq_len), vocab_(vocab_size), eos_(eos_id) {
  SY_CHECK(seq_len >= 1, "{}: seq_len must be >= 1, got {}", prefix, seq_len);
  SY_CHECK(eos_id >= 0 && eos_id < vocab_size,
           "{}: eos_id must be in [0, {}) (model.vocab_size), got {}", prefix, vocab_size, eos_id);
  seg_start_.push_back(0);
  int64_t t = 0;
  for (int64_t d = 0; d < ds_.num_documents(); ++d) {
    const auto [first, last] = ds_.document_range(d);
    int64_t last_nonempty = -1;
    for (int64_t s = first; s < last; ++s)
      if (ds_.sequence_length(s) > 0) last_nonempty = s;
    if (last_nonempty < 0) continue;
    ++n_docs_;
    for (int64_t s = first; s <= last_nonempty; ++s) {
      const int64_t len = ds_.sequence_length(s);
      if (len == 0) continue;
      const bool eos = s == last_nonempty;
      t += len + (eos ? 1 : 0);
      seg_seq_.push_back(s);
      seg_eos_.push_back(eos ? 1 : 0);
      seg_start_.push_back(t);
    }
  }
  n_samples_ = t >= 1 ? (t - 1) / seq_len : 0;
  SY_CHECK(n_samples_ >= 1,
           "{}: dataset must hold at least one sample of seq_len+1 = {} tokens once packed "
           "(each document plus an EOS), got {} tokens in {} non-empty documents; use a shorter "
           "seq_len or more data",
           prefix, seq_len + 1, t, n_docs_);
}

void PackedDataset::sample(int64_t i, int32_t* out) const {
  SY_DCHECK(i >= 0 && i < n_samples_);
  int64_t pos = i * seq_len_, need = seq_len_ + 1;
  size_t k = static_cast<size_t>(std::upper_bound(seg_start_.begin(), seg_start_.end(), pos) -
                                 seg_start_.begin() - 1);
  while (need > 0) {
    const int64_t seq = seg_seq_[k];
    const int64_t off = pos - seg_start_[k];
    const int64_t len = ds_.sequence_length(seq);
    if (off < len) {
      const int64_t c = std::min(len - off, need);
      ds_.read(seq, off, c, out);
      for (int64_t j = 0; j < c; ++j)
        SY_CHECK(out[j] >= 0 && out[j] < vocab_,
                 "{}: token id {} of sequence {} (sample {}) must be in [0, {}) "
                 "(model.vocab_size), got {}; was the dataset encoded with another tokenizer?",
                 ds_.prefix(), off + j, seq, i, vocab_, out[j]);
      out += c;
      pos += c;
      need -= c;
    } else {  // the EOS closing the document
      *out++ = eos_;
      ++pos;
      --need;
    }
    if (pos == seg_start_[k + 1]) ++k;
  }
}

// ---------------------------------------------------------------------------------------------
// BlendSchedule

BlendSchedule::BlendSchedule(std::span<const double> weights) {
  const size_t D = weights.size();
  SY_CHECK(D >= 1 && D <= 65535, "data blend: number of datasets must be in [1, 65535], got {}", D);
  double sum = 0;
  bool integers = true;
  for (size_t d = 0; d < D; ++d) {
    SY_CHECK(std::isfinite(weights[d]) && weights[d] > 0,
             "data blend entry {}: weight must be positive and finite, got {}", d, weights[d]);
    sum += weights[d];
    integers = integers && weights[d] == std::floor(weights[d]);
  }
  quanta_.assign(D, 0);
  if (integers && sum <= static_cast<double>(kBlendResolution)) {
    for (size_t d = 0; d < D; ++d) quanta_[d] = static_cast<uint64_t>(weights[d]);
  } else {
    // Largest remainder: floor of each exact share, the rest to the largest fractions.
    std::vector<std::pair<double, size_t>> frac(D);
    uint64_t given = 0;
    for (size_t d = 0; d < D; ++d) {
      const double exact = weights[d] / sum * static_cast<double>(kBlendResolution);
      quanta_[d] = static_cast<uint64_t>(std::floor(exact));
      given += quanta_[d];
      frac[d] = {exact - std::floor(exact), d};
    }
    std::stable_sort(frac.begin(), frac.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t j = 0; given < kBlendResolution; ++j, ++given) ++quanta_[frac[j % D].second];
    for (size_t d = 0; d < D; ++d)
      SY_CHECK(quanta_[d] >= 1,
               "data blend entry {}: weight must be at least 1/{} of the total {}, got {}", d,
               kBlendResolution, sum, weights[d]);
  }
  uint64_t g = 0;
  for (uint64_t q : quanta_) g = std::gcd(g, q);
  if (g > 1)
    for (uint64_t& q : quanta_) q /= g;
  period_ = std::accumulate(quanta_.begin(), quanta_.end(), uint64_t{0});

  // Smooth weighted round-robin over one period; the credits return to zero at its end.
  std::vector<int64_t> credit(D, 0);
  std::vector<uint32_t> count(D, 0);
  order_.resize(period_);
  rank_.resize(period_);
  for (uint64_t u = 0; u < period_; ++u) {
    size_t best = 0;
    for (size_t d = 0; d < D; ++d) {
      credit[d] += static_cast<int64_t>(quanta_[d]);
      if (credit[d] > credit[best]) best = d;
    }
    credit[best] -= static_cast<int64_t>(period_);
    order_[u] = static_cast<uint16_t>(best);
    rank_[u] = count[best]++;
  }
  for (size_t d = 0; d < D; ++d) SY_DCHECK(credit[d] == 0 && count[d] == quanta_[d]);
}

// ---------------------------------------------------------------------------------------------
// BlendedSource

BlendedSource::BlendedSource(const std::vector<BlendEntry>& blend, const LoaderOptions& opt)
    : BlendedSource(blend, opt, 0) {}

BlendedSource::BlendedSource(const std::vector<BlendEntry>& blend, const LoaderOptions& opt,
                             int32_t domain_base)
    : opt_(checked_options(opt)),
      domain_base_(domain_base),
      weights_(checked_weights(blend)),
      schedule_(weights_) {
  for (size_t d = 0; d < blend.size(); ++d) {
    std::string name = blend[d].domain.empty() ? file_name(blend[d].prefix) : blend[d].domain;
    for (size_t e = 0; e < d; ++e)
      SY_CHECK(names_[e] != name,
               "data blend entry {} ({}): domain name must be unique, got \"{}\" again (entry {} "
               "is {}); name the domains explicitly",
               d, blend[d].prefix, name, e, blend[e].prefix);
    names_.push_back(std::move(name));
    datasets_.push_back(
        std::make_unique<PackedDataset>(blend[d].prefix, opt.seq_len, opt.eos_id, opt.vocab_size));
  }
  perms_.resize(blend.size());
}

std::unique_ptr<BlendedSource> BlendedSource::single_domain(const std::string& prefix,
                                                            int32_t domain_id,
                                                            std::string domain_name,
                                                            const LoaderOptions& opt) {
  LoaderOptions o = opt;
  o.composition = Composition::kMixed;
  o.shuffle = false;
  SY_CHECK(domain_id >= 0, "{}: domain id must be >= 0, got {}", prefix, domain_id);
  // The private constructor: make_unique cannot reach it.
  return std::unique_ptr<BlendedSource>(
      new BlendedSource({BlendEntry{1.0, prefix, std::move(domain_name)}}, o, domain_id));
}

uint64_t BlendedSource::sequences_per_epoch() const {
  uint64_t n = 0;
  for (const auto& ds : datasets_) n += static_cast<uint64_t>(ds->num_samples());
  return n;
}

BlendedSource::SampleRef BlendedSource::locate(uint64_t g) const {
  const bool pure = opt_.composition == Composition::kDomainPure;
  const uint64_t unit = pure ? static_cast<uint64_t>(opt_.micro_batch) : 1;
  const uint64_t u = g / unit;
  const int32_t d = schedule_.dataset(u);
  const uint64_t k = schedule_.rank(u) * unit + g % unit;  // draws from d before this one
  const auto n = static_cast<uint64_t>(datasets_[d]->num_samples());
  const auto j = static_cast<int64_t>(k % n);
  return {d, k / n, j, permuted(d, k / n, j)};
}

int64_t BlendedSource::permuted(int32_t d, uint64_t epoch, int64_t j) const {
  if (!opt_.shuffle) return j;
  PermCache& c = perms_[d];
  const int slot = static_cast<int>(epoch & 1);
  std::vector<int64_t>& perm = c.perm[slot];
  if (c.epoch[slot] != epoch) {
    const int64_t n = datasets_[d]->num_samples();
    perm.resize(n);
    std::iota(perm.begin(), perm.end(), int64_t{0});
    Rng r(mix64(mix64(opt_.seed) ^ mix64((static_cast<uint64_t>(d) << 40) ^ epoch)));
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(perm[i], perm[r.below(static_cast<uint64_t>(i) + 1)]);
    c.epoch[slot] = epoch;
  }
  return perm[j];
}

void BlendedSource::next(int32_t* tokens, int32_t* domains, int64_t B) {
  if (opt_.composition == Composition::kDomainPure) {
    SY_CHECK(B == opt_.micro_batch,
             "data loader (domain-pure): micro-batch size must be the configured {}, got {}",
             opt_.micro_batch, B);
    SY_CHECK(pos_ % static_cast<uint64_t>(B) == 0,
             "data loader (domain-pure): position must be a multiple of the micro-batch size {}, "
             "got {}; was the checkpoint written with another micro_batch?",
             B, pos_);
  }
  const int64_t row = opt_.seq_len + 1;
  for (int64_t b = 0; b < B; ++b) {
    const SampleRef s = locate(pos_);
    datasets_[s.dataset]->sample(s.sample, tokens + b * row);
    domains[b] = domain_id(s.dataset);
    ++pos_;
  }
}

std::string BlendedSource::describe() const {
  const double total = std::accumulate(weights_.begin(), weights_.end(), 0.0);
  std::string s = fmt::format(
      "blend of {} dataset{} ({} micro-batches, {} samples of {} tokens, seed {}, period {})",
      datasets_.size(), datasets_.size() == 1 ? "" : "s", composition_name(opt_.composition),
      opt_.shuffle ? "shuffled" : "ordered", opt_.seq_len + 1, opt_.seed, schedule_.period());
  for (size_t d = 0; d < datasets_.size(); ++d) {
    const PackedDataset& ds = *datasets_[d];
    s += fmt::format("\n  domain {} {:<12} weight {:.4f}  {}: {} documents, {} tokens, {} samples",
                     domain_id(static_cast<int64_t>(d)), names_[d], weights_[d] / total,
                     ds.prefix(), ds.num_documents(), ds.num_tokens(), ds.num_samples());
  }
  return s;
}

}  // namespace sy
