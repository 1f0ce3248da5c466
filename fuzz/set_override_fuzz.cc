// --set overrides (src/config/run_config.h): `switchyard train --config configs/tiny.toml
// --set k=v ...` and the `set` arrays of experiment files. Input: the overrides, one per line,
// applied in order to configs/tiny.toml. Accepted configs must round-trip through to_toml
// (config_check.h).
#include <string>
#include <vector>

#include "config/run_config.h"
#include "config_check.h"
#include "core/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string base = sy::fuzz::read_file(SY_SOURCE_DIR "/configs/tiny.toml");
  std::vector<std::string> overrides;
  std::string line;
  for (size_t i = 0; i <= size; ++i) {
    if (i == size || data[i] == '\n') {
      overrides.push_back(line);
      line.clear();
    } else {
      line += static_cast<char>(data[i]);
    }
  }
  sy::RunConfig cfg;
  try {
    cfg = sy::parse_run_config(base, overrides, "configs/tiny.toml");
  } catch (const sy::Error&) {
    return 0;
  }
  sy::fuzz::check_config(cfg);
  return 0;
}
