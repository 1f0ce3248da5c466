#include "io/checkpoint_dir.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): POSIX kill()
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "io/atomic_file.h"

namespace sy::io {
namespace {

namespace fs = std::filesystem;

constexpr const char* kTmpTag = ".tmp-";
constexpr const char* kOldTag = ".old-";  // only from the rename-aside fallback in replace_dir
constexpr const char* kDelTag = ".del-";  // a pruned checkpoint, renamed before its removal
constexpr const char* kLatestName = "latest";

std::string errno_str() { return std::strerror(errno); }

// RAII file descriptor. open(O_CREAT) takes the new file's mode from its third argument: without
// one it is whatever happens to be in that register (a setuid `latest` was seen), so always pass
// 0644 (before umask); open ignores it without O_CREAT.
class Fd {
 public:
  Fd(const std::string& path, int flags) : fd_(::open(path.c_str(), flags | O_CLOEXEC, 0644)) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void fsync_path(const std::string& path, bool is_dir) {
  Fd fd(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  SY_CHECK(fd.get() >= 0, "{}: cannot open to fsync: {}", path, errno_str());
  SY_CHECK(::fsync(fd.get()) == 0, "{}: fsync failed: {}", path, errno_str());
}

// A checkpoint file name must stay inside its directory.
bool is_plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

struct FileDigest {
  int64_t bytes = 0;
  std::string sha256;
};

// Reads the file once: size and SHA-256; fsyncs it first when asked.
FileDigest digest_file(const std::string& path, bool sync) {
  Fd fd(path, O_RDONLY);
  SY_CHECK(fd.get() >= 0, "{}: cannot open: {}", path, errno_str());
  if (sync) SY_CHECK(::fsync(fd.get()) == 0, "{}: fsync failed: {}", path, errno_str());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  SY_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1,
           "{}: cannot initialise SHA-256 (OpenSSL libcrypto)", path);
  std::vector<unsigned char> buf(1 << 20);
  FileDigest d;
  for (;;) {
    ssize_t got = ::read(fd.get(), buf.data(), buf.size());
    if (got < 0 && errno == EINTR) continue;
    SY_CHECK(got >= 0, "{}: read failed: {}", path, errno_str());
    if (got == 0) break;
    SY_CHECK(EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(got)) == 1,
             "{}: SHA-256 update failed", path);
    d.bytes += got;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  SY_CHECK(EVP_DigestFinal_ex(ctx.get(), md, &len) == 1, "{}: SHA-256 final failed", path);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    d.sha256 += kHex[md[i] >> 4];
    d.sha256 += kHex[md[i] & 15];
  }
  return d;
}

// Writes `text` to `path` and fsyncs it.
void write_file_synced(const std::string& path, const std::string& text) {
  Fd fd(path, O_WRONLY | O_CREAT | O_TRUNC);
  SY_CHECK(fd.get() >= 0, "{}: cannot open for writing: {}", path, errno_str());
  write_all(fd.get(), text.data(), text.size(), path);
  SY_CHECK(::fsync(fd.get()) == 0, "{}: fsync failed: {}", path, errno_str());
}

std::string parent_of(const std::string& path) {
  std::string p = fs::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

// Atomically makes `src` (a directory) appear at `dst`, replacing any existing `dst`.
void replace_dir(const std::string& src, const std::string& dst) {
  std::error_code ec;
  if (!fs::exists(dst, ec)) {
    SY_CHECK(::rename(src.c_str(), dst.c_str()) == 0, "{}: rename to {} failed: {}", src, dst,
             errno_str());
    return;
  }
  // Swap in one step; src then holds the old checkpoint, which we delete.
  if (::renameat2(AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), RENAME_EXCHANGE) == 0) {
    fsync_path(parent_of(dst), true);
    fs::remove_all(src, ec);
    return;
  }
  SY_CHECK(errno == EINVAL || errno == ENOSYS || errno == ENOTSUP,
           "{}: exchange with {} failed: {}", src, dst, errno_str());
  // Filesystem without RENAME_EXCHANGE: move the old one aside first. A crash in between leaves
  // it at `<dst>.old-<pid>`, which prune_checkpoints moves back.
  const std::string aside = dst + kOldTag + std::to_string(::getpid());
  SY_CHECK(::rename(dst.c_str(), aside.c_str()) == 0, "{}: rename to {} failed: {}", dst, aside,
           errno_str());
  SY_CHECK(::rename(src.c_str(), dst.c_str()) == 0, "{}: rename to {} failed: {}", src, dst,
           errno_str());
  fsync_path(parent_of(dst), true);
  fs::remove_all(aside, ec);
}

// The pid in a `<x>.tmp-<pid>` or `<x>.old-<pid>` name, or -1.
int64_t debris_pid(const std::string& name, const char* tag) {
  const size_t at = name.rfind(tag);
  if (at == std::string::npos) return -1;
  const std::string digits = name.substr(at + std::strlen(tag));
  if (digits.empty() || digits.size() > 9 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stol(digits);
}

// Whether `name` is `<prefix><digits>`: a checkpoint name the caller writes, so may prune.
bool is_own_name(const std::string& name, const std::string& prefix) {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
  return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// A checkpoint the caller writes: `<prefix><digits>`, a directory (not a symlink to one).
bool is_own_dir(const fs::path& p, const std::string& prefix) {
  std::error_code ec;
  return is_own_name(p.filename().string(), prefix) && fs::is_directory(fs::symlink_status(p, ec));
}

bool process_alive(int64_t pid) {
  if (pid == ::getpid()) return true;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// "step_99" < "step_100": digit runs compare as numbers.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      size_t i0 = i, j0 = j;
      while (i0 < a.size() && a[i0] == '0') ++i0;
      while (j0 < b.size() && b[j0] == '0') ++j0;
      size_t i1 = i0, j1 = j0;
      while (i1 < a.size() && digit(a[i1])) ++i1;
      while (j1 < b.size() && digit(b[j1])) ++j1;
      if (i1 - i0 != j1 - j0) return i1 - i0 < j1 - j0;
      const int c = a.compare(i0, i1 - i0, b, j0, j1 - j0);
      if (c != 0) return c < 0;
      i = i1;
      j = j1;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j || (a.size() - i == b.size() - j && a < b);
}

}  // namespace

// ---- CheckpointWriter ----------------------------------------------------------------------

CheckpointWriter::CheckpointWriter(const std::string& final_dir, const std::string& recycle) {
  fs::path p = fs::path(final_dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "a/b/" -> "a/b"
  SY_CHECK(!p.empty() && p.filename() != "." && p.filename() != "..",
           "CheckpointWriter: final_dir must name a directory, got '{}'", final_dir);
  final_ = p.string();
  tmp_ = final_ + kTmpTag + std::to_string(::getpid());
  std::error_code ec;
  fs::create_directories(parent_of(final_), ec);
  SY_CHECK(!ec, "{}: cannot create directory: {}", parent_of(final_), ec.message());
  fs::remove_all(tmp_, ec);
  SY_CHECK(!ec, "{}: cannot remove stale temp dir: {}", tmp_, ec.message());
  if (recycle.empty()) {
    // 0755, not 0777, before umask: a checkpoint is written by one user and read by any.
    SY_CHECK(::mkdir(tmp_.c_str(), 0755) == 0, "{}: cannot create temp dir: {}", tmp_, errno_str());
    return;
  }
  SY_CHECK(is_plain_name(recycle) && recycle != p.filename().string(),
           "{}: the checkpoint to recycle must be a plain directory name other than the one "
           "being written, got '{}'",
           final_, recycle);
  const std::string old = parent_of(final_) + "/" + recycle;
  SY_CHECK(fs::is_regular_file(old + "/" + kManifestName, ec),
           "{}: the checkpoint to recycle must be a committed checkpoint (with {}), got none", old,
           kManifestName);
  // From here on it is a temp dir: readers ignore it, and a crash leaves debris for pruning.
  SY_CHECK(::rename(old.c_str(), tmp_.c_str()) == 0, "{}: rename to {} failed: {}", old, tmp_,
           errno_str());
  fs::remove(tmp_ + "/" + kManifestName, ec);
  SY_CHECK(!ec, "{}: cannot remove the recycled manifest: {}", tmp_, ec.message());
}

CheckpointWriter::~CheckpointWriter() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);  // best effort; prune_checkpoints catches what is left
  }
}

std::string CheckpointWriter::path(const std::string& name) {
  SY_CHECK(!committed_, "{}: path({}) must be called before commit(), got a committed writer",
           final_, name);
  SY_CHECK(is_plain_name(name) && name != kManifestName,
           "{}: checkpoint file name must be a plain name (no '/') other than {}, got '{}'", final_,
           kManifestName, name);
  named_.insert(name);
  return tmp_ + "/" + name;
}

void CheckpointWriter::write_text(const std::string& name, const std::string& text) {
  const std::string p = path(name);
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  SY_CHECK(out, "{}: write failed: {}", p, errno_str());
}

void CheckpointWriter::commit() {
  SY_CHECK(!committed_, "{}: commit() must be called once, got a second call", final_);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp_)) {
    const std::string name = e.path().filename().string();
    if (name == kManifestName) continue;
    SY_CHECK(e.is_regular_file(), "{}: checkpoint entries must be regular files, got '{}'", final_,
             name);
    if (named_.count(name) == 0) {  // a recycled checkpoint's file, not written again
      std::error_code ec;
      fs::remove(e.path(), ec);
      SY_CHECK(!ec, "{}: cannot remove the recycled file {}: {}", final_, name, ec.message());
      continue;
    }
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());

  nlohmann::ordered_json manifest;
  manifest["format"] = kCheckpointFormat;
  manifest["version"] = kCheckpointVersion;
  auto& files = manifest["files"] = nlohmann::ordered_json::object();
  for (const std::string& name : names) {
    const FileDigest d = digest_file(tmp_ + "/" + name, /*sync=*/true);
    files[name] = {{"bytes", d.bytes}, {"sha256", d.sha256}};
  }
  write_file_synced(tmp_ + "/" + kManifestName, manifest.dump(2) + "\n");
  fsync_path(tmp_, true);
  replace_dir(tmp_, final_);
  fsync_path(parent_of(final_), true);
  committed_ = true;
}

