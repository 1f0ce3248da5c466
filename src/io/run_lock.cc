#include "io/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"

namespace sy::io {
namespace {

namespace fs = std::filesystem;

std::string read_all(int fd) {
  std::string text;
  char buf[512];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    at += n;
    if (text.size() > 4096) break;  // a holder line is short; never read a huge file
  }
  return text;
}

std::string field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + " ", 0) == 0) return line.substr(key.size() + 1);
  return "";
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

uint64_t fresh_token() {
  std::random_device rd;
  const uint64_t t = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                     static_cast<uint64_t>(
                         std::chrono::steady_clock::now().time_since_epoch().count()) ^
                     static_cast<uint64_t>(::getpid());
  return t == 0 ? 1 : t;
}

}  // namespace

RunDirLock::RunDirLock(const std::string& dir, const std::string& what) : path_(dir + "/" + kRunLockName) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SY_CHECK(!ec, "{}: the run directory must be creatable, got: {}", dir, ec.message());
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  SY_CHECK(fd_ >= 0, "{}: the run directory must be writable, got: cannot create {}: {}", dir,
           kRunLockName, std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = read_all(fd_);
    ::close(fd_);
    fd_ = -1;
    SY_CHECK(err != EWOULDBLOCK,
             "{}: is in use by another switchyard process ({} by pid {} on {}, started {}); one "
             "process may write a run directory at a time: wait for it to finish or stop it "
             "(it saves a checkpoint), or use another out_dir",
             dir, field(holder, "activity").empty() ? "unknown" : field(holder, "activity"),
             field(holder, "pid"), field(holder, "host"), field(holder, "started"));
    fail(fmt::format("{}: cannot lock {}: {}", dir, kRunLockName, std::strerror(err)));
  }
  token_ = fresh_token();
  char host[256] = "?";
  ::gethostname(host, sizeof host - 1);
  const std::string text = fmt::format("pid {}\nhost {}\nstarted {}\nactivity {}\ntoken {}\n",
                                       ::getpid(), host, now_utc(), what, token_);
  try {
    SY_CHECK(::ftruncate(fd_, 0) == 0, "{}: cannot write: {}", path_, std::strerror(errno));
    SY_CHECK(::lseek(fd_, 0, SEEK_SET) == 0, "{}: cannot seek: {}", path_, std::strerror(errno));
    write_all(fd_, text.data(), text.size(), path_);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays (its holder lines are stale)
}

uint64_t read_run_lock_token(const std::string& dir) {
  const int fd = ::open((dir + "/" + kRunLockName).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const std::string text = read_all(fd);
  ::close(fd);
  try {
    return std::stoull(field(text, "token"));
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace sy::io
