#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace sy::io {

void write_all(int fd, const void* data, size_t bytes, const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    SY_CHECK(n > 0, "{}: write failed: {}", what,
             n == 0 ? std::string("no progress") : std::string(std::strerror(errno)));
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void write_file_atomic(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SY_CHECK(fd >= 0, "{}: cannot create: {}", tmp, std::strerror(errno));
  try {
    write_all(fd, text.data(), text.size(), tmp);
    SY_CHECK(::fsync(fd) == 0, "{}: fsync failed: {}", tmp, std::strerror(errno));
    SY_CHECK(::close(fd) == 0, "{}: close failed: {}", tmp, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    fail(fmt::format("{}: rename to {} failed: {}", tmp, path, reason));
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: the rename is visible either way
    ::close(dfd);
  }
}

}  // namespace sy::io
