// Evaluation: the validation loss, balance and per-domain expert statistics of a model — the
// trainer's {"type": "eval"} records and `switchyard eval` on a checkpoint (docs/training.md,
// "Evaluation records").
//
// An evaluation is forward-only and changes no training state (no balancer buffer, bias, BIP
// price, EC threshold or Sinkhorn potential moves). With several ranks each takes the batches
// b with b mod R = r and the sums are all-reduced, so every rank returns the same record. Uses
// the model's buffers and the OpenMP pool: one evaluation at a time per model.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "config/run_config.h"
#include "core/buffer.h"
#include "data/batch_source.h"
#include "dist/communicator.h"
#include "model/transformer.h"

namespace sy {

struct EvalResult {
  double loss = 0;  // mean cross-entropy (nats per token)
  double perplexity = 0;
  int64_t tokens = 0;
  int64_t sequences = 0;
  std::vector<std::vector<int64_t>> load;  // [MoE layer][E] loads over the whole set
  std::vector<double> maxvio_global;       // per MoE layer
  // Expert Choice only: the same with causal routing (thresholds), else -1 / empty.
  double loss_causal = -1;
  std::vector<double> maxvio_global_causal;
  // Everything as one JSON object (the fields of an evaluation record, docs/training.md),
  // including per-domain loss, F, specialisation and top-10% share.
  std::string record_json;
};

// How evaluation composes its micro-batches from per-domain validation sets (data.valid of a
// blend). It matters to routers that route a micro-batch as a whole (Expert Choice, Sinkhorn, the
// optimal assignment); token-choice routing gives the same losses either way.
enum class EvalBatches {
  kAsTrained,  // mixed when training's micro-batches are (data.composition), else per domain
  kMixed,      // the sets' sequences dealt out in turn: each micro-batch mixes the domains
  kPerDomain,  // set by set: each micro-batch holds one domain
};
// "auto" | "mixed" | "per-domain" (the eval record's and `switchyard eval --batches`' names).
EvalBatches parse_eval_batches(std::string_view name);

// `switchyard eval`: a checkpoint on a raw int32 token file read as consecutive sequences of
// S+1 tokens, or (tokens_path empty) on the validation data of the checkpoint's own config, per
// domain, its micro-batches composed as `batches` says. max_sequences = 0: all of them (per
// validation set).
EvalResult evaluate_checkpoint(const std::string& checkpoint_dir, const std::string& tokens_path,
                               int64_t max_sequences, int64_t threads,
                               EvalBatches batches = EvalBatches::kAsTrained);

// Whether an evaluation of this run mixes the domains in its micro-batches: `batches`, or with
// kAsTrained when training's do (a blend with data.composition = "mixed").
bool eval_mixes_domains(const RunConfig& cfg, EvalBatches batches = EvalBatches::kAsTrained);

// One evaluation over every validation set (sets: from make_valid_sources; domain_list: their
// domains by id): the first batches_per_set micro-batches of each set (0: all of it), read set
// by set, or with mix_domains as one stream dealing the sets' sequences out in turn (the same
// sequences); overall and per domain, and for Expert Choice and Sinkhorn again with the causal
// routing. Returns the record's fields (docs/training.md). tokens, domains: scratch of the
// model's micro-batch ([B, S+1] and [B]).
nlohmann::json evaluation_record(Transformer<float>& model, std::vector<ValidSet>& sets,
                                 const std::vector<std::string>& domain_list,
                                 int64_t batches_per_set, bool mix_domains, Buffer<int32_t>& tokens,
                                 Buffer<int32_t>& domains, Communicator& comm);

}  // namespace sy
