#include "switchyard/balancer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace sy {

LblScope parse_lbl_scope(const std::string& s) {
  if (s == "sequence") return LblScope::kSequence;
  if (s == "micro") return LblScope::kMicro;
  if (s == "global") return LblScope::kGlobal;
  if (s == "global-exact") return LblScope::kGlobalExact;
  if (s == "shuffle") return LblScope::kShuffle;
  fail(fmt::format(
      "balance scope must be one of \"sequence\", \"micro\", \"global\", \"global-exact\", "
      "\"shuffle\", got \"{}\"",
      s));
}

const char* lbl_scope_name(LblScope s) {
  switch (s) {
    case LblScope::kSequence:
      return "sequence";
    case LblScope::kMicro:
      return "micro";
    case LblScope::kGlobal:
      return "global";
    case LblScope::kGlobalExact:
      return "global-exact";
    case LblScope::kShuffle:
      return "shuffle";
  }
  return "?";
}

BiasUpdate parse_bias_update(const std::string& s) {
  if (s == "off") return BiasUpdate::kOff;
  if (s == "sign") return BiasUpdate::kSign;
  if (s == "proportional") return BiasUpdate::kProportional;
  fail(fmt::format(
      "loss-free bias update must be one of \"off\", \"sign\", \"proportional\", got \"{}\"", s));
}

template <typename T>
Balancer<T>::Balancer(const BalancerOptions& o, Reducer* comm)
    : o_(o), comm_(comm ? comm : &single_) {
  const int64_t L = o.n_layers, E = o.n_experts;
  const int64_t N = o.micro_batch * o.seq_len;
  if (o.bias_update != BiasUpdate::kOff) bias_.assign(L * E, T(0));
  buffer_.assign(o.lbl.size(), std::vector<int64_t>(L * E, 0));
  buffer_tokens_.assign(o.lbl.size(), std::vector<int64_t>(L, 0));
  micro_counts_.assign(o.grad_accum * L * E, 0);
  micro_tokens_.assign(o.grad_accum * L, 0);
  bool shuffle = false;
  for (const auto& t : o.lbl) shuffle |= t.scope == LblScope::kShuffle;
  if (shuffle) {
    const int64_t R = comm_->size();
    selections_.assign(L * o.grad_accum * N * o.top_k, -1);
    sample_idx_.resize(R * o.grad_accum * N);
    shuffle_counts_.assign(R * o.grad_accum * L * E, 0);
  }
  f_.assign(std::max<int64_t>(o.micro_batch, 1) * E, 0.0);
  counts_.assign(E, 0);
}

template <typename T>
bool Balancer<T>::needs_prepass() const {
  return std::any_of(o_.lbl.begin(), o_.lbl.end(), [&](const LblTerm& t) {
    return t.active(step_) && (t.scope == LblScope::kGlobalExact || t.scope == LblScope::kShuffle);
  });
}

template <typename T>
void Balancer<T>::begin_step(int64_t step) {
  step_ = step;
  for (auto& b : buffer_) std::fill(b.begin(), b.end(), 0);
  for (auto& b : buffer_tokens_) std::fill(b.begin(), b.end(), 0);
  std::fill(micro_counts_.begin(), micro_counts_.end(), 0);
  std::fill(micro_tokens_.begin(), micro_tokens_.end(), 0);
}

template <typename T>
int64_t Balancer<T>::group_size(const LblTerm& t) const {
  return t.group > 0 ? t.group : o_.grad_accum;
}

template <typename T>
void Balancer<T>::record_prepass(int64_t layer, int64_t micro, const RoutingBuffers<T>& buf) {
  const int64_t E = o_.n_experts, K = o_.top_k, L = o_.n_layers;
  int64_t* c = micro_counts_.data() + (micro * L + layer) * E;
  for (int64_t i = 0; i < E; ++i) c[i] += buf.load[i];
  micro_tokens_[micro * L + layer] += buf.n;
  if (!selections_.empty()) {
    const int64_t N = o_.micro_batch * o_.seq_len;
    int32_t* sel = selections_.data() + (layer * o_.grad_accum + micro) * N * K;
    for (int64_t s = 0; s < buf.n * K; ++s) sel[s] = buf.kept[s] ? buf.expert[s] : -1;
  }
}

