#include "data/corpus.h"

#include <fmt/format.h>
#include <omp.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/signals.h"
#include "data/indexed_dataset.h"
#include "data/tokenizer.h"
#include "io/checkpoint_dir.h"

namespace sy {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

constexpr const char* kSplits[] = {"train", "valid", "test"};
constexpr const char* kPython = "/usr/bin/python3";
// Documents buffered before a parallel encode: bounds memory for large inputs.
constexpr int64_t kEncodeBatchBytes = 64'000'000;

// Progress lines on stderr: "[data   12.3s] message".
class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet), t0_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  template <typename... Args>
  void operator()(fmt::format_string<Args...> f, Args&&... args) const {
    if (quiet_) return;
    fmt::print(stderr, "[data {:6.1f}s] {}\n", seconds(),
               fmt::format(f, std::forward<Args>(args)...));
    std::fflush(stderr);
  }

 private:
  bool quiet_;
  std::chrono::steady_clock::time_point t0_;
};

double mb(int64_t bytes) { return static_cast<double>(bytes) / 1e6; }

// Reads a JSON Lines file: calls f(text, line_number) for each non-blank line's "text" field.
// Every line is checked to be UTF-8 and an object with a non-empty string "text".
void for_each_jsonl_text(const std::string& path,
                         const std::function<void(std::string&&, int64_t)>& f) {
  std::ifstream in(path, std::ios::binary);
  SY_CHECK(in.good(), "{}: input must be a readable file, got one that cannot be opened", path);
  std::string line;
  int64_t n = 0, docs = 0;
  while (std::getline(in, line)) {
    ++n;
    check_utf8(line, path, n);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(fmt::format("{}:{}: line must be a JSON object, got invalid JSON ({})", path, n,
                       e.what()));
    }
    SY_CHECK(j.is_object(), "{}:{}: line must be a JSON object with a \"text\" field, got a {}",
             path, n, j.type_name());
    const auto it = j.find("text");
    SY_CHECK(it != j.end(),
             "{}:{}: JSON object must have a \"text\" field, got none (fields: {}); each line of a "
             ".jsonl input is one document {{\"text\": \"...\"}}",
             path, n, [&] {
               std::string keys;
               for (const auto& [k, v] : j.items()) keys += (keys.empty() ? "" : ", ") + k;
               return keys.empty() ? std::string("none") : keys;
             }());
    SY_CHECK(it->is_string(), "{}:{}: \"text\" must be a string, got a {}", path, n,
             it->type_name());
    std::string text = it->get<std::string>();
    SY_CHECK(!text.empty(), "{}:{}: \"text\" must be non-empty, got \"\"", path, n);
    ++docs;
    f(std::move(text), n);
  }
  SY_CHECK(in.eof(), "{}: read error after line {}", path, n);
  SY_CHECK(docs > 0, "{}: JSONL input must hold at least one document, got an empty file", path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SY_CHECK(in.good(), "{}: input must be a readable file, got one that cannot be opened", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Writes the lines of `text` to a tokenizer training file, one sentence per line; lines the
// trainer would skip with a warning (over max_sentence_length bytes) are left out and counted.
// Returns the bytes written.
int64_t write_training_lines(std::ostream& out, std::string_view text, int64_t* long_lines) {
  const auto max_line = static_cast<size_t>(TokenizerTrainOptions{}.max_sentence_length);
  int64_t written = 0;
  for (;;) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    if (line.size() <= max_line) {
      out << line << '\n';
      written += static_cast<int64_t>(line.size()) + 1;
    } else {
      ++*long_lines;
    }
    if (nl == std::string_view::npos) return written;
    text.remove_prefix(nl + 1);
  }
}

// Encodes documents in parallel batches, checks each decodes back to its text, and appends them,
// in order, to one dataset.
class DatasetBuilder {
 public:
  DatasetBuilder(const Tokenizer& tok, const std::string& prefix, int threads)
      : tok_(tok), writer_(prefix, token_dtype_for_vocab(tok.vocab_size())), threads_(threads) {}

  // `where` names the document in errors ("file.txt", "docs.jsonl:17").
  void add(std::string text, std::string where) {
    batch_bytes_ += static_cast<int64_t>(text.size());
    docs_.push_back({std::move(text), std::move(where)});
    if (batch_bytes_ >= kEncodeBatchBytes) flush();
  }

  void finish() {
    flush();
    writer_.finalize();
  }

  int64_t documents() const { return writer_.num_documents(); }
  int64_t tokens() const { return writer_.num_tokens(); }
  int64_t text_bytes() const { return text_bytes_; }

 private:
  struct Doc {
    std::string text, where;
  };

  void flush() {
    const auto n = static_cast<int64_t>(docs_.size());
    std::vector<std::vector<int32_t>> ids(docs_.size());
    std::vector<std::string> errors(docs_.size());
    // Errors are caught per document and rethrown outside the parallel region.
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads_)
    for (int64_t i = 0; i < n; ++i) {
      try {
        tok_.encode(docs_[i].text, &ids[i], docs_[i].where);
        // Every document is decoded back: a dataset never holds text it cannot reproduce.
        if (tok_.decode(ids[i]) != docs_[i].text) {
          errors[i] = fmt::format(
              "{}: decode(encode(text)) must equal the text, got a different text back; the "
              "tokenizer {} does not round-trip this document (please report it)",
              docs_[i].where, tok_.path());
        }
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) fail(errors[i]);
      writer_.add_document(ids[i]);
      text_bytes_ += static_cast<int64_t>(docs_[i].text.size());
    }
    docs_.clear();
    batch_bytes_ = 0;
  }

  const Tokenizer& tok_;
  IndexedDatasetWriter writer_;
  int threads_;
  std::vector<Doc> docs_;
  int64_t batch_bytes_ = 0, text_bytes_ = 0;
};

