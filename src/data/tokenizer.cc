#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <unordered_map>
#include <utility>

#include "core/error.h"

namespace sy {

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Length of the well-formed UTF-8 sequence at s[i], or 0 if it is not one.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t left = s.size() - i;
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  const auto cont = [&](size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

std::string status_text(const sentencepiece::util::Status& s) { return s.ToString(); }

}  // namespace

void check_utf8(std::string_view text, std::string_view where, int64_t first_line) {
  int64_t line = first_line;
  size_t line_start = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_sequence_length(text, i);
    if (n == 0) {
      fail(fmt::format(
          "{}:{}:{}: text must be valid UTF-8, got byte 0x{:02x} (convert the file to UTF-8, "
          "e.g. with iconv)",
          where, line, i - line_start + 1, static_cast<unsigned char>(text[i])));
    }
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
    i += n;
  }
}

// ---------------------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::string model_path)
    : path_(std::move(model_path)), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  std::error_code ec;
  SY_CHECK(std::filesystem::is_regular_file(path_, ec),
           "{}: tokenizer model must be an existing file, got none (train one with `switchyard "
           "data` or check the path)",
           path_);
  const auto status = sp_->Load(path_);
  SY_CHECK(status.ok(),
           "{}: tokenizer model must be a SentencePiece .model file, got one that does not load "
           "({}; retrain or re-copy it)",
           path_, status_text(status));
  vocab_size_ = sp_->GetPieceSize();
  bos_id_ = sp_->bos_id();
  eos_id_ = sp_->eos_id();
  unk_id_ = sp_->unk_id();
  for (int b = 0; b < 256; ++b) {
    const int id = sp_->PieceToId(fmt::format("<0x{:02X}>", b));
    SY_CHECK(id >= 0 && sp_->IsByte(id),
             "{}: tokenizer model must have the 256 byte-fallback pieces, got none for <0x{:02X}> "
             "(train it with --byte_fallback=true, as train_tokenizer does)",
             path_, b);
    byte_id_[b] = id;
  }
  newline_id_ = byte_id_['\n'];

  surface_.resize(static_cast<size_t>(vocab_size_));
  lead_space_.assign(static_cast<size_t>(vocab_size_), 0);
  for (int id = 0; id < vocab_size_; ++id) {
    const std::string& piece = sp_->IdToPiece(id);
    std::string& s = surface_[static_cast<size_t>(id)];
    if (sp_->IsByte(id)) {
      s.assign(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
    } else if (sp_->IsControl(id)) {
      s.clear();
    } else if (sp_->IsUnknown(id)) {
      s = " \xE2\x81\x87 ";
    } else {
      for (size_t i = 0; i < piece.size();) {
        if (piece.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
          s += ' ';
          i += kSpaceMarker.size();
        } else {
          s += piece[i++];
        }
      }
      lead_space_[static_cast<size_t>(id)] = piece.starts_with(kSpaceMarker) ? 1 : 0;
    }
  }
  const auto pieces = sp_->EncodeAsPieces("a");
  dummy_prefix_ = !pieces.empty() && std::string_view(pieces[0]).starts_with(kSpaceMarker);

  // A model that normalizes (NFKC, whitespace folding) cannot round-trip; find out now.
  const std::string probe = "  x\t y  \n\n\tz 1234 \xC3\xA9\xE2\x96\x81q \n";
  SY_CHECK(decode(encode(probe)) == probe,
           "{}: tokenizer model must reproduce text exactly (decode(encode(x)) == x), got one "
           "that normalizes it (train it with --normalization_rule_name=identity "
           "--remove_extra_whitespaces=false, as train_tokenizer does)",
           path_);
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::encode_plain(std::string_view text, bool first_in_line,
                             std::vector<int32_t>* out) const {
  if (text.empty()) return;
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  SY_CHECK(status.ok(), "{}: encoding must succeed, got {}", path_, status_text(status));
  size_t first = 0;
  if (!first_in_line && dummy_prefix_ && !ids.empty() && lead_space_[ids[0]]) {
    // Inside a line, the dummy-prefix space SentencePiece added is not in the text: drop it.
    const std::string_view rest = std::string_view(sp_->IdToPiece(ids[0])).substr(3);
    first = 1;
    if (!rest.empty()) {
      const int id = sp_->PieceToId(rest);
      if (id != unk_id_ && !sp_->IsControl(id) && !sp_->IsByte(id)) {
        out->push_back(id);
      } else {
        for (const unsigned char c : rest) out->push_back(byte_id_[c]);
      }
    }
  }
  for (size_t i = first; i < ids.size(); ++i) out->push_back(ids[i]);
}

void Tokenizer::encode_line(std::string_view line, std::vector<int32_t>* out) const {
  bool first = true;
  for (;;) {
    const size_t pos = line.find(kSpaceMarker);
    encode_plain(line.substr(0, pos), first, out);
    if (pos == std::string_view::npos) return;
    for (const unsigned char c : kSpaceMarker) out->push_back(byte_id_[c]);
    line.remove_prefix(pos + kSpaceMarker.size());
    first = false;
  }
}

void Tokenizer::encode(std::string_view text, std::vector<int32_t>* out,
                       std::string_view where) const {
  check_utf8(text, where);
  for (;;) {
    const size_t nl = text.find('\n');
    encode_line(text.substr(0, nl), out);
    if (nl == std::string_view::npos) return;
    out->push_back(newline_id_);
    text.remove_prefix(nl + 1);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, std::string_view where) const {
  std::vector<int32_t> out;
  encode(text, &out, where);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  bool line_start = true;  // the next piece begins a line (or a document, after a control id)
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    SY_CHECK(id >= 0 && id < vocab_size_, "{}: token id must be in [0, {}), got {} at position {}",
             path_, vocab_size_, id, i);
    const std::string& s = surface_[static_cast<size_t>(id)];
    if (id == newline_id_ || (s.empty() && sp_->IsControl(id))) {
      out += s;
      line_start = true;
      continue;
    }
    if (line_start && dummy_prefix_ && lead_space_[static_cast<size_t>(id)]) {
      out.append(s, 1);
    } else {
      out += s;
    }
    line_start = false;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

void train_tokenizer(const std::vector<std::string>& input_files, const std::string& model_prefix,
                     int vocab_size, const TokenizerTrainOptions& options) {
  SY_CHECK(!input_files.empty(), "train_tokenizer: input files must be at least one, got none");
  SY_CHECK(vocab_size >= 300,
           "train_tokenizer: vocab_size must be >= 300 (256 byte pieces, "
           "specials and the characters), got {}",
           vocab_size);
  SY_CHECK(options.character_coverage > 0 && options.character_coverage <= 1,
           "train_tokenizer: character_coverage must be in (0, 1], got {}",
           options.character_coverage);
  SY_CHECK(options.input_sentence_size == 0 || options.input_sentence_size > 100,
           "train_tokenizer: input_sentence_size must be 0 (all lines) or > 100 (a SentencePiece "
           "limit), got {}",
           options.input_sentence_size);
  std::string inputs;
  for (const auto& f : input_files) {
    SY_CHECK(f.find(',') == std::string::npos,
             "{}: input file name must not contain ',' (SentencePiece separates inputs by it), "
             "got one that does",
             f);
    std::ifstream in(f, std::ios::binary);
    SY_CHECK(in.good(), "{}: tokenizer training input must be a readable file, got none", f);
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) check_utf8(line, f, ++n);
    if (!inputs.empty()) inputs += ',';
    inputs += f;
  }
  const std::unordered_map<std::string, std::string> kwargs = {
      {"input", inputs},
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(vocab_size)},
      {"model_type", "bpe"},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"normalization_rule_name", "identity"},
      {"character_coverage", fmt::format("{}", options.character_coverage)},
      {"input_sentence_size", std::to_string(options.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(options.num_threads)},
      {"max_sentence_length", std::to_string(options.max_sentence_length)},
      {"minloglevel", options.quiet ? "1" : "0"},
  };
  sentencepiece::SetRandomGeneratorSeed(options.seed);
  const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs);
  SY_CHECK(status.ok(), "{}.model: tokenizer training must succeed, got: {}", model_prefix,
           status_text(status));
}

}  // namespace sy
