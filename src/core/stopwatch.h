// A wall-clock stopwatch for the phase accounts of a step (where the time goes: attention, the
// router, the experts, ...). Reading it costs tens of nanoseconds; the stages it times take
// milliseconds. Not thread-safe: one per caller.
#pragma once

#include <chrono>

namespace sy {

class Stopwatch {
 public:
  Stopwatch() : t0_(std::chrono::steady_clock::now()) {}
  // Seconds since construction or the last lap(), and restarts.
  double lap() {
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - t0_).count();
    t0_ = now;
    return s;
  }

 private:
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace sy
