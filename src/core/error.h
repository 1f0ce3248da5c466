// switchyard's one error type and the checks that raise it.
//
// Messages read "<where>: <what> must be <constraint>, got <value>" plus a hint. Validation
// happens at boundaries (config, files, CLI, public entry points); kernels trust their inputs and
// use SY_DCHECK, which compiles away in release builds. Never throw inside an OpenMP region.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sy {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

}  // namespace sy

// Always-on check: SY_CHECK(cond, "fmt {}", args...) throws sy::Error with the formatted message.
#define SY_CHECK(cond, ...)                              \
  do {                                                   \
    if (!(cond)) ::sy::fail(::fmt::format(__VA_ARGS__)); \
  } while (0)

#ifdef NDEBUG
#define SY_DCHECK(cond) ((void)0)
#else
#include <cassert>
#define SY_DCHECK(cond) assert(cond)
#endif
