// trainer_state.json: where a run stands, the part of a checkpoint that is neither weights nor
// config. Written by save_checkpoint, read back by load_checkpoint to resume:
//   {"step": s, "data_position": p, "tokens_seen": t, "optimizer_steps": o}
// Plain values; the functions are pure and may be called from several threads.
#pragma once

#include <cstdint>
#include <string>

namespace sy {

struct TrainerState {
  int64_t step = 0;            // optimizer steps completed
  uint64_t data_position = 0;  // sequences the training source has yielded
  int64_t tokens_seen = 0;
};

// The file's contents: the trainer's state and the optimizer's step count (AdamW's bias
// correction), which differs from step for a weights-only export (0).
struct TrainerStateFile {
  TrainerState state;
  int64_t optimizer_steps = 0;
};

// The JSON text of trainer_state.json (indented, ending in a newline).
std::string trainer_state_json(const TrainerStateFile& f);

// Parses trainer_state.json. Throws sy::Error naming `where` (the file) and the key that is
// missing or malformed.
TrainerStateFile parse_trainer_state(const std::string& text, const std::string& where);

}  // namespace sy
