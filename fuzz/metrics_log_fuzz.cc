// metrics.jsonl on resume (truncate_metrics, src/train/metrics_log.h): the records after the
// checkpoint's step are dropped, a torn last line is forgiven. Input: the log. A truncated log
// must be a fixed point: truncating it again changes nothing.
#include <string>

#include "core/error.h"
#include "fuzz_util.h"
#include "train/metrics_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = sy::fuzz::scratch_dir() + "/metrics.jsonl";
  sy::fuzz::write_file(path, data, size);
  constexpr int64_t kStep = 5;
  try {
    sy::truncate_metrics(path, kStep);
  } catch (const sy::Error&) {
    return 0;
  }
  const std::string once = sy::fuzz::read_file(path);
  try {
    sy::truncate_metrics(path, kStep);
  } catch (const sy::Error& e) {
    SY_FUZZ_ASSERT(false, "a truncated log does not truncate again: %s", e.what());
  }
  SY_FUZZ_ASSERT(sy::fuzz::read_file(path) == once, "truncating twice changed the log");
  return 0;
}
