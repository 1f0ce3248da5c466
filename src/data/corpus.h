// Turning text into training data: the default 8-domain demo corpus (`switchyard data demo`)
// and a user's own files (`switchyard data tokenize`), both ending as Megatron indexed datasets
// (data/indexed_dataset.h) encoded with a SentencePiece tokenizer (data/tokenizer.h).
//
// Documents are stored one per dataset document, as one sequence, without BOS or EOS: the loader
// puts the tokenizer's EOS between documents when it packs sequences. Every document is decoded
// back after encoding and must equal its text (an error otherwise).
//
// Both entry points validate their inputs and throw sy::Error naming the file (and line) at
// fault. They use OpenMP threads for encoding; call them from one thread at a time (tokenizer
// training is process-wide state in SentencePiece).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sy {

// Bumped when the demo corpus's output changes for the same text and options; part of the
// manifest's inputs key, so a new version rebuilds.
inline constexpr int kDemoCorpusVersion = 1;

struct DemoCorpusOptions {
  int vocab_size = 8192;
  // Tokenizer training sample: at most this many MB (10^6 bytes) of text per domain, documents
  // taken evenly spread over the domain's train split.
  double sample_mb_per_domain = 6.0;
  int threads = 2;  // OpenMP threads for encoding, and SentencePiece's trainer threads
  // scripts/corpus/build_text.py; empty: found next to the executable (<exe dir>/../scripts,
  // <exe dir>/../../scripts) or in the source tree this was compiled from.
  std::string script;
  bool quiet = false;  // no progress lines on stderr
};

struct DemoCorpusResult {
  bool up_to_date = false;    // the manifest matched: nothing was rebuilt
  std::string manifest_path;  // <out_dir>/manifest.json
};

// Builds the demo corpus in `out_dir`:
//   text/          the text extraction (build_text.py; its own cache and manifest)
//   tokenizer.model, tokenizer.vocab
//                  SentencePiece BPE, options.vocab_size, trained on a balanced sample
//   data/<domain>_<split>.bin/.idx
//                  one Megatron dataset per domain and split (train, valid, test)
//   manifest.json  inputs key, package versions, tokenizer ids and checksum, per domain and
//                  split: documents, tokens, text bytes, bytes per token; SHA-256 of every file
// Cached: when manifest.json's inputs key (text manifest checksum, vocab size, sample size,
// kDemoCorpusVersion) matches and every file it lists has its recorded size, nothing is done.
DemoCorpusResult build_demo_corpus(const std::string& out_dir,
                                   const DemoCorpusOptions& options = {});

struct TokenizeOptions {
  // An existing SentencePiece model. Empty: train a new one on the inputs, written to
  // `<out_prefix>.tokenizer.model` (and .vocab).
  std::string tokenizer;
  int vocab_size = 8192;  // only for a new tokenizer
  int threads = 2;
  bool quiet = false;
};

struct TokenizeResult {
  std::string tokenizer;  // the model used
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t text_bytes = 0;
};

// Encodes `inputs` into one dataset `<out_prefix>.bin/.idx` plus `<out_prefix>.json` (domain,
// tokenizer path, SHA-256 and EOS id, counts, inputs). Each input is
//   * a file ending in `.jsonl`: one document per non-blank line, a JSON object whose "text"
//     field is a non-empty string (other fields ignored);
//   * another file: one document, its whole content (plain UTF-8 text);
//   * a directory: every regular file below it, recursively, in sorted path order, each read as
//     above; names starting with '.' are skipped.
// Errors (sy::Error): no documents, an empty file, text that is not UTF-8 (file, line and column),
// a JSONL line that is not an object with a string "text" (file and line), a bad domain name
// (letters, digits, '_', '-', '.').
TokenizeResult tokenize_files(const std::vector<std::string>& inputs, const std::string& domain,
                              const std::string& out_prefix, const TokenizeOptions& options = {});

}  // namespace sy
