// A training checkpoint: everything needed to resume bit-exactly, in the ecosystem's formats.
//
// One directory (written atomically by io::CheckpointWriter, verified by its manifest):
//   model.safetensors      weights, Hugging Face Qwen3-MoE names, F32
//   config.json            Hugging Face-style model config + "switchyard" section (our run config)
//   optimizer.safetensors  AdamW moments: "<param name>.exp_avg", "<param name>.exp_avg_sq"
//   trainer_state.json     step, data position, optimizer step count, tokens seen
//   config.toml            the resolved run config (switchyard train --config can re-run it)
//   manifest.json          SHA-256 of every file
// Functions here are called by one thread; they read or write the model's parameter block.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "io/checkpoint_dir.h"
#include "model/transformer.h"
#include "train/optimizer.h"
#include "train/trainer_state.h"

namespace sy {

// Under expert parallelism, the experts the rest of an expert-parallel group holds (weights and
// AdamW moments), gathered to the group's rank 0 so that a checkpoint holds every expert
// whatever the layout. Empty elsewhere and without expert parallelism.
struct OtherExperts {
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    int64_t offset = 0;  // into the arrays below
  };
  std::vector<Tensor> tensors;
  std::vector<float> params, exp_avg, exp_avg_sq;
};
// A collective of the model's expert-parallel group (every rank of it calls it); opt may be null.
OtherExperts gather_experts(const Transformer<float>& model, const AdamW* opt, Exchange& ep_group);

// Writes every file of a checkpoint into w's temporary directory: the state as it is now, which
// may change once this returns; w.commit() (or an io::BackgroundCommitter) makes it visible.
// opt may be null (weights-only export). `others`: the rest of the experts under expert
// parallelism (gather_experts).
void write_checkpoint_files(io::CheckpointWriter& w, const RunConfig& cfg,
                            const Transformer<float>& model, const AdamW* opt,
                            const TrainerState& st, const OtherExperts* others = nullptr);

// Writes dir atomically (replacing an existing one): write_checkpoint_files, then commit.
void save_checkpoint(const std::string& dir, const RunConfig& cfg, const Transformer<float>& model,
                     const AdamW* opt, const TrainerState& st,
                     const OtherExperts* others = nullptr);

// The run config stored in a checkpoint (after verifying the manifest).
RunConfig read_checkpoint_config(const std::string& dir);

// Loads weights (and, when non-null, optimizer moments and trainer state) into objects built
// from a compatible config. Errors name the file and tensor that is missing or mismatched.
// Checkpoints hold every expert: under expert parallelism each rank reads its own.
void load_checkpoint(const std::string& dir, Transformer<float>& model, AdamW* opt,
                     TrainerState* st);

// config.json for a checkpoint: Hugging Face Qwen3-MoE keys plus a "switchyard" object.
std::string hf_config_json(const RunConfig& cfg);

}  // namespace sy
