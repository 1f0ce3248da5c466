// The dataset loader: a weighted blend of Megatron indexed datasets, one domain each, packed into
// samples of S+1 tokens and served as micro-batches through the BatchSource interface.
//
// Packing (PackedDataset). A dataset's token stream is its non-empty documents in order, each
// followed by one EOS token (empty documents contribute nothing, not even an EOS). Sample i is
// stream tokens [i*S, i*S + S + 1): consecutive samples overlap by one token, as in Megatron's
// GPTDataset, so the token at i*S is the last target of sample i-1 and the first input of sample
// i, and every token of an epoch is predicted exactly once. Documents span sample boundaries. A
// dataset holding T packed tokens has floor((T - 1) / S) samples per epoch; the tail is unused.
//
// Blend schedule (BlendSchedule). Weights become integer quanta q_d summing to a period P: the
// weights themselves when they are all integers summing to at most kBlendResolution, else the
// normalised weights times kBlendResolution rounded by largest remainder; then divided by their
// gcd (0.5/0.3/0.2 -> 5/3/2, P = 10). Unit u goes to the dataset whose running count is furthest
// below its share after this unit (smooth weighted round-robin: c_d += q_d for all d, pick the
// largest c_d, lowest index on ties, subtract P from it), the integer form of Megatron's blending
// index. Every period of P units holds exactly q_d units of dataset d; within a period the
// counts stay close to the shares (|count_d - u q_d / P| < 1 for two or three datasets, under
// 1.35 in a sweep of random blends of up to 16). The period is tabulated once, so any unit's
// dataset and its rank within that dataset are O(1) to find: the stream has random access.
//
// Composition. mixed: the unit is one sequence (every sequence of a micro-batch is scheduled).
// domain-pure: the unit is one micro-batch of B sequences, all from the unit's dataset, so the
// micro-batches of a step spread over the domains by the weights.
//
// Order. The k-th sample drawn from dataset d is sample perm_{d,e}[k mod n_d] of its epoch
// e = k / n_d, perm a seeded Fisher-Yates permutation per (seed, d, e): each dataset runs through
// its own epochs (a small domain starts its next epoch while a large one is still in its first),
// and every sample of an epoch is visited once. Without shuffle, perm is the identity.
//
// Determinism and resume. The sequence at global position g is a pure function of (seed, blend,
// S, B, composition, g); position() counts sequences consumed and set_position(p) is O(1) (the
// permutation of an epoch is rebuilt once, on first use, from integers; no tokens are re-read).
//
// Errors are sy::Error naming the dataset. Token ids are checked against the vocabulary lazily,
// as each sample is read.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/batch_source.h"
#include "data/indexed_dataset.h"

namespace sy {

enum class Composition { kMixed, kDomainPure };

// "mixed" | "domain-pure".
Composition parse_composition(std::string_view name);
std::string_view composition_name(Composition c);

// One dataset of a blend: its weight (any positive scale; normalised), its path prefix (without
// .idx/.bin) and the domain name reported in metrics.
struct BlendEntry {
  double weight = 1;
  std::string prefix;
  std::string domain;
};

// Megatron's --data-path: "w1 prefix1 w2 prefix2 ..." or a single "prefix" (weight 1). The domain
// name is the prefix's file name (the part after the last '/').
std::vector<BlendEntry> parse_data_path(std::span<const std::string> args);

struct LoaderOptions {
  int64_t seq_len = 0;      // S: every sample holds S+1 tokens (inputs and shifted targets)
  int64_t micro_batch = 0;  // B: domain-pure requires every next() to ask for exactly B
  int64_t vocab_size = 0;   // token ids must be in [0, vocab_size)
  int32_t eos_id = -1;      // appended after every document; in [0, vocab_size)
  uint64_t seed = 0;        // sample order
  Composition composition = Composition::kMixed;
  bool shuffle = true;  // false: samples in stream order (evaluation)
};

// One indexed dataset packed into samples of S+1 tokens (see the top of this file). Owns the
// mapped dataset. Immutable after construction: every method may be called from several
// threads at once.
class PackedDataset {
 public:
  // Throws when <prefix>.idx or <prefix>.bin is missing or invalid, when eos_id is outside the
  // vocabulary, or when the packed stream holds fewer than S+1 tokens.
  PackedDataset(const std::string& prefix, int64_t seq_len, int32_t eos_id, int64_t vocab_size);

  const std::string& prefix() const { return ds_.prefix(); }
  int64_t seq_len() const { return seq_len_; }
  int64_t num_samples() const { return n_samples_; }
  int64_t num_documents() const { return n_docs_; }         // non-empty documents
  int64_t num_tokens() const { return seg_start_.back(); }  // packed: documents + EOS
  // Copies sample i (S+1 tokens) to out. REQUIRES: 0 <= i < num_samples(). Throws when a token
  // id is outside [0, vocab_size).
  void sample(int64_t i, int32_t* out) const;

