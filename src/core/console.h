// Progress output on stderr that can never cost a run.
//
// A closed or broken stderr (a pipe into `head`, a `tee` that died, mpirun no longer reading)
// must not end training, so say() formats first, writes with one fwrite, and ignores failure
// (SIGPIPE is ignored by StopSignals, so a broken pipe is a failed write, not a death).
// Thread-safe as fwrite is; callers print from one thread.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <utility>

namespace sy {

template <typename... Args>
void say(fmt::format_string<Args...> format, Args&&... args) {
  const std::string text = fmt::format(format, std::forward<Args>(args)...);
  if (std::fwrite(text.data(), 1, text.size(), stderr) == text.size()) std::fflush(stderr);
  std::clearerr(stderr);  // a later write may succeed (e.g. a full pipe drained)
}

}  // namespace sy