// ---- BackgroundCommitter ---------------------------------------------------------------------

BackgroundCommitter::BackgroundCommitter(std::string run_dir, int keep_last)
    : run_dir_(fs::path(std::move(run_dir)).lexically_normal().string()), keep_last_(keep_last) {
  SY_CHECK(keep_last >= 1, "BackgroundCommitter: keep_last must be >= 1, got {}", keep_last);
}

BackgroundCommitter::~BackgroundCommitter() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
}

void BackgroundCommitter::start(std::unique_ptr<CheckpointWriter> w) {
  SY_CHECK(w != nullptr, "BackgroundCommitter::start: a writer must be given, got none");
  wait();
  SY_CHECK(fs::path(parent_of(w->final_dir())).lexically_normal().string() == run_dir_,
           "BackgroundCommitter: checkpoint {} must be in the run directory {}", w->final_dir(),
           run_dir_);
  pending_ = w->final_dir();
  thread_ = std::thread([this, w = std::move(w)] {
    // Below the training threads (nice is per thread on Linux); failing to lower it is harmless.
    errno = 0;
    const int nice_now = ::getpriority(PRIO_PROCESS, 0);
    if (errno == 0) (void)::setpriority(PRIO_PROCESS, 0, std::min(nice_now + 10, 19));
    try {
      w->commit();
      write_latest_pointer(run_dir_, fs::path(w->final_dir()).filename().string());
      prune_checkpoints(run_dir_, keep_last_);
    } catch (...) {
      error_ = std::current_exception();  // read by wait() after the join
    }
  });
}

