// Where training and evaluation batches come from (until the data issue adds Megatron datasets).
//
// A BatchSource yields micro-batches of B sequences of S+1 int32 tokens ([B, S+1], row-major)
// and the domain id of each sequence. Its position (sequences consumed) is all the state it has:
// set_position(position()) on a fresh source resumes the identical stream. Owned by the trainer;
// not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/buffer.h"

namespace sy {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Fills tokens[B, S+1] and domains[B].
  virtual void next(int32_t* tokens, int32_t* domains, int64_t B) = 0;
  virtual uint64_t position() const = 0;
  virtual void set_position(uint64_t p) = 0;
  // Sequences in one pass (0 = unbounded, as for the synthetic stream).
  virtual uint64_t sequences_per_epoch() const = 0;
  virtual std::string describe() const = 0;
};

// The built-in synthetic corpus (docs/data.md): 4 "domains", each an order-1 Markov chain over
// its own seeded subset of min(V, 512) tokens, with 4 likely successors per token (probabilities
// 0.45, 0.25, 0.12, 0.08) and 10% uniform noise within the domain's tokens. Sequence i is a pure
// function of (seed, i): random access, resumable, identical on every machine.
class SyntheticSource : public BatchSource {
 public:
  static constexpr int kDomains = 4;
  static constexpr int64_t kActiveTokens = 512;
  // first_index: the validation stream starts far from the training stream (kValidBase).
  static constexpr uint64_t kValidBase = 1ull << 40;
  SyntheticSource(int64_t vocab, int64_t seq_len, uint64_t seed, uint64_t first_index = 0);
  void next(int32_t* tokens, int32_t* domains, int64_t B) override;
  uint64_t position() const override { return pos_; }
  void set_position(uint64_t p) override { pos_ = p; }
  uint64_t sequences_per_epoch() const override { return 0; }
  std::string describe() const override;
  // Sequence `index` (absolute), S+1 tokens; returns its domain.
  int32_t sequence(uint64_t index, int32_t* out) const;

 private:
  int64_t vocab_, seq_len_;
  uint64_t seed_, first_, pos_ = 0;
  int64_t active_ = 0;                  // tokens per domain
  std::vector<int32_t> active_tokens_;  // [kDomains, active_]
  std::vector<int32_t> successors_;     // [kDomains, V, 4]
};

// A raw little-endian int32 token file read as consecutive, non-overlapping sequences of S+1
// tokens (the tail that does not fill a sequence is unused). Every id is checked against the
// vocabulary on open. Training order: a seeded permutation per epoch; shuffle = false reads the
// sequences in file order (evaluation). All sequences get domain 0.
class TokenFileSource : public BatchSource {
 public:
  TokenFileSource(const std::string& path, int64_t vocab, int64_t seq_len, bool shuffle,
                  uint64_t seed);
  void next(int32_t* tokens, int32_t* domains, int64_t B) override;
  uint64_t position() const override { return pos_; }
  void set_position(uint64_t p) override;
  uint64_t sequences_per_epoch() const override { return n_seq_; }
  std::string describe() const override;
  int64_t n_tokens() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  void make_order(uint64_t epoch);
  std::string path_;
  int64_t seq_len_;
  bool shuffle_;
  uint64_t seed_, pos_ = 0, n_seq_ = 0, epoch_ = ~0ull;
  std::vector<int32_t> tokens_;
  std::vector<uint64_t> order_;  // permutation of the current epoch
};

// Several finite sources read as one stream that deals their sequences out in turn: sequence g
// is the (g / n)-th of source g mod n while every source still has one, then the others go on
// in turn. Each source contributes its first min(cap, sequences_per_epoch()) sequences
// (cap 0: all of them), so the stream holds exactly the sequences the sources would give read
// one by one, in another order. Evaluation uses it to mix the per-domain validation sets into
// micro-batches of several domains, as training's mixed micro-batches are. Does not own the
// sources (they must outlive it); moves their positions; not thread-safe.
class InterleavedSource : public BatchSource {
 public:
  // seq_len: S (each sequence is S + 1 tokens). REQUIRES: every source finite, or cap > 0.
  InterleavedSource(std::vector<BatchSource*> sources, uint64_t cap, int64_t seq_len);
  void next(int32_t* tokens, int32_t* domains, int64_t B) override;
  uint64_t position() const override { return pos_; }
  void set_position(uint64_t p) override { pos_ = p; }
  uint64_t sequences_per_epoch() const override { return order_.size(); }
  std::string describe() const override;

 private:
  struct Ref {
    size_t source;
    uint64_t index;
  };
  std::vector<BatchSource*> sources_;
  std::vector<Ref> order_;  // the stream: which sequence of which source, in turn
  int64_t row_;             // tokens per sequence, S + 1
  uint64_t pos_ = 0;
};

// The training source a run's [data] section describes.
std::unique_ptr<BatchSource> make_train_source(const RunConfig& cfg);

// The domains of a run's data, by id: synthetic_0..3 (synthetic), "tokens" (a token file), or
// the blend's datasets by file name without a _train/_valid/_test suffix.
std::vector<std::string> domain_names(const RunConfig& cfg);

// The validation sources: one (synthetic: a mixed stream whose sequences carry their domain
// ids), none (token files without valid_tokens), one per valid_tokens, or one per data.valid
// prefix (blend: each a single domain; a domain not in the training blend gets the next id).
struct ValidSet {
  std::string name;  // "" when the source mixes domains
  std::unique_ptr<BatchSource> source;
};
std::vector<ValidSet> make_valid_sources(const RunConfig& cfg, std::vector<std::string>* domains);

}  // namespace sy
