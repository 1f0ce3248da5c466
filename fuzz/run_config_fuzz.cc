// TOML run configs (src/config/run_config.h): `switchyard train --config FILE` and every
// checkpoint's config.toml. Input: the TOML text. Accepted configs must round-trip through
// to_toml (config_check.h).
#include <string>

#include "config/run_config.h"
#include "config_check.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sy::RunConfig cfg;
  try {
    cfg = sy::parse_run_config(text, {}, "fuzz.toml");
  } catch (const sy::Error&) {
    return 0;
  }
  sy::fuzz::check_config(cfg);
  return 0;
}