void BackgroundCommitter::wait() {
  if (thread_.joinable()) thread_.join();
  const std::string name = std::exchange(pending_, std::string());
  const std::exception_ptr error = std::exchange(error_, nullptr);
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    fail(
        fmt::format("{}: the checkpoint's commit failed: {}; the checkpoint before it stays the "
                    "latest",
                    name, e.what()));
  }
}

// ---- verification ----------------------------------------------------------------------------

std::string sha256_file(const std::string& path) { return digest_file(path, false).sha256; }

std::map<std::string, ManifestEntry> verify_checkpoint(const std::string& dir) {
  const std::string mpath = dir + "/" + kManifestName;
  std::error_code ec;
  SY_CHECK(fs::is_regular_file(mpath, ec),
           "{}: {} must exist, got no such file; the checkpoint was not committed (an "
           "interrupted write?) or is not a switchyard checkpoint",
           dir, kManifestName);
  std::ifstream in(mpath, std::ios::binary);
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error; out_of_range for 1e999
    fail(fmt::format("{}: must be valid JSON, got: {}; the manifest is corrupt", mpath, e.what()));
  }
  // value("format", "") would throw nlohmann's type_error for a format that is not a string.
  SY_CHECK(m.is_object() && m.contains("format") && m["format"].is_string() &&
               m["format"] == kCheckpointFormat,
           "{}: format must be \"{}\", got {}; this is not a switchyard checkpoint manifest", mpath,
           kCheckpointFormat,
           m.is_object() && m.contains("format") ? m["format"].dump() : "nothing");
  const auto ver = m.find("version");
  SY_CHECK(ver != m.end() && ver->is_number_integer(), "{}: version must be an integer, got {}",
           mpath, ver == m.end() ? "nothing" : ver->dump());
  const int64_t v = ver->get<int64_t>();
  SY_CHECK(v == kCheckpointVersion, "{}: version must be {}, got {}; {}", mpath, kCheckpointVersion,
           v,
           v > kCheckpointVersion
               ? "it was written by a newer switchyard: load it with that version or newer"
               : "it was written by an older switchyard: load it with that version and re-save");
  const auto files = m.find("files");
  SY_CHECK(files != m.end() && files->is_object(), "{}: files must be an object, got {}", mpath,
           files == m.end() ? "nothing" : files->dump());

  std::map<std::string, ManifestEntry> out;
  for (const auto& [name, f] : files->items()) {
    SY_CHECK(is_plain_name(name) && name != kManifestName,
             "{}: file names must be plain names inside the checkpoint, got '{}'", mpath, name);
    SY_CHECK(f.is_object() && f.contains("bytes") && f["bytes"].is_number_integer() &&
                 f["bytes"].get<int64_t>() >= 0 && f.contains("sha256") &&
                 f["sha256"].is_string() && f["sha256"].get<std::string>().size() == 64,
             "{}: files[{}] must be {{\"bytes\": n >= 0, \"sha256\": 64 hex digits}}, got {}",
             mpath, name, f.dump());
    ManifestEntry e{f["bytes"].get<int64_t>(), f["sha256"].get<std::string>()};
    const std::string p = dir + "/" + name;  // NOLINT(performance-inefficient-string-concatenation)
    SY_CHECK(fs::is_regular_file(p, ec),
             "{}: file listed in the manifest must exist, got no such file; the checkpoint is "
             "incomplete",
             p);
    const auto size = static_cast<int64_t>(fs::file_size(p, ec));
    SY_CHECK(size == e.bytes, "{}: size must be {} bytes, got {} bytes; the file is {}", p, e.bytes,
             size, size < e.bytes ? "truncated" : "longer than when it was saved");
    const FileDigest d = digest_file(p, false);
    SY_CHECK(d.bytes == e.bytes, "{}: size must be {} bytes, got {} bytes while reading", p,
             e.bytes, d.bytes);
    SY_CHECK(d.sha256 == e.sha256,
             "{}: sha256 must be {}, got {}; the file is corrupt (checksum mismatch)", p, e.sha256,
             d.sha256);
    out.emplace(name, std::move(e));
  }
  return out;
}