 private:
  IndexedDataset ds_;
  int64_t seq_len_, vocab_;
  int32_t eos_;
  int64_t n_samples_ = 0, n_docs_ = 0;
  // The stream as segments: each non-empty sequence of a non-empty document, followed by an EOS
  // when it is its document's last non-empty sequence.
  std::vector<int64_t> seg_start_;  // [n_seg + 1] stream offset of each segment; back() = T
  std::vector<int64_t> seg_seq_;    // [n_seg] sequence index in ds_
  std::vector<uint8_t> seg_eos_;    // [n_seg] 1 when an EOS ends the segment
};

// The deterministic blending schedule over units (see the top of this file). Immutable; may be
// called from several threads.
class BlendSchedule {
 public:
  static constexpr uint64_t kBlendResolution = 1'000'000;
  // REQUIRES: weights non-empty, each positive and finite (checked; throws otherwise), and each
  // at least 1 / kBlendResolution of their sum.
  explicit BlendSchedule(std::span<const double> weights);

  int64_t num_datasets() const { return static_cast<int64_t>(quanta_.size()); }
  uint64_t period() const { return period_; }
  // q_d: units of dataset d in every period.
  const std::vector<uint64_t>& quanta() const { return quanta_; }
  // The dataset of unit u.
  int32_t dataset(uint64_t u) const { return order_[u % period_]; }
  // Units of dataset(u) among units [0, u).
  uint64_t rank(uint64_t u) const {
    return (u / period_) * quanta_[order_[u % period_]] + rank_[u % period_];
  }

 private:
  std::vector<uint64_t> quanta_;
  uint64_t period_ = 0;
  std::vector<uint16_t> order_;  // [P] dataset of each unit of a period
  std::vector<uint32_t> rank_;   // [P] its rank within the period
};

// A blend of packed datasets as a BatchSource: next() fills tokens[B, S+1] and domains[B] (the
// dataset's domain id). Owns its datasets. Not thread-safe (permutations are cached).
class BlendedSource : public BatchSource {
 public:
  // Domain ids are the entries' indices in the blend.
  BlendedSource(const std::vector<BlendEntry>& blend, const LoaderOptions& opt);
  // One dataset read in stream order, one pass per epoch (validation per domain): sequence g is
  // sample g mod n, with domain id `domain_id` (its id in the training blend). Uses seq_len,
  // vocab_size and eos_id of opt; any B may be asked for.
  static std::unique_ptr<BlendedSource> single_domain(const std::string& prefix, int32_t domain_id,
                                                      std::string domain_name,
                                                      const LoaderOptions& opt);

  // domain-pure REQUIRES: B == opt.micro_batch and position() a multiple of B (checked).
  void next(int32_t* tokens, int32_t* domains, int64_t B) override;
  uint64_t position() const override { return pos_; }
  void set_position(uint64_t p) override { pos_ = p; }
  // The samples of all datasets together (one epoch of each).
  uint64_t sequences_per_epoch() const override;
  std::string describe() const override;

  // Where the sequence at global position g comes from.
  struct SampleRef {
    int32_t dataset;  // index in the blend
    uint64_t epoch;   // of that dataset
    int64_t draw;     // its place in that epoch's visiting order
    int64_t sample;   // sample index in the dataset's packed stream
  };
  // May build the epoch's permutation (cached): not thread-safe, like next().
  SampleRef locate(uint64_t g) const;

  int64_t num_datasets() const { return static_cast<int64_t>(datasets_.size()); }
  const PackedDataset& dataset(int64_t d) const { return *datasets_[d]; }
  const std::string& domain_name(int64_t d) const { return names_[d]; }
  int32_t domain_id(int64_t d) const { return domain_base_ + static_cast<int32_t>(d); }
  const BlendSchedule& schedule() const { return schedule_; }
  const LoaderOptions& options() const { return opt_; }

 private:
  BlendedSource(const std::vector<BlendEntry>& blend, const LoaderOptions& opt,
                int32_t domain_base);
  // Sample `j` of epoch `epoch` of dataset d in visiting order.
  int64_t permuted(int32_t d, uint64_t epoch, int64_t j) const;

  LoaderOptions opt_;
  int32_t domain_base_ = 0;
  std::vector<double> weights_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<PackedDataset>> datasets_;
  BlendSchedule schedule_;
  uint64_t pos_ = 0;
  // Two cached permutations per dataset (epochs of either parity), so stepping back and forth
  // across an epoch boundary (the trainer's pre-pass) does not rebuild them.
  struct PermCache {
    std::array<uint64_t, 2> epoch{~0ull, ~0ull};
    std::array<std::vector<int64_t>, 2> perm;
  };
  mutable std::vector<PermCache> perms_;
};

}  // namespace sy