template <typename T>
void Balancer<T>::finish_prepass() {
  comm_->allreduce_sum(micro_counts_.data(), static_cast<int64_t>(micro_counts_.size()));
  comm_->allreduce_sum(micro_tokens_.data(), static_cast<int64_t>(micro_tokens_.size()));
  if (!selections_.empty()) sample_shuffle();
}

// The shuffle scope's samples, for every (rank, micro-batch, layer) of the step: N tokens drawn
// without replacement from the global batch's R·M·N tokens (global index (rank·M + m)·N + t), by
// a stream that depends only on (seed, step, rank, micro-batch, layer): resumable and the same
// on every rank. Each rank counts the sampled tokens it holds; one sum over ranks completes them.
template <typename T>
void Balancer<T>::sample_shuffle() {
  const int64_t L = o_.n_layers, E = o_.n_experts, K = o_.top_k, M = o_.grad_accum;
  const int64_t N = o_.micro_batch * o_.seq_len, R = comm_->size(), me = comm_->rank();
  const int64_t global_tokens = R * M * N;
  std::fill(shuffle_counts_.begin(), shuffle_counts_.end(), 0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t l = 0; l < L; ++l) {
        std::iota(sample_idx_.begin(), sample_idx_.begin() + global_tokens, 0);
        Rng rng(mix64(o_.seed ^ mix64(static_cast<uint64_t>(step_) * 1000003ull + m * 1009ull + l) ^
                      (static_cast<uint64_t>(r) << 48)));
        int64_t* c = shuffle_counts_.data() + ((r * M + m) * L + l) * E;
        const int32_t* sel = selections_.data() + l * M * N * K;
        for (int64_t s = 0; s < N; ++s) {
          const int64_t pick = s + static_cast<int64_t>(rng.below(global_tokens - s));
          std::swap(sample_idx_[s], sample_idx_[pick]);
          const int64_t g = sample_idx_[s];
          if (g / (M * N) != me) continue;  // another rank holds this token
          const int64_t t = g % (M * N);
          for (int64_t k = 0; k < K; ++k)
            if (sel[t * K + k] >= 0) ++c[sel[t * K + k]];
        }
      }
  comm_->allreduce_sum(shuffle_counts_.data(), static_cast<int64_t>(shuffle_counts_.size()));
}

