// Shared by the libFuzzer targets in this directory (docs/testing.md, "Fuzzing").
//
// The contract every target checks: a parser given any bytes either succeeds or throws
// sy::Error. A crash, a sanitizer report, a hang, running out of memory, or any other exception
// escaping (std::out_of_range, nlohmann::json::type_error, std::bad_alloc from a size read from
// the input, ...) is a bug. Targets catch sy::Error only, so anything else reaches libFuzzer as
// an uncaught exception (abort) and is reported with the input that caused it.
//
// Parsers whose real entry point takes a path are fed through a file in a scratch directory
// (on /dev/shm when it exists: a tmpfs, so a write per input costs microseconds). One process
// runs one input at a time, so one fixed file name per target is enough.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sy::fuzz {

// A scratch directory private to this process, removed at exit. The string is never destroyed:
// the atexit handler, registered before any destructor of a static, runs after them.
inline const std::string& scratch_dir() {
  static const std::string& dir = *new std::string([] {
    namespace fs = std::filesystem;
    const char* tmp = std::getenv("TMPDIR");
    fs::path base = tmp && *tmp ? fs::path(tmp) : fs::path("/dev/shm");
    std::error_code ec;
    if (!fs::is_directory(base, ec) || ::access(base.c_str(), W_OK) != 0) base = "/tmp";
    const fs::path d = base / ("sy-fuzz-" + std::to_string(::getpid()));
    fs::remove_all(d, ec);
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec2;
      fs::remove_all(scratch_dir(), ec2);
    });
    return d.string();
  }());
  return dir;
}

// Replaces `path` with `size` bytes of `data`; aborts if it cannot (a harness fault, not a
// finding in the code under test).
inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

inline void write_file(const std::string& path, const std::string& text) {
  write_file(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "fuzz: cannot read %s\n", path.c_str());
    std::abort();
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A property of a successful parse that must hold; a violation is a finding like a crash.
#define SY_FUZZ_ASSERT(cond, ...)                                   \
  do {                                                              \
    if (!(cond)) {                                                  \
      std::fprintf(stderr, "fuzz: property violated: %s\n", #cond); \
      std::fprintf(stderr, __VA_ARGS__);                            \
      std::fprintf(stderr, "\n");                                   \
      std::abort();                                                 \
    }                                                               \
  } while (0)

}  // namespace sy::fuzz
