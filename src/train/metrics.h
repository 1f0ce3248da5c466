// Routing and training statistics of one optimizer step (ALGORITHMS.md §7), and the JSON Lines
// records the trainer writes. A StepMetrics is sized once and reset every step; add() takes one
// micro-batch's routing from the model. Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "model/transformer.h"

namespace sy {

// Every rank's value of one measurement: this rank's in its slot, summed over the ranks (a
// collective).
template <typename V>
std::vector<V> per_rank(Communicator& comm, V mine) {
  std::vector<V> v(comm.size(), V(0));
  v[comm.rank()] = mine;
  comm.allreduce_sum(v.data(), static_cast<int64_t>(v.size()));
  return v;
}

struct LayerSummary {
  double maxvio = 0;           // max_i c_i / mean c − 1 over the step's summed loads
  double maxvio_micro = 0;     // mean over micro-batches of the micro-batch MaxVio
  int64_t dead = 0;            // experts with load < 10% of the mean
  double drop_rate = 0;        // dropped / assignments
  double entropy = 0;          // mean per-token router entropy (nats)
  double topk_score = 0;       // mean per-token sum of the selected scores
  double lbl = 0, z_loss = 0;  // means over micro-batches (coefficient applied)
};

// Expert parallelism measured over one step, for one MoE layer, one entry per rank (world
// order; ranks [g·ep, (g+1)·ep) form group g). Exchange time includes waiting for the slowest
// rank of the group; wait_ms is that part as measured: a rank's exchange time minus the least of
// its group's (the rank that arrived last waited least).
struct LayerExchange {
  std::vector<int64_t> rows;        // rows each rank's experts ran
  std::vector<int64_t> tokens;      // token rows each rank received for them
  std::vector<int64_t> bytes_sent;  // to the other ranks of its group, forward and backward
  std::vector<double> exchange_ms, experts_ms, wait_ms;
};

class StepMetrics {
 public:
  StepMetrics(int64_t n_moe_layers, int64_t n_experts);
  void reset();
  // Adds the routing of the model's last forward (one micro-batch).
  void add(const Transformer<float>& model);
  const std::vector<int64_t>& load(int64_t layer) const { return load_[layer]; }
  // Tokens with 0, 1, 2, 3, 4, ≥5 experts, summed over the step's micro-batches.
  const std::vector<int64_t>& experts_per_token(int64_t layer) const { return hist_[layer]; }
  LayerSummary summary(int64_t layer) const;
  int64_t micro_batches() const { return micro_; }
  // Sums every accumulator over the ranks (after the step's last add()): the summaries then
  // describe the global batch, and means are over all ranks' micro-batches and tokens.
  void allreduce(Communicator& comm);
  // Expert parallelism's measurements of the step (after allreduce()); empty without it.
  const LayerExchange& exchange(int64_t layer) const { return exchange_[layer]; }
  bool expert_parallel() const { return ep_ > 1; }

 private:
  int64_t layers_, experts_, micro_ = 0;
  std::vector<std::vector<int64_t>> load_, hist_;
  std::vector<double> maxvio_micro_sum_, entropy_sum_, topk_sum_, lbl_sum_, z_sum_;
  std::vector<int64_t> dropped_, assignments_, tokens_;
  int64_t ep_ = 1;                    // the expert-parallel group size (from the model)
  std::vector<ExchangeStats> local_;  // [layer] this rank's, summed over micro-batches
  std::vector<double> experts_s_;     // [layer] this rank's time in its experts, likewise
  std::vector<LayerExchange> exchange_;
};

}  // namespace sy
