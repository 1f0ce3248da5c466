// trainer_state.json (src/train/trainer_state.h), as load_checkpoint reads it to resume.
// Input: the file's text. A parsed state must survive a write and a re-read unchanged.
#include <string>

#include "core/error.h"
#include "fuzz_util.h"
#include "train/trainer_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sy::TrainerStateFile f;
  try {
    f = sy::parse_trainer_state(text, "trainer_state.json");
  } catch (const sy::Error&) {
    return 0;
  }
  sy::TrainerStateFile g;
  try {
    g = sy::parse_trainer_state(sy::trainer_state_json(f), "rewritten trainer_state.json");
  } catch (const sy::Error& e) {
    SY_FUZZ_ASSERT(false, "a parsed state, written back, does not parse: %s", e.what());
  }
  SY_FUZZ_ASSERT(g.state.step == f.state.step && g.state.data_position == f.state.data_position &&
                     g.state.tokens_seen == f.state.tokens_seen &&
                     g.optimizer_steps == f.optimizer_steps,
                 "state changed in a write and re-read");
  return 0;
}
