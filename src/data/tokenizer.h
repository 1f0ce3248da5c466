// The SentencePiece tokenizer (Debian's libsentencepiece 0.1.97): training, encoding, decoding.
//
// Exactness: decode(encode(x)) == x for every valid UTF-8 text x, including blank lines,
// indentation, tabs, trailing whitespace and a missing or present final newline. This holds for
// models trained by train_tokenizer (identity normalization, no whitespace folding, byte
// fallback) and is checked for any model when it is loaded. How:
//   * Text is encoded line by line (3-5x faster than whole documents, and the model is trained
//     one sentence per line, so '\n' is not in its vocabulary); each '\n' becomes the byte
//     token <0x0A>.
//   * SentencePiece adds a dummy-prefix space to every encoded piece of text and strips it
//     again on decode; decoding is therefore done per line, here, from the piece table.
//   * U+2581 ("▁", SentencePiece's space marker) in the input would decode as a space; it is
//     encoded as its three UTF-8 byte tokens instead and the text around it without a dummy
//     prefix.
//
// Thread-safety: after construction, encode and decode are const and may be called from several
// threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace sy {

// Throws sy::Error unless `text` is well-formed UTF-8 (no overlong forms, surrogates or code
// points above U+10FFFF). The message names `where`, the 1-based line (counted from
// `first_line`) and column, and the offending byte: "<where>:<line>:<column>: text must be
// valid UTF-8, got byte 0xff".
void check_utf8(std::string_view text, std::string_view where, int64_t first_line = 1);

class Tokenizer {
 public:
  // Loads `<model_path>` (a SentencePiece .model file). Errors name the file: missing, not a
  // SentencePiece model, without byte-fallback pieces, or not round-tripping text exactly
  // (a model that normalizes text or folds whitespace).
  explicit Tokenizer(std::string model_path);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  const std::string& path() const { return path_; }
  int32_t vocab_size() const { return vocab_size_; }
  int32_t bos_id() const { return bos_id_; }  // -1 when the model has none
  int32_t eos_id() const { return eos_id_; }  // -1 when the model has none
  int32_t unk_id() const { return unk_id_; }
  int32_t newline_id() const { return newline_id_; }  // the byte piece <0x0A>

  // Appends the ids of `text` to *out. No BOS/EOS is added (the loader puts EOS between
  // documents). `where` names the text in the UTF-8 error ("file.txt", "doc.jsonl:17").
  void encode(std::string_view text, std::vector<int32_t>* out,
              std::string_view where = "text") const;
  std::vector<int32_t> encode(std::string_view text, std::string_view where = "text") const;

  // The text of `ids`. Control ids (BOS, EOS, PAD) decode to nothing, UNK to " \u2047 " as in
  // SentencePiece. REQUIRES: every id in [0, vocab_size()) (checked).
  std::string decode(std::span<const int32_t> ids) const;

 private:
  void encode_line(std::string_view line, std::vector<int32_t>* out) const;
  void encode_plain(std::string_view text, bool first_in_line, std::vector<int32_t>* out) const;

  std::string path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  int32_t vocab_size_ = 0, bos_id_ = -1, eos_id_ = -1, unk_id_ = 0, newline_id_ = -1;
  int32_t byte_id_[256] = {};         // id of the byte piece <0xNN>
  std::vector<std::string> surface_;  // [vocab_size]: the text of each id, '▁' as ' '
  std::vector<uint8_t> lead_space_;   // [vocab_size]: 1 if a normal piece starting with '▁'
  bool dummy_prefix_ = false;         // the model prepends '▁' to every encoded text
};

// Options of train_tokenizer beyond the fixed flags. Training is deterministic for fixed inputs
// and options: the sentence sample is drawn with `seed`.
struct TokenizerTrainOptions {
  double character_coverage = 0.9995;
  // Lines sampled from the inputs for training (0 = all lines); shuffled sampling with `seed`.
  int64_t input_sentence_size = 2'000'000;
  uint32_t seed = 1234;
  int num_threads = 2;
  // Lines longer than this many bytes are skipped by the trainer.
  int max_sentence_length = 16384;
  bool quiet = true;  // SentencePiece logs only warnings (a process-wide setting in the library)
};

// Trains a BPE model on `input_files` (plain UTF-8 text, one sentence per line) and writes
// `<model_prefix>.model` and `<model_prefix>.vocab`. Flags, as DATA-SOURCES.md: --model_type=bpe
// --byte_fallback=true --split_digits=true --remove_extra_whitespaces=false
// --allow_whitespace_only_pieces=true --normalization_rule_name=identity
// --character_coverage=0.9995. Every input is checked to be UTF-8 first (error names file and
// line). Not thread-safe (SentencePiece's trainer seed and log level are process-wide).
void train_tokenizer(const std::vector<std::string>& input_files, const std::string& model_prefix,
                     int vocab_size = 8192, const TokenizerTrainOptions& options = {});

}  // namespace sy