// ---- build_demo_corpus ----------------------------------------------------------------------

std::string find_script(const std::string& given) {
  const std::string rel = "scripts/corpus/build_text.py";
  std::vector<fs::path> tried;
  if (!given.empty()) {
    tried.emplace_back(given);
  } else {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
      tried.push_back(exe.parent_path().parent_path() / rel);
      tried.push_back(exe.parent_path().parent_path().parent_path() / rel);
    }
#ifdef SY_SOURCE_DIR
    tried.push_back(fs::path(SY_SOURCE_DIR) / rel);
#endif
  }
  std::string list;
  for (const auto& p : tried) {
    if (fs::is_regular_file(p)) return fs::absolute(p).lexically_normal().string();
    list += (list.empty() ? "" : ", ") + p.string();
  }
  fail(fmt::format(
      "data demo: the text extraction script {} must exist, got none at {}; run switchyard from "
      "its build tree inside the source checkout",
      rel, list.empty() ? "(no candidate path)" : list));
}

// Runs /usr/bin/python3 script --out text_dir; its progress goes straight to our stderr.
void run_text_extraction(const std::string& script, const std::string& text_dir) {
  SY_CHECK(fs::exists(kPython), "data demo: {} must exist (Debian's python3), got none", kPython);
  std::vector<std::string> args = {kPython, script, "--out", text_dir};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const ChildSignalDefaults child_signals;  // interruptible, SIGPIPE at its default
  const int rc = posix_spawn(&pid, kPython, nullptr, child_signals.get(), argv.data(), environ);
  SY_CHECK(rc == 0, "data demo: starting {} {} must succeed, got error {}", kPython, script, rc);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    SY_CHECK(errno == EINTR, "data demo: waiting for {} failed (errno {})", script, errno);
  }
  SY_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "data demo: text extraction ({} --out {}) must succeed, got {} {} (its message is "
           "above)",
           script, text_dir, WIFEXITED(status) ? "exit status" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

ojson read_json_file(const std::string& path) {
  try {
    return ojson::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(fmt::format("{}: must be valid JSON, got a parse error ({}); delete it and rerun", path,
                     e.what()));
  }
}

