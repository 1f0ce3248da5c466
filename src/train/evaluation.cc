#include "train/evaluation.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/error.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/run_options.h"

namespace sy {

using nlohmann::json;

namespace {

struct DomainSums {
  double ce = 0;
  int64_t tokens = 0;
  std::vector<std::vector<int64_t>> count;  // [MoE layer][E] tokens of the domain sent to expert i
};

struct EvalSums {
  double ce = 0;
  int64_t tokens = 0, sequences = 0;
  std::vector<std::vector<int64_t>> load;
  std::vector<DomainSums> domain;  // by domain id
  void add(const EvalSums& o) {
    ce += o.ce;
    tokens += o.tokens;
    sequences += o.sequences;
    for (size_t l = 0; l < load.size(); ++l)
      for (size_t i = 0; i < load[l].size(); ++i) load[l][i] += o.load[l][i];
    for (size_t d = 0; d < domain.size(); ++d) {
      domain[d].ce += o.domain[d].ce;
      domain[d].tokens += o.domain[d].tokens;
      for (size_t l = 0; l < load.size(); ++l)
        for (size_t i = 0; i < load[l].size(); ++i)
          domain[d].count[l][i] += o.domain[d].count[l][i];
    }
  }
};

EvalSums empty_sums(int64_t layers, int64_t E, size_t n_domains) {
  EvalSums s;
  s.load.assign(layers, std::vector<int64_t>(E, 0));
  s.domain.resize(n_domains);
  for (auto& d : s.domain) d.count.assign(layers, std::vector<int64_t>(E, 0));
  return s;
}

// ALGORITHMS.md §7: F[l][d][i] (fraction of the domain's tokens whose experts include i), the
// specialisation KL(F̂ ‖ uniform) in nats, and the share of assignments of the top 10% experts.
json domain_record(const DomainSums& d, int64_t E) {
  json F = json::array(), spec = json::array(), top = json::array();
  for (const auto& c : d.count) {
    std::vector<double> f(E), fh(E);
    double sum = 0;
    for (int64_t i = 0; i < E; ++i) sum += (f[i] = static_cast<double>(c[i]) / d.tokens);
    double kl = 0;
    for (int64_t i = 0; i < E; ++i) {
      fh[i] = sum > 0 ? f[i] / sum : 0;
      if (fh[i] > 0) kl += fh[i] * std::log(fh[i] * E);
    }
    std::sort(fh.begin(), fh.end(), std::greater<>());
    const int64_t n_top = std::max<int64_t>(1, (E + 9) / 10);
    double share = 0;
    for (int64_t i = 0; i < n_top; ++i) share += fh[i];
    F.push_back(f);
    spec.push_back(kl);
    top.push_back(share);
  }
  const double loss = d.tokens ? d.ce / d.tokens : 0.0;
  return json{{"loss", loss}, {"perplexity", std::exp(loss)}, {"tokens", d.tokens},
              {"F", F},       {"specialisation", spec},       {"top10_share", top}};
}

// Forward-only pass over up to max_batches micro-batches of src from its start. Touches no
// training state (top-K routing has none; later balancers must not update theirs here).
// With several ranks, rank r takes the batches b with b mod R = r (the caller sums the results).
EvalSums run_eval(Transformer<float>& model, BatchSource& src, int64_t max_batches,
                  Buffer<int32_t>& tokens, Buffer<int32_t>& domains, ForwardMode mode,
                  size_t n_domains, const Communicator& comm) {
  const int64_t E = model.config().n_experts, S = model.config().seq_len;
  EvalSums s = empty_sums(model.n_moe_layers(), E, n_domains);
  const uint64_t per_epoch = src.sequences_per_epoch();
  const int64_t b_max = model.micro_batch();
  for (int64_t b = 0; max_batches == 0 || b < max_batches; ++b) {
    const uint64_t start = static_cast<uint64_t>(b * b_max);
    int64_t B = b_max;
    if (per_epoch > 0) {
      if (start >= per_epoch) break;
      B = std::min<int64_t>(B, static_cast<int64_t>(per_epoch - start));
    }
    if (b % comm.size() != comm.rank()) continue;
    src.set_position(start);
    src.next(tokens.data(), domains.data(), B);
    ForwardStats st = model.forward(tokens.data(), B, mode);
    s.ce += st.ce_sum;
    s.tokens += st.n_tokens;
    s.sequences += B;
    for (int64_t l = 0; l < model.n_moe_layers(); ++l)
      for (int64_t i = 0; i < E; ++i) s.load[l][i] += model.layer_plan(l).load[i];
    // Per domain: the loss of each sequence and the experts of each of its tokens.
    const float* losses = model.token_losses();
    for (int64_t q = 0; q < B; ++q) {
      const int32_t d = domains[q];
      if (d < 0 || static_cast<size_t>(d) >= n_domains) continue;
      for (int64_t t = q * S; t < (q + 1) * S; ++t) s.domain[d].ce += losses[t];
      s.domain[d].tokens += S;
    }
    for (int64_t l = 0; l < model.n_moe_layers(); ++l) {
      const RoutingPlan<float>& a = model.layer_plan(l);
      for (int64_t i = 0; i < E; ++i)
        for (int64_t r = a.expert_offsets[i]; r < a.expert_offsets[i + 1]; ++r) {
          const int32_t d = domains[a.token_of_row[r] / S];
          if (d >= 0 && static_cast<size_t>(d) < n_domains) ++s.domain[d].count[l][i];
        }
    }
    if (per_epoch == 0 && max_batches == 0) break;  // unbounded source: one batch at least
  }
  return s;
}

// Sums every field of s over the ranks (integers exactly).
void allreduce(EvalSums& s, Communicator& comm) {
  if (comm.size() == 1) return;
  std::vector<int64_t> ints = {s.tokens, s.sequences};
  std::vector<double> reals = {s.ce};
  for (const auto& l : s.load) ints.insert(ints.end(), l.begin(), l.end());
  for (const auto& d : s.domain) {
    reals.push_back(d.ce);
    ints.push_back(d.tokens);
    for (const auto& l : d.count) ints.insert(ints.end(), l.begin(), l.end());
  }
  comm.allreduce_sum(ints.data(), static_cast<int64_t>(ints.size()));
  comm.allreduce_sum(reals.data(), static_cast<int64_t>(reals.size()));
  size_t i = 0, r = 0;
  s.tokens = ints[i++];
  s.sequences = ints[i++];
  s.ce = reals[r++];
  for (auto& l : s.load)
    for (auto& x : l) x = ints[i++];
  for (auto& d : s.domain) {
    d.ce = reals[r++];
    d.tokens = ints[i++];
    for (auto& l : d.count)
      for (auto& x : l) x = ints[i++];
  }
}

}  // namespace

// Routers that route a micro-batch as a whole (Expert Choice, Sinkhorn, the optimal assignment)
// then see groups composed as in training; with domain-pure training each evaluation micro-batch
// holds one domain, as each training one does. Token-choice routing is the same either way (only
// the order of the sums changes).
bool eval_mixes_domains(const RunConfig& cfg, EvalBatches batches) {
  if (batches != EvalBatches::kAsTrained) return batches == EvalBatches::kMixed;
  return cfg.data.source == "blend" && cfg.data.composition == "mixed";
}

json evaluation_record(Transformer<float>& model, std::vector<ValidSet>& sets,
                       const std::vector<std::string>& domain_list, int64_t batches_per_set,
                       bool mix_domains, Buffer<int32_t>& tokens, Buffer<int32_t>& domains,
                       Communicator& comm) {
  const int64_t E = model.config().n_experts;
  auto eval_all = [&](ForwardMode mode) {
    EvalSums all = empty_sums(model.n_moe_layers(), E, domain_list.size());
    if (mix_domains && sets.size() > 1) {
      std::vector<BatchSource*> srcs;
      for (auto& v : sets) srcs.push_back(v.source.get());
      InterleavedSource mixed(std::move(srcs),
                              static_cast<uint64_t>(batches_per_set * model.micro_batch()),
                              model.config().seq_len);
      all.add(run_eval(model, mixed, 0, tokens, domains, mode, domain_list.size(), comm));
    } else {
      for (auto& v : sets)
        all.add(run_eval(model, *v.source, batches_per_set, tokens, domains, mode,
                         domain_list.size(), comm));
    }
    allreduce(all, comm);
    return all;
  };
  EvalSums e = eval_all(ForwardMode::kEval);
  const double loss = e.tokens ? e.ce / e.tokens : 0.0;
  json j = {{"loss", loss},
            {"perplexity", std::exp(loss)},
            {"tokens", e.tokens},
            {"sequences", e.sequences},
            {"batches", mix_domains && sets.size() > 1 ? "mixed" : "per-domain"}};
  json mv = json::array();
  for (const auto& l : e.load) mv.push_back(maxvio(l.data(), E));
  j["maxvio_global"] = mv;
  j["load"] = e.load;
  json dom = json::object();
  for (size_t d = 0; d < domain_list.size(); ++d)
    if (e.domain[d].tokens > 0) dom[domain_list[d]] = domain_record(e.domain[d], E);
  j["domains"] = dom;
  if (model.has_causal_eval()) {
    // Expert Choice's and Sinkhorn's training-time routing sees later tokens; the causal routing
    // (EC's thresholds, Sinkhorn's EMA potentials) does not.
    EvalSums c = eval_all(ForwardMode::kEvalCausal);
    const double lc = c.tokens ? c.ce / c.tokens : 0.0;
    json mvc = json::array();
    for (const auto& l : c.load) mvc.push_back(maxvio(l.data(), E));
    j["loss_causal"] = lc;
    j["perplexity_causal"] = std::exp(lc);
    j["maxvio_global_causal"] = mvc;
    json domc = json::object();  // per domain too: specialisation under the causal routing
    for (size_t d = 0; d < domain_list.size(); ++d)
      if (c.domain[d].tokens > 0) domc[domain_list[d]] = domain_record(c.domain[d], E);
    j["domains_causal"] = domc;
  }
  return j;
}

EvalBatches parse_eval_batches(std::string_view name) {
  if (name == "auto") return EvalBatches::kAsTrained;
  if (name == "mixed") return EvalBatches::kMixed;
  if (name == "per-domain") return EvalBatches::kPerDomain;
  throw Error(fmt::format(
      "evaluation batches: unknown value \"{}\"; allowed: auto, mixed, per-domain", name));
}

EvalResult evaluate_checkpoint(const std::string& checkpoint_dir, const std::string& tokens_path,
                               int64_t max_sequences, int64_t threads, EvalBatches batches) {
  RunConfig cfg = read_checkpoint_config(checkpoint_dir);
  cfg.system.threads = threads;
  apply_system(cfg.system);
  const ModelConfig& m = cfg.model;
  const int64_t B = cfg.train.micro_batch;
  Transformer<float> model(m, topk_options(cfg), balancer_options(cfg), B, nullptr,
                           make_router_options(cfg.router));
  load_checkpoint(checkpoint_dir, model, nullptr, nullptr);
  model.set_precision(parse_precision(cfg.system.precision));  // as the run evaluated
  std::vector<std::string> domain_list;
  std::vector<ValidSet> sets;
  if (!tokens_path.empty()) {
    domain_list = {"tokens"};
    sets.push_back({"tokens", std::make_unique<TokenFileSource>(tokens_path, m.vocab_size,
                                                                m.seq_len, false, 0)});
  } else {
    sets = make_valid_sources(cfg, &domain_list);
    SY_CHECK(!sets.empty(),
             "{}: the run's config has no validation data (data.valid / data.valid_tokens); pass "
             "--tokens FILE",
             checkpoint_dir);
  }
  Buffer<int32_t> tokens(B * (m.seq_len + 1)), domains(B);
  // Token files and datasets are read whole unless capped; the unbounded synthetic stream is
  // read for train.eval_batches micro-batches.
  int64_t per_set = max_sequences > 0 ? (max_sequences + B - 1) / B : 0;
  if (per_set == 0 && cfg.data.source == "synthetic" && tokens_path.empty())
    per_set = cfg.train.eval_batches;
  SingleProcessCommunicator single;
  json j = evaluation_record(model, sets, domain_list, per_set,
                             tokens_path.empty() && eval_mixes_domains(cfg, batches), tokens,
                             domains, single);
  EvalResult r;
  r.tokens = j["tokens"].get<int64_t>();
  r.sequences = j["sequences"].get<int64_t>();
  r.loss = j["loss"].get<double>();
  r.perplexity = std::exp(r.loss);
  r.load = j["load"].get<std::vector<std::vector<int64_t>>>();
  r.maxvio_global = j["maxvio_global"].get<std::vector<double>>();
  if (j.contains("loss_causal")) {
    r.loss_causal = j["loss_causal"].get<double>();
    r.maxvio_global_causal = j["maxvio_global_causal"].get<std::vector<double>>();
  }
  r.record_json = j.dump();
  return r;
}

}  // namespace sy