// ---- run directories -------------------------------------------------------------------------

void write_latest_pointer(const std::string& run_dir, const std::string& name) {
  SY_CHECK(is_plain_name(name), "{}: latest checkpoint must be a plain directory name, got '{}'",
           run_dir, name);
  std::error_code ec;
  SY_CHECK(fs::is_regular_file(run_dir + "/" + name + "/" + kManifestName, ec),
           "{}: latest must name a committed checkpoint (with {}), got '{}'", run_dir,
           kManifestName, name);
  const std::string dst = run_dir + "/" + kLatestName;
  const std::string tmp = dst + kTmpTag + std::to_string(::getpid());
  write_file_synced(tmp, name + "\n");
  SY_CHECK(::rename(tmp.c_str(), dst.c_str()) == 0, "{}: rename to {} failed: {}", tmp, dst,
           errno_str());
  fsync_path(run_dir, true);
}

std::optional<std::string> read_latest_pointer(const std::string& run_dir) {
  const std::string p = run_dir + "/" + kLatestName;
  std::error_code ec;
  if (!fs::exists(p, ec)) return std::nullopt;
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string name = ss.str();
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' '))
    name.pop_back();
  SY_CHECK(is_plain_name(name), "{}: must hold a checkpoint directory name, got '{}'", p, name);
  SY_CHECK(fs::is_directory(run_dir + "/" + name, ec),
           "{}: must name an existing checkpoint, got '{}', which does not exist in {}", p, name,
           run_dir);
  return name;
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(kTmpTag) != std::string::npos || name.find(kOldTag) != std::string::npos ||
        name.find(kDelTag) != std::string::npos)
      continue;
    std::error_code ec2;
    if (e.is_directory(ec2) && fs::is_regular_file(e.path() / kManifestName, ec2))
      out.push_back(name);
  }
  SY_CHECK(!ec, "{}: cannot list directory: {}", run_dir, ec.message());
  std::sort(out.begin(), out.end(), natural_less);
  return out;
}