// True when manifest.json exists, its inputs equal `inputs` and every file it lists exists with
// its recorded size.
bool demo_up_to_date(const std::string& out_dir, const ojson& inputs) {
  const fs::path path = fs::path(out_dir) / "manifest.json";
  if (!fs::exists(path)) return false;
  ojson m;
  try {
    m = ojson::parse(read_file(path.string()));
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  if (!m.contains("inputs") || m["inputs"] != inputs || !m.contains("files")) return false;
  for (const auto& [name, info] : m["files"].items()) {
    std::error_code ec;
    const auto size = fs::file_size(fs::path(out_dir) / name, ec);
    if (ec || !info.contains("bytes") || info["bytes"] != size) return false;
  }
  return true;
}

void write_json_atomic(const std::string& path, const ojson& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << j.dump(2) << '\n';
    SY_CHECK(out.good(), "{}: writing must succeed, got an I/O error (disk full?)", tmp);
  }
  fs::rename(tmp, path);
}

struct DomainText {
  std::string name;
  std::vector<std::string> docs[3];  // per split, as kSplits
};

}  // namespace

DemoCorpusResult build_demo_corpus(const std::string& out_dir, const DemoCorpusOptions& options) {
  SY_CHECK(options.vocab_size >= 300 && options.vocab_size <= 1'000'000,
           "data demo: vocab_size must be in [300, 1000000], got {}", options.vocab_size);
  SY_CHECK(options.sample_mb_per_domain > 0, "data demo: sample_mb_per_domain must be > 0, got {}",
           options.sample_mb_per_domain);
  SY_CHECK(options.threads >= 1, "data demo: threads must be >= 1, got {}", options.threads);
  const Progress log(options.quiet);
  const fs::path out = fs::absolute(out_dir).lexically_normal();
  const fs::path text_dir = out / "text";
  fs::create_directories(out);
  DemoCorpusResult result{.manifest_path = (out / "manifest.json").string()};

  // (a) Text: build_text.py caches itself (about a second when up to date).
  const std::string script = find_script(options.script);
  log("text: {} --out {}", script, text_dir.string());
  run_text_extraction(script, text_dir.string());
  const std::string text_manifest_path = (text_dir / "manifest.json").string();
  const ojson text_manifest = read_json_file(text_manifest_path);
  SY_CHECK(text_manifest.contains("domains") && text_manifest["domains"].is_object() &&
               !text_manifest["domains"].empty(),
           "{}: must list the domains, got none; delete {} and rerun", text_manifest_path,
           text_dir.string());

  const ojson inputs = {{"tool", "switchyard data demo"},
                        {"version", kDemoCorpusVersion},
                        {"text_manifest_sha256", io::sha256_file(text_manifest_path)},
                        {"vocab_size", options.vocab_size},
                        {"sample_mb_per_domain", options.sample_mb_per_domain}};
  if (demo_up_to_date(out.string(), inputs)) {
    log("{} is up to date (same text, vocabulary and tool version); nothing to do",
        result.manifest_path);
    result.up_to_date = true;
    return result;
  }
  fs::remove(out / "manifest.json");  // a half-rebuilt corpus must not look complete

  // Read every split into memory (~120 MB for the default corpus).
  std::vector<DomainText> domains;
  int64_t total_bytes = 0;
  for (const auto& [name, info] : text_manifest["domains"].items()) {
    DomainText d{.name = name, .docs = {}};
    for (int s = 0; s < 3; ++s) {
      const std::string path = (text_dir / fmt::format("{}.{}.jsonl", name, kSplits[s])).string();
      SY_CHECK(fs::exists(path), "{}: split file must exist, got none; delete {} and rerun", path,
               text_dir.string());
      // An empty split (possible for tiny domains) is allowed: the dataset has no documents.
      if (fs::file_size(path) == 0) continue;
      for_each_jsonl_text(path, [&](std::string&& text, int64_t) {
        total_bytes += static_cast<int64_t>(text.size());
        d.docs[s].push_back(std::move(text));
      });
    }
    domains.push_back(std::move(d));
  }
  log("read {} domains, {:.1f} MB of text", domains.size(), mb(total_bytes));

  // (b) Tokenizer on a balanced sample: up to sample_mb_per_domain of each domain's train
  // split, documents evenly spread (document i is taken when floor(i * f) steps up).
  const fs::path sample_path = out / "tokenizer_sample.txt";
  {
    std::ofstream sample(sample_path, std::ios::binary | std::ios::trunc);
    const auto cap = static_cast<int64_t>(options.sample_mb_per_domain * 1e6);
    int64_t sample_bytes = 0, long_lines = 0;
    const int64_t max_line = TokenizerTrainOptions{}.max_sentence_length;  // for the log line
    for (const auto& d : domains) {
      int64_t bytes = 0;
      for (const auto& t : d.docs[0]) bytes += static_cast<int64_t>(t.size());
      const double f = bytes <= cap ? 1.0 : static_cast<double>(cap) / static_cast<double>(bytes);
      int64_t taken = 0;
      for (size_t i = 0; i < d.docs[0].size(); ++i) {
        if (std::floor(static_cast<double>(i + 1) * f) == std::floor(static_cast<double>(i) * f))
          continue;
        taken += write_training_lines(sample, d.docs[0][i], &long_lines);
      }
      sample_bytes += taken;
    }
    SY_CHECK(sample.good(), "{}: writing must succeed, got an I/O error (disk full?)",
             sample_path.string());
    log("tokenizer: training BPE {} on a {:.1f} MB sample (up to {:g} MB per domain; {} lines "
        "over {} bytes left out)",
        options.vocab_size, mb(sample_bytes), options.sample_mb_per_domain, long_lines, max_line);
  }
  const double t_tok = log.seconds();
  TokenizerTrainOptions topt;
  topt.num_threads = options.threads;
  train_tokenizer({sample_path.string()}, (out / "tokenizer").string(), options.vocab_size, topt);
  fs::remove(sample_path);
  const std::string model_path = (out / "tokenizer.model").string();
  const Tokenizer tok(model_path);
  log("tokenizer: {} ({} pieces) in {:.1f} s", model_path, tok.vocab_size(), log.seconds() - t_tok);

  // (c) Encode every split.
  fs::create_directories(out / "data");
  ojson domains_json = ojson::object();
  const double t_enc = log.seconds();
  int64_t all_tokens = 0;
  for (auto& d : domains) {
    ojson dj = ojson::object();
    int64_t dom_bytes = 0, dom_tokens = 0;
    const double t_dom = log.seconds();
    for (int s = 0; s < 3; ++s) {
      const std::string rel = fmt::format("data/{}_{}", d.name, kSplits[s]);
      DatasetBuilder b(tok, (out / rel).string(), options.threads);
      for (size_t i = 0; i < d.docs[s].size(); ++i) {
        b.add(std::move(d.docs[s][i]), fmt::format("{}/{}.{}.jsonl document {}", text_dir.string(),
                                                   d.name, kSplits[s], i + 1));
      }
      d.docs[s] = {};
      b.finish();
      dj[kSplits[s]] = {
          {"prefix", rel},
          {"documents", b.documents()},
          {"tokens", b.tokens()},
          {"text_bytes", b.text_bytes()},
          {"bytes_per_token", b.tokens() ? std::round(1000.0 * static_cast<double>(b.text_bytes()) /
                                                      static_cast<double>(b.tokens())) /
                                               1000.0
                                         : 0.0}};
      dom_bytes += b.text_bytes();
      dom_tokens += b.tokens();
    }
    all_tokens += dom_tokens;
    const double secs = log.seconds() - t_dom;
    log("encode: {:<12} {:7.1f} MB -> {:9} tokens ({:.2f} bytes/token) in {:5.1f} s, {:.1f} MB/s",
        d.name, mb(dom_bytes), dom_tokens,
        dom_tokens ? static_cast<double>(dom_bytes) / static_cast<double>(dom_tokens) : 0.0, secs,
        secs > 0 ? mb(dom_bytes) / secs : 0.0);
    domains_json[d.name] = std::move(dj);
  }
  log("encode: {} tokens in {:.1f} s", all_tokens, log.seconds() - t_enc);

  // (d) Manifest, written last: its presence marks a complete corpus.
  ojson files = ojson::object();
  std::vector<std::string> names = {"tokenizer.model", "tokenizer.vocab"};
  for (const auto& [name, dj] : domains_json.items()) {
    for (const char* split : kSplits) {
      const std::string prefix = dj[split]["prefix"].get<std::string>();
      names.push_back(prefix + ".bin");
      names.push_back(prefix + ".idx");
    }
  }
  for (const auto& name : names) {
    const std::string p = (out / name).string();
    files[name] = {{"bytes", fs::file_size(p)}, {"sha256", io::sha256_file(p)}};
  }
  ojson m = {{"format", "switchyard-corpus"},
             {"format_version", 1},
             {"inputs", inputs},
             {"text_manifest", "text/manifest.json"},
             {"text_inputs_key", text_manifest.value("inputs_key", "")},
             {"debian_packages", text_manifest.value("debian_packages", ojson::object())},
             {"npm_packages", text_manifest.value("npm_packages", ojson::object())},
             {"tools_installed", text_manifest.value("tools_installed", ojson::object())},
             {"tokenizer",
              {{"model", "tokenizer.model"},
               {"type", "sentencepiece-bpe"},
               {"vocab_size", tok.vocab_size()},
               {"sha256", files["tokenizer.model"]["sha256"]},
               {"unk_id", tok.unk_id()},
               {"bos_id", tok.bos_id()},
               {"eos_id", tok.eos_id()},
               {"newline_id", tok.newline_id()}}},
             {"dtype", std::string(token_dtype_name(
                           static_cast<uint8_t>(token_dtype_for_vocab(tok.vocab_size()))))},
             {"documents_note",
              "one dataset document per corpus document, no BOS/EOS stored; every document "
              "checked to decode back to its text"},
             {"domains", domains_json},
             {"files", files},
             {"seconds", std::round(log.seconds() * 10) / 10}};
  write_json_atomic(result.manifest_path, m);
  log("done: {} domains, {} tokens; manifest {}", domains_json.size(), all_tokens,
      result.manifest_path);
  return result;
}

