#include "train/metrics.h"

#include <algorithm>

namespace sy {

StepMetrics::StepMetrics(int64_t n_moe_layers, int64_t n_experts)
    : layers_(n_moe_layers), experts_(n_experts) {
  load_.assign(layers_, std::vector<int64_t>(experts_, 0));
  hist_.assign(layers_, std::vector<int64_t>(6, 0));
  maxvio_micro_sum_.assign(layers_, 0);
  entropy_sum_.assign(layers_, 0);
  topk_sum_.assign(layers_, 0);
  lbl_sum_.assign(layers_, 0);
  z_sum_.assign(layers_, 0);
  dropped_.assign(layers_, 0);
  assignments_.assign(layers_, 0);
  tokens_.assign(layers_, 0);
  local_.assign(layers_, ExchangeStats{});
  experts_s_.assign(layers_, 0.0);
  exchange_.assign(layers_, LayerExchange{});
}

void StepMetrics::reset() {
  micro_ = 0;
  for (auto& l : load_) std::fill(l.begin(), l.end(), 0);
  for (auto& h : hist_) std::fill(h.begin(), h.end(), 0);
  for (auto* v : {&maxvio_micro_sum_, &entropy_sum_, &topk_sum_, &lbl_sum_, &z_sum_})
    std::fill(v->begin(), v->end(), 0.0);
  for (auto* v : {&dropped_, &assignments_, &tokens_}) std::fill(v->begin(), v->end(), 0);
  std::fill(local_.begin(), local_.end(), ExchangeStats{});
  std::fill(experts_s_.begin(), experts_s_.end(), 0.0);
  std::fill(exchange_.begin(), exchange_.end(), LayerExchange{});
}

void StepMetrics::add(const Transformer<float>& model) {
  ++micro_;
  ep_ = model.moe_dims().ep;
  for (int64_t l = 0; l < layers_; ++l) {
    const RoutingPlan<float>& r = model.layer_plan(l);
    const RoutingStats& st = model.layer_stats(l);
    for (int64_t i = 0; i < experts_; ++i) load_[l][i] += r.load[i];
    maxvio_micro_sum_[l] += maxvio(r.load.data(), experts_);
    entropy_sum_[l] += st.entropy_sum;
    topk_sum_[l] += st.topk_score_sum;
    lbl_sum_[l] += st.lbl;
    z_sum_[l] += st.z_loss;
    dropped_[l] += r.dropped;
    assignments_[l] += r.rows + r.dropped;
    for (int b = 0; b < 6; ++b) hist_[l][b] += st.experts_per_token[b];
    tokens_[l] += r.n;
    const ExchangeStats& x = model.layer_acts(l).exchange;
    local_[l].rows += x.rows;
    local_[l].tokens += x.tokens;
    local_[l].bytes_sent += x.bytes_sent;
    local_[l].exchange_s += x.exchange_s;
    const MoeActivations<float>& acts = model.layer_acts(l);
    experts_s_[l] += acts.forward_times.experts_s + acts.backward_times.experts_s;
  }
}

void StepMetrics::allreduce(Communicator& comm) {
  if (comm.size() == 1) return;
  if (ep_ > 1) {
    for (int64_t l = 0; l < layers_; ++l) {
      LayerExchange& e = exchange_[l];
      e.rows = per_rank(comm, local_[l].rows);
      e.tokens = per_rank(comm, local_[l].tokens);
      e.bytes_sent = per_rank(comm, local_[l].bytes_sent);
      e.exchange_ms = per_rank(comm, local_[l].exchange_s * 1e3);
      e.experts_ms = per_rank(comm, experts_s_[l] * 1e3);
      e.wait_ms.assign(comm.size(), 0.0);
      for (int64_t g = 0; g < comm.size(); g += ep_) {
        const double least =
            *std::min_element(e.exchange_ms.begin() + g, e.exchange_ms.begin() + g + ep_);
        for (int64_t r = g; r < g + ep_; ++r) e.wait_ms[r] = e.exchange_ms[r] - least;
      }
    }
  }
  std::vector<int64_t> ints = {micro_};
  std::vector<double> reals;
  for (int64_t l = 0; l < layers_; ++l) {
    ints.insert(ints.end(), load_[l].begin(), load_[l].end());
    ints.insert(ints.end(), hist_[l].begin(), hist_[l].end());
    ints.insert(ints.end(), {dropped_[l], assignments_[l], tokens_[l]});
    reals.insert(reals.end(),
                 {maxvio_micro_sum_[l], entropy_sum_[l], topk_sum_[l], lbl_sum_[l], z_sum_[l]});
  }
  comm.allreduce_sum(ints.data(), static_cast<int64_t>(ints.size()));
  comm.allreduce_sum(reals.data(), static_cast<int64_t>(reals.size()));
  size_t i = 0, r = 0;
  micro_ = ints[i++];
  for (int64_t l = 0; l < layers_; ++l) {
    for (auto& x : load_[l]) x = ints[i++];
    for (auto& x : hist_[l]) x = ints[i++];
    dropped_[l] = ints[i++];
    assignments_[l] = ints[i++];
    tokens_[l] = ints[i++];
    for (double* x :
         {&maxvio_micro_sum_[l], &entropy_sum_[l], &topk_sum_[l], &lbl_sum_[l], &z_sum_[l]})
      *x = reals[r++];
  }
}

LayerSummary StepMetrics::summary(int64_t l) const {
  LayerSummary s;
  const int64_t* ld = load_[l].data();
  s.maxvio = maxvio(ld, experts_);
  const double m = micro_ > 0 ? static_cast<double>(micro_) : 1.0;
  s.maxvio_micro = maxvio_micro_sum_[l] / m;
  int64_t total = 0;
  for (int64_t i = 0; i < experts_; ++i) total += ld[i];
  const double mean = static_cast<double>(total) / experts_;
  for (int64_t i = 0; i < experts_; ++i) s.dead += static_cast<double>(ld[i]) < 0.1 * mean;
  s.drop_rate = assignments_[l] ? static_cast<double>(dropped_[l]) / assignments_[l] : 0.0;
  const double nt = tokens_[l] ? static_cast<double>(tokens_[l]) : 1.0;
  s.entropy = entropy_sum_[l] / nt;
  s.topk_score = topk_sum_[l] / nt;
  s.lbl = lbl_sum_[l] / m;
  s.z_loss = z_sum_[l] / m;
  return s;
}

}  // namespace sy