namespace {
// The committed checkpoints of ours in run_dir, oldest first.
std::vector<std::string> own_checkpoints(const std::string& run_dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& name : list_checkpoints(run_dir))
    if (is_own_dir(fs::path(run_dir) / name, prefix)) out.push_back(name);
  return out;
}
}  // namespace

std::string recyclable_checkpoint(const std::string& run_dir, int keep_last,
                                  const std::string& except, const std::string& prefix) {
  SY_CHECK(keep_last >= 1, "recyclable_checkpoint: keep_last must be >= 1, got {}", keep_last);
  const std::vector<std::string> cps = own_checkpoints(run_dir, prefix);
  if (cps.size() < static_cast<size_t>(keep_last)) return "";
  const std::optional<std::string> latest = read_latest_pointer(run_dir);
  for (const std::string& name : cps)
    if (name != latest && name != except) return name;
  return "";
}

std::vector<std::string> prune_checkpoints(const std::string& run_dir, int keep_last,
                                           const std::string& prefix) {
  SY_CHECK(keep_last >= 1, "prune_checkpoints: keep_last must be >= 1, got {}", keep_last);
  SY_CHECK(is_plain_name(prefix), "prune_checkpoints: prefix must be a plain name, got '{}'",
           prefix);
  std::vector<std::string> removed;
  std::error_code ec;

  // Renamed to `<name>.del-<pid>` first, which readers ignore: a kill during the removal leaves
  // debris the next prune removes, never a half-removed checkpoint that looks like one.
  auto remove_checkpoint = [&](const std::string& name) {
    const fs::path from = fs::path(run_dir) / name;
    const fs::path to = fs::path(run_dir) / (name + kDelTag + std::to_string(::getpid()));
    std::error_code rec;
    fs::remove_all(to, rec);  // our own debris of an earlier failed removal
    fs::rename(from, to, rec);
    SY_CHECK(!rec, "{}: old checkpoint must be renamable to {} to remove it, got: {}",
             from.string(), to.filename().string(), rec.message());
    fsync_path(run_dir, true);
    fs::remove_all(to, rec);
    SY_CHECK(!rec,
             "{}: old checkpoint must be removable, got: {}; it is no longer needed: delete it "
             "by hand",
             to.string(), rec.message());
    removed.push_back(name);
  };

  // Debris of interrupted writes and removals, if the process that left it is gone.
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) entries.push_back(e.path());
  SY_CHECK(!ec, "{}: cannot list directory: {}", run_dir, ec.message());
  for (const fs::path& p : entries) {
    const std::string name = p.filename().string();
    // At most one tag ends the name with digits: the other gives -1.
    const int64_t pid = std::max(debris_pid(name, kTmpTag), debris_pid(name, kDelTag));
    if (pid > 0 && !process_alive(pid)) {
      fs::remove_all(p, ec);
      removed.push_back(name);
    } else if (int64_t opid = debris_pid(name, kOldTag); opid > 0 && !process_alive(opid)) {
      // The rename-aside fallback crashed between its two renames: restore if nothing replaced it.
      const std::string base = name.substr(0, name.rfind(kOldTag));
      if (fs::exists(p.parent_path() / base, ec)) {
        fs::remove_all(p, ec);
        removed.push_back(name);
      } else {
        fs::rename(p, p.parent_path() / base, ec);
      }
    }
  }

  const std::optional<std::string> latest = read_latest_pointer(run_dir);
  // Orphans: a committed checkpoint always has its manifest (it appears by rename), so one of
  // ours without it is what a removal killed half-way left (before removals went by rename).
  for (const fs::path& p : entries) {
    const std::string name = p.filename().string();
    if (!is_own_dir(p, prefix) || (latest && name == *latest)) continue;
    std::error_code mec;
    if (!fs::exists(p / kManifestName, mec) && !mec) remove_checkpoint(name);
  }

  const std::vector<std::string> cps = own_checkpoints(run_dir, prefix);
  const size_t n_old = cps.size() > static_cast<size_t>(keep_last) ? cps.size() - keep_last : 0;
  for (size_t i = 0; i < n_old; ++i) {
    if (latest && cps[i] == *latest) continue;
    remove_checkpoint(cps[i]);
  }
  return removed;
}

}  // namespace sy::io