// ---- tokenize_files -------------------------------------------------------------------------

namespace {

struct Source {
  std::string path;
  bool jsonl = false;
};

std::vector<Source> expand_inputs(const std::vector<std::string>& inputs) {
  SY_CHECK(!inputs.empty(), "data tokenize: inputs must be at least one path, got none");
  std::vector<Source> out;
  const auto add_file = [&](const fs::path& p) {
    out.push_back({p.string(), p.extension() == ".jsonl"});
  };
  for (const auto& in : inputs) {
    const fs::path p(in);
    std::error_code ec;
    const auto st = fs::status(p, ec);
    SY_CHECK(!ec && fs::exists(st), "{}: input must be an existing file or directory, got none",
             in);
    if (fs::is_directory(st)) {
      std::vector<fs::path> found;
      auto it =
          fs::recursive_directory_iterator(p, fs::directory_options::follow_directory_symlink);
      for (; it != fs::recursive_directory_iterator(); ++it) {
        const std::string name = it->path().filename().string();
        if (name.starts_with('.')) {
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file()) found.push_back(it->path());
      }
      std::sort(found.begin(), found.end());
      SY_CHECK(!found.empty(), "{}: input directory must contain at least one file, got none", in);
      for (const auto& f : found) add_file(f);
    } else {
      add_file(p);
    }
  }
  return out;
}

// Calls f(text, where) for every document of the sources, validating as it goes.
void for_each_document(const std::vector<Source>& sources,
                       const std::function<void(std::string&&, std::string&&)>& f) {
  for (const auto& s : sources) {
    if (s.jsonl) {
      for_each_jsonl_text(s.path, [&](std::string&& text, int64_t line) {
        f(std::move(text), fmt::format("{}:{}", s.path, line));
      });
    } else {
      std::string text = read_file(s.path);
      SY_CHECK(!text.empty(),
               "{}: document must be non-empty, got an empty file (remove it or add text)", s.path);
      check_utf8(text, s.path);
      f(std::move(text), std::string(s.path));
    }
  }
}

}  // namespace