template <typename T>
double Balancer<T>::apply_lbl(int64_t layer, int64_t micro, RoutingBuffers<T>& buf) {
  if (o_.lbl.empty() || buf.n == 0) return 0.0;
  const int64_t E = o_.n_experts, K = o_.top_k, n = buf.n, S = o_.seq_len;
  bool per_sequence = false;
  for (const auto& t : o_.lbl) per_sequence |= t.scope == LblScope::kSequence;
  lbl_begin(buf, per_sequence ? S : n);
  double total = 0;
  for (size_t j = 0; j < o_.lbl.size(); ++j) {
    const LblTerm& term = o_.lbl[j];
    if (!term.active(step_)) continue;
    int64_t rows = 1;
    double* f = f_.data();
    switch (term.scope) {
      case LblScope::kMicro:
        micro_fractions(buf, f);
        break;
      case LblScope::kSequence: {
        rows = n / S;
        std::fill(f, f + rows * E, 0.0);
        for (int64_t s = 0; s < n * K; ++s)
          if (buf.kept[s]) f[(s / K / S) * E + buf.expert[s]] += 1.0 / static_cast<double>(K * S);
        break;
      }
      case LblScope::kGlobal: {
        // This micro-batch's counts, summed over ranks, join the buffer of its group's earlier
        // micro-batches (the step's, with no group), emptied at the group's first.
        std::copy(buf.load.begin(), buf.load.begin() + E, counts_.begin());
        int64_t tokens = n;
        comm_->allreduce_sum(counts_.data(), E);
        comm_->allreduce_sum(&tokens, 1);
        int64_t* b = buffer_[j].data() + layer * E;
        if (micro % group_size(term) == 0) {
          std::fill(b, b + E, int64_t(0));
          buffer_tokens_[j][layer] = 0;
        }
        for (int64_t i = 0; i < E; ++i) b[i] += counts_[i];
        buffer_tokens_[j][layer] += tokens;
        const double denom = static_cast<double>(K * buffer_tokens_[j][layer]);
        for (int64_t i = 0; i < E; ++i) f[i] = static_cast<double>(b[i]) / denom;
        break;
      }
      case LblScope::kGlobalExact: {
        // The exact counts of the micro-batch's group (the whole step with no group), all ranks.
        const int64_t L = o_.n_layers, G = group_size(term), first = micro / G * G;
        std::fill(counts_.begin(), counts_.end(), int64_t(0));
        int64_t tokens = 0;
        for (int64_t m = first; m < first + G; ++m) {
          const int64_t* c = micro_counts_.data() + (m * L + layer) * E;
          for (int64_t i = 0; i < E; ++i) counts_[i] += c[i];
          tokens += micro_tokens_[m * L + layer];
        }
        const double denom = static_cast<double>(K * tokens);
        SY_CHECK(denom > 0, "balancer: global-exact scope needs the step's pre-pass first");
        for (int64_t i = 0; i < E; ++i) f[i] = static_cast<double>(counts_[i]) / denom;
        break;
      }
      case LblScope::kShuffle: {
        // The sample drawn for this rank, micro-batch and layer by sample_shuffle().
        SY_CHECK(n == o_.micro_batch * S,
                 "balancer: the shuffle scope needs full micro-batches of {} tokens, got {}",
                 o_.micro_batch * S, n);
        const int64_t* c = shuffle_counts_.data() +
                           ((comm_->rank() * o_.grad_accum + micro) * o_.n_layers + layer) * E;
        for (int64_t i = 0; i < E; ++i)
          f[i] = static_cast<double>(c[i]) / static_cast<double>(K * n);
        break;
      }
    }
    total += lbl_add_term(buf, o_.score, term.coef, f, rows);
  }
  return total;
}

template <typename T>
void Balancer<T>::end_step(std::vector<std::vector<int64_t>> loads) {
  if (o_.bias_update == BiasUpdate::kOff) return;
  if (o_.bias_freeze_after > 0 && step_ >= o_.bias_freeze_after) return;
  const int64_t E = o_.n_experts;
  for (int64_t l = 0; l < o_.n_layers; ++l) {
    std::vector<int64_t>& c = loads[l];
    comm_->allreduce_sum(c.data(), E);
    const double mean = std::accumulate(c.begin(), c.end(), 0.0) / E;
    if (mean <= 0) continue;
    std::vector<double> upd(E);
    for (int64_t i = 0; i < E; ++i) {
      const double e = mean - static_cast<double>(c[i]);
      upd[i] = o_.bias_update == BiasUpdate::kSign
                   ? o_.bias_rate * static_cast<double>((e > 0) - (e < 0))
                   : o_.bias_rate * e / mean;
    }
    if (o_.bias_center) {
      const double m = std::accumulate(upd.begin(), upd.end(), 0.0) / E;
      for (double& u : upd) u -= m;
    }
    T* b = bias_.data() + l * E;
    for (int64_t i = 0; i < E; ++i) b[i] += static_cast<T>(upd[i]);
  }
}

template <typename T>
const T* Balancer<T>::bias(int64_t layer) const {
  return bias_.empty() ? nullptr : bias_.data() + layer * o_.n_experts;
}

template <typename T>
int64_t Balancer<T>::balance_bsz(size_t term) const {
  const int64_t B = o_.micro_batch, R = comm_->size();
  const LblTerm& t = o_.lbl[term];
  if (!t.active(step_)) return 0;
  switch (t.scope) {
    case LblScope::kSequence:
      return 1;
    case LblScope::kMicro:
    case LblScope::kShuffle:  // a sample of micro-batch size
      return B;
    case LblScope::kGlobal:
    case LblScope::kGlobalExact:
      return B * group_size(t) * R;
  }
  return B;
}

template class Balancer<float>;
template class Balancer<double>;

}  // namespace sy
