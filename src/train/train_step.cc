#include "train/train_step.h"

#include <chrono>
#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "core/error.h"

namespace sy {

namespace {

using Clock = std::chrono::steady_clock;

// Adds the seconds since `t` to `acc` and restarts `t`.
void lap(Clock::time_point& t, double& acc) {
  const Clock::time_point now = Clock::now();
  acc += std::chrono::duration<double>(now - t).count();
  t = now;
}

// Gradients summed over the ranks that hold each parameter: a replicated one over every rank, a
// routed expert's (expert parallelism) over the ranks holding the same experts — its rows already
// came from every rank of its group.
void reduce_gradients(Transformer<float>& model, Communicator& all, Communicator* expert_replicas) {
  float* g = model.grads();
  if (expert_replicas == nullptr) {
    all.allreduce_sum(g, model.num_params());
    return;
  }
  for (const ParamRange& r : model.replicated_ranges()) all.allreduce_sum(g + r.offset, r.numel);
  for (const ParamRange& r : model.expert_ranges())
    expert_replicas->allreduce_sum(g + r.offset, r.numel);
}

// The norm of the whole model's gradient, each expert counted once: under expert parallelism
// the replicated part (the same on every rank) plus the experts' sum over the group. Where the
// backward already summed the experts' squares (one micro-batch, nothing reduced), only the rest
// is read here.
double model_grad_norm(const Transformer<float>& model, Communicator* ep_group) {
  const float* g = model.grads();
  double replicated = 0, experts = 0;
  if (ep_group == nullptr) {
    const std::optional<double> summed = model.expert_grad_sum_of_squares();
    if (!summed) return global_grad_norm(g, model.num_params());
    for (const ParamRange& r : model.replicated_ranges())
      replicated += sum_of_squares(g + r.offset, r.numel);
    return std::sqrt(replicated + *summed);
  }
  for (const ParamRange& r : model.replicated_ranges())
    replicated += sum_of_squares(g + r.offset, r.numel);
  for (const ParamRange& r : model.expert_ranges())
    experts += sum_of_squares(g + r.offset, r.numel);
  ep_group->allreduce_sum(&experts, 1);
  return std::sqrt(replicated + experts);
}

}  // namespace

StepResult train_step(const StepContext& c, int64_t step, const std::string& on_divergence) {
  Transformer<float>& model = *c.model;
  Communicator& comm = *c.comm;
  const TrainConfig& tc = *c.train;
  const int64_t R = comm.size(), rank = comm.rank();
  const int64_t B = tc.micro_batch, S = model.config().seq_len, M = tc.grad_accum;
  StepResult res;
  StepTimes& times = res.times;
  Clock::time_point t = Clock::now();
  res.lr = lr_at(tc, step);
  model.zero_grad();
  // The backward's per-expert sums of squares serve the norm only when nothing is added to the
  // gradients after one backward: one micro-batch, one rank (model_grad_norm).
  model.set_expert_grad_sums(M == 1 && R == 1);
  c.metrics->reset();
  Balancer<float>& balancer = model.balancer();
  balancer.begin_step(step);
  const uint64_t step_start = c.source->position();
  auto read_micro_batch = [&](int64_t mb) {
    c.source->set_position(step_start + static_cast<uint64_t>((mb * R + rank) * B));
    c.source->next(c.tokens->data(), c.domains->data(), B);
  };
  lap(t, times.update);

  // Pre-pass: the router statistics of the whole step before any backward.
  if (balancer.needs_prepass()) {
    for (int64_t mb = 0; mb < M; ++mb) {
      read_micro_batch(mb);
      lap(t, times.read);
      model.forward(c.tokens->data(), B, ForwardMode::kPrepass, mb);
      lap(t, times.prepass);
    }
    balancer.finish_prepass();
    lap(t, times.prepass);
  }

  // Forward and backward, means over the global batch: R ranks × M micro-batches × B·S tokens.
  const float ce_scale = 1.0f / static_cast<float>(B * S * M * R);
  const float aux_scale = 1.0f / static_cast<float>(M * R);
  double ce = 0, lbl = 0, z = 0;
  int64_t ntok = 0;
  for (int64_t mb = 0; mb < M; ++mb) {
    read_micro_batch(mb);
    lap(t, times.read);
    const ForwardStats st = model.forward(c.tokens->data(), B, ForwardMode::kTrain, mb);
    lap(t, times.forward);
    model.backward(ce_scale, aux_scale);
    c.metrics->add(model);
    lap(t, times.backward);
    ce += st.ce_sum;
    ntok += st.n_tokens;
    lbl += st.lbl;
    z += st.z_loss;
  }
  c.source->set_position(step_start + static_cast<uint64_t>(R * M * B));

  // Reduce over the ranks.
  if (R > 1) {
    reduce_gradients(model, comm, c.expert_replicas);
    double sums[4] = {ce, lbl, z, static_cast<double>(ntok)};
    comm.allreduce_sum(sums, 4);
    ce = sums[0];
    lbl = sums[1];
    z = sums[2];
    ntok = static_cast<int64_t>(sums[3]);
  }
  lap(t, times.reduce);

  // Check: divergence stops training before the update, so it never makes the weights
  // non-finite; the values are the same on every rank (all-reduced), so every rank stops here.
  res.grad_norm = model_grad_norm(model, c.ep_group);
  res.ce = ce / static_cast<double>(ntok);
  res.lbl = lbl / static_cast<double>(M * R);
  res.z_loss = z / static_cast<double>(M * R);
  res.loss = res.ce + (lbl + z) / static_cast<double>(M * R);
  res.tokens = B * S * M * R;
  SY_CHECK(std::isfinite(res.loss) && std::isfinite(res.grad_norm),
           "step {}: the training loss ({}) and gradient norm ({}) must be finite: training "
           "diverged; the weights were not updated by this step; {}",
           step + 1, res.loss, res.grad_norm, on_divergence);

  // Update: clipping, AdamW, the routers' and balancer's end-of-step update, the step's routing
  // statistics over every rank.
  res.clip_scale =
      tc.grad_clip > 0 && res.grad_norm > tc.grad_clip ? tc.grad_clip / res.grad_norm : 1.0;
  float* weights = model.params();
  uint16_t* weights_bf16 = model.bf16_copy_for_update();  // null under fp32
  // The update zeroes each gradient as it reads it: the next step's zero_grad() has no pass.
  c.opt->step(weights, model.grads_for_zeroing_update(), res.lr, res.clip_scale, tc, weights_bf16,
              /*zero_grads=*/true);
  std::vector<std::vector<int64_t>> loads(model.n_moe_layers());
  for (int64_t l = 0; l < model.n_moe_layers(); ++l) loads[l] = c.metrics->load(l);
  model.end_step(std::move(loads));
  lap(t, times.update);
  c.metrics->allreduce(comm);
  lap(t, times.reduce);
  return res;
}

}  // namespace sy