TokenizeResult tokenize_files(const std::vector<std::string>& inputs, const std::string& domain,
                              const std::string& out_prefix, const TokenizeOptions& options) {
  SY_CHECK(!domain.empty() && std::all_of(domain.begin(), domain.end(),
                                          [](char c) {
                                            return std::isalnum(static_cast<unsigned char>(c)) ||
                                                   c == '_' || c == '-' || c == '.';
                                          }),
           "data tokenize: domain must be a non-empty name of letters, digits, '_', '-', '.', "
           "got \"{}\"",
           domain);
  SY_CHECK(!out_prefix.empty(), "data tokenize: output prefix must be non-empty, got \"\"");
  SY_CHECK(options.threads >= 1, "data tokenize: threads must be >= 1, got {}", options.threads);
  const Progress log(options.quiet);
  const std::vector<Source> sources = expand_inputs(inputs);
  const fs::path parent = fs::path(out_prefix).parent_path();
  if (!parent.empty()) fs::create_directories(parent);

  TokenizeResult r;
  if (options.tokenizer.empty()) {
    SY_CHECK(options.vocab_size >= 300 && options.vocab_size <= 1'000'000,
             "data tokenize: vocab_size must be in [300, 1000000], got {}", options.vocab_size);
    // The training text: every line of every document (SentencePiece samples 2M lines).
    const std::string sample = out_prefix + ".tokenizer_sample.txt";
    {
      std::ofstream out(sample, std::ios::binary | std::ios::trunc);
      int64_t long_lines = 0;
      SY_CHECK(out.good(), "{}: must be writable, got a file that cannot be created", sample);
      for_each_document(sources, [&](std::string&& text, std::string&&) {
        write_training_lines(out, text, &long_lines);
      });
      SY_CHECK(out.good(), "{}: writing must succeed, got an I/O error (disk full?)", sample);
    }
    log("tokenizer: training BPE {} on {} ({:.1f} MB)", options.vocab_size, sample,
        mb(static_cast<int64_t>(fs::file_size(sample))));
    TokenizerTrainOptions topt;
    topt.num_threads = options.threads;
    try {
      train_tokenizer({sample}, out_prefix + ".tokenizer", options.vocab_size, topt);
    } catch (...) {
      fs::remove(sample);
      throw;
    }
    fs::remove(sample);
    r.tokenizer = out_prefix + ".tokenizer.model";
  } else {
    r.tokenizer = options.tokenizer;
  }
  const Tokenizer tok(r.tokenizer);

  DatasetBuilder b(tok, out_prefix, options.threads);
  for_each_document(sources, [&](std::string&& text, std::string&& where) {
    b.add(std::move(text), std::move(where));
  });
  b.finish();
  r.documents = b.documents();
  r.tokens = b.tokens();
  r.text_bytes = b.text_bytes();
  SY_CHECK(r.documents > 0, "data tokenize: inputs must hold at least one document, got none");

  ojson in_json = ojson::array();
  for (const auto& s : sources) in_json.push_back(s.path);
  const ojson meta = {{"format", "switchyard-dataset"},
                      {"format_version", 1},
                      {"domain", domain},
                      {"prefix", fs::path(out_prefix).filename().string()},
                      {"dtype", std::string(token_dtype_name(static_cast<uint8_t>(
                                    token_dtype_for_vocab(tok.vocab_size()))))},
                      {"tokenizer",
                       {{"model", fs::absolute(r.tokenizer).lexically_normal().string()},
                        {"vocab_size", tok.vocab_size()},
                        {"sha256", io::sha256_file(r.tokenizer)},
                        {"eos_id", tok.eos_id()}}},
                      {"documents", r.documents},
                      {"tokens", r.tokens},
                      {"text_bytes", r.text_bytes},
                      {"inputs", in_json}};
  write_json_atomic(out_prefix + ".json", meta);
  log("{}: {} documents, {:.2f} MB -> {} tokens ({}.bin/.idx)", domain, r.documents,
      mb(r.text_bytes), r.tokens, out_prefix);
  return r;
}

}  // namespace sy
