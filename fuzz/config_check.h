// What must hold of every config the parsers accept (run_config_fuzz, set_override_fuzz,
// experiment_fuzz): the resolved config.toml written beside each run (to_toml) parses back to
// the same config, and data.blend parses as the loader will parse it.
#pragma once

#include <string>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "data/loader.h"
#include "fuzz_util.h"

namespace sy::fuzz {

inline void check_config(const RunConfig& cfg) {
  const std::string text = to_toml(cfg);
  RunConfig back;
  try {
    back = parse_run_config(text, {}, "written config.toml");
  } catch (const Error& e) {
    SY_FUZZ_ASSERT(false, "to_toml's output does not parse back: %s\n--- written:\n%s", e.what(),
                   text.c_str());
  }
  const std::string again = to_toml(back);
  SY_FUZZ_ASSERT(again == text,
                 "config changed in a write and re-read:\n--- first:\n%s\n--- "
                 "second:\n%s",
                 text.c_str(), again.c_str());

  if (cfg.data.source != "blend") return;
  std::vector<std::string> words;
  std::string cur;
  for (const char ch : cfg.data.blend + " ") {
    if (ch == ' ' || ch == '\t' || ch == '\n') {
      if (!cur.empty()) words.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (words.size() > 64) return;  // a blend schedule costs O(datasets * period)
  try {
    std::vector<double> weights;
    for (const BlendEntry& e : parse_data_path(words)) weights.push_back(e.weight);
    const BlendSchedule schedule(weights);
    uint64_t total = 0;
    for (uint64_t q : schedule.quanta()) total += q;
    SY_FUZZ_ASSERT(total == schedule.period(), "quanta sum to %llu, period %llu",
                   static_cast<unsigned long long>(total),
                   static_cast<unsigned long long>(schedule.period()));
    for (uint64_t u = 0; u < 4 * schedule.period() && u < 4096; ++u) (void)schedule.rank(u);
  } catch (const Error&) {
  }
}

}  // namespace sy::fuzz
