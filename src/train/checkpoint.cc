#include "train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/checkpoint_dir.h"
#include "io/safetensors.h"

namespace sy {

using nlohmann::json;

namespace {

// The model entries (run_config.h: [model], [router], [loss_free], [balance], from the schema) as
// nested JSON: {"model": {"d_model": 64, ...}, ..., "balance": {"terms": [{"type": ...}]}}.
json switchyard_json(const RunConfig& c) {
  json out = {{"balance", {{"terms", json::array()}}}};
  for (const ConfigEntry& e : model_entries(c)) {
    std::string pointer = "/" + e.key;
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    std::visit([&](const auto& v) { out[json::json_pointer(pointer)] = v; }, e.value);
  }
  return out;
}

// A routing state tensor's name in balancer.safetensors (Transformer::layer_state: the loss-free
// bias under DeepSeek-V3's Hugging Face name; the router families' state — BIP's prices, Expert
// Choice's thresholds, Sinkhorn's potentials — under ours).
std::string state_name(int64_t layer, const char* name) {
  return fmt::format("model.layers.{}.mlp.gate.{}", layer, name);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  SY_CHECK(in, "{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every routing state tensor the model declares, per MoE layer, from dir/balancer.safetensors. A
// required tensor that is missing is an error; an optional one (Sinkhorn's evaluation potentials,
// which checkpoints written before they existed lack) is zeroed and restarted, with a note.
void load_routing_state(const std::string& dir, Transformer<float>& model) {
  const std::string file = dir + "/balancer.safetensors";
  std::optional<io::SafetensorsReader> b;
  if (std::filesystem::exists(file)) b.emplace(file);
  const int64_t first = model.config().n_dense_layers;
  std::set<std::string> restarted;
  for (int64_t l = 0; l < model.n_moe_layers(); ++l) {
    for (const StateTensor<float>& s : model.layer_state(l)) {
      const std::string name = state_name(first + l, s.name);
      if (b && b->has(name)) {
        b->read(name, {s.size}, s.data);
        continue;
      }
      SY_CHECK(!s.required,
               "{}: {} must hold the routing state {} for every MoE layer: the config's router or "
               "balancer keeps that state, and a checkpoint of it must too",
               dir, b ? "balancer.safetensors" : "a balancer.safetensors", s.name);
      // Written before this state existed: training resumes as it was; the state is rebuilt.
      std::fill(s.data, s.data + s.size, 0.f);
      model.restart_state(l, s.name);
      if (restarted.insert(s.name).second)
        fmt::print(stderr,
                   "note: {}: no {} in the checkpoint (written before it existed); it restarts "
                   "from the next training step's\n",
                   dir, s.name);
    }
  }
}

}  // namespace

std::string hf_config_json(const RunConfig& c) {
  const auto& m = c.model;
  json mlp_only = json::array();
  for (int64_t l = 0; l < m.n_dense_layers; ++l) mlp_only.push_back(l);
  double lbl = 0;
  for (const auto& t : c.balance.terms)
    if (t.type == "lbl") lbl += t.coef;
  json j = {
      {"architectures", {"Qwen3MoeForCausalLM"}},
      {"model_type", "qwen3_moe"},
      {"vocab_size", m.vocab_size},
      {"hidden_size", m.d_model},
      {"num_hidden_layers", m.n_layers},
      {"num_attention_heads", m.n_heads},
      {"num_key_value_heads", m.n_heads},
      {"head_dim", m.d_model / m.n_heads},
      {"max_position_embeddings", m.seq_len},
      {"num_experts", m.n_experts},
      {"num_experts_per_tok", m.top_k},
      {"moe_intermediate_size", m.d_expert},
      {"intermediate_size", m.d_dense},
      {"mlp_only_layers", mlp_only},
      {"decoder_sparse_step", 1},
      {"norm_topk_prob", c.router.gate == "renorm"},
      {"rms_norm_eps", m.norm_eps},
      {"rope_theta", m.rope_theta},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"tie_word_embeddings", false},
      {"router_aux_loss_coef", lbl},
      {"torch_dtype", "float32"},
      // What the run's weight GEMMs computed in (docs/model.md, "Precision"); stored fp32 always.
      {"switchyard_precision", c.system.precision},
      {"switchyard_differences",
       {"no q_norm/k_norm on attention heads (Qwen3 has them): load with identity q_norm/k_norm",
        "router scores may be sigmoid and gates raw (see switchyard.router)",
        "optional shared experts under mlp.shared_experts.{j} (Qwen3-MoE has none)",
        "optional capacity with token dropping (Qwen3-MoE is dropless)"}},
      {"switchyard", switchyard_json(c)}};
  return j.dump(2) + "\n";
}

OtherExperts gather_experts(const Transformer<float>& model, const AdamW* opt, Exchange& ep) {
  // This rank's experts packed range after range (params, then the moments): rank i's pack has
  // the same layout with its experts, E_local·i further on.
  const std::vector<ParamRange>& ranges = model.expert_ranges();
  int64_t n = 0;
  for (const ParamRange& r : ranges) n += r.numel;
  const int64_t parts = opt ? 3 : 1, R = ep.size();
  std::vector<float> pack(parts * n);
  int64_t at = 0;
  for (const ParamRange& r : ranges) {
    std::copy_n(model.params() + r.offset, r.numel, pack.data() + at);
    if (opt) {
      std::copy_n(opt->exp_avg() + r.offset, r.numel, pack.data() + n + at);
      std::copy_n(opt->exp_avg_sq() + r.offset, r.numel, pack.data() + 2 * n + at);
    }
    at += r.numel;
  }
  const bool root = ep.rank() == 0;
  std::vector<int64_t> sc(R, 0), so(R, 0), rc(R, 0), ro(R, 0);
  sc[0] = parts * n;
  if (root)
    for (int64_t i = 0; i < R; ++i) rc[i] = parts * n, ro[i] = i * parts * n;
  std::vector<float> all(root ? R * parts * n : 0);
  ep.alltoallv(pack.data(), sc.data(), so.data(), all.data(), rc.data(), ro.data());
  OtherExperts out;
  if (!root) return out;
  // Where each of this rank's expert tensors sits in a pack, and the global index it is renamed
  // from: "...mlp.experts.<e>...." of rank i is expert e + i·E_local.
  const int64_t El = model.moe_dims().e_local();
  for (int64_t i = 1; i < R; ++i)
    for (const ParamInfo& p : model.param_table()) {
      if (!p.expert) continue;
      int64_t in_pack = 0;
      for (const ParamRange& r : ranges) {
        if (p.offset >= r.offset && p.offset < r.offset + r.numel) {
          in_pack += p.offset - r.offset;
          break;
        }
        in_pack += r.numel;
      }
      const std::string key = ".mlp.experts.";
      const size_t a = p.name.find(key) + key.size(), b = p.name.find('.', a);
      const int64_t e = std::stoll(p.name.substr(a, b - a));
      out.tensors.push_back({p.name.substr(0, a) + std::to_string(e + i * El) + p.name.substr(b),
                             p.shape, (i - 1) * n + in_pack});
    }
  out.params.resize((R - 1) * n);
  for (int64_t i = 1; i < R; ++i) {
    const float* src = all.data() + i * parts * n;
    std::copy_n(src, n, out.params.data() + (i - 1) * n);
    if (opt) {
      out.exp_avg.insert(out.exp_avg.end(), src + n, src + 2 * n);
      out.exp_avg_sq.insert(out.exp_avg_sq.end(), src + 2 * n, src + 3 * n);
    }
  }
  return out;
}

void write_checkpoint_files(io::CheckpointWriter& w, const RunConfig& cfg,
                            const Transformer<float>& model, const AdamW* opt,
                            const TrainerState& st, const OtherExperts* others) {
  std::vector<io::TensorView> tensors;
  tensors.reserve(model.param_table().size());
  for (const ParamInfo& p : model.param_table())
    tensors.push_back({p.name, "F32", p.shape, model.params() + p.offset});
  if (others)
    for (const OtherExperts::Tensor& t : others->tensors)
      tensors.push_back({t.name, "F32", t.shape, others->params.data() + t.offset});
  io::write_safetensors(w.path("model.safetensors"), tensors, {{"format", "pt"}});
  if (opt) {
    std::vector<io::TensorView> moments;
    moments.reserve(2 * tensors.size());
    for (const ParamInfo& p : model.param_table()) {
      moments.push_back({p.name + ".exp_avg", "F32", p.shape, opt->exp_avg() + p.offset});
      moments.push_back({p.name + ".exp_avg_sq", "F32", p.shape, opt->exp_avg_sq() + p.offset});
    }
    if (others)
      for (const OtherExperts::Tensor& t : others->tensors) {
        moments.push_back({t.name + ".exp_avg", "F32", t.shape, others->exp_avg.data() + t.offset});
        moments.push_back(
            {t.name + ".exp_avg_sq", "F32", t.shape, others->exp_avg_sq.data() + t.offset});
      }
    io::write_safetensors(w.path("optimizer.safetensors"), moments);
  }
  // Routing state (fp32): every tensor the model declares, per MoE layer.
  std::vector<io::TensorView> b;
  for (int64_t l = 0; l < model.n_moe_layers(); ++l) {
    const int64_t layer = cfg.model.n_dense_layers + l;
    for (const StateTensor<const float>& s : model.layer_state(l))
      b.push_back({state_name(layer, s.name), "F32", {s.size}, s.data});
  }
  if (!b.empty()) io::write_safetensors(w.path("balancer.safetensors"), b);
  w.write_text("trainer_state.json", trainer_state_json({st, opt ? opt->steps_taken() : 0}));
  w.write_text("config.json", hf_config_json(cfg));
  w.write_text("config.toml", to_toml(cfg));
}

void save_checkpoint(const std::string& dir, const RunConfig& cfg, const Transformer<float>& model,
                     const AdamW* opt, const TrainerState& st, const OtherExperts* others) {
  io::CheckpointWriter w(dir);
  write_checkpoint_files(w, cfg, model, opt, st, others);
  w.commit();
}

RunConfig read_checkpoint_config(const std::string& dir) {
  io::verify_checkpoint(dir);
  return parse_run_config(read_text(dir + "/config.toml"), {}, dir + "/config.toml");
}

void load_checkpoint(const std::string& dir, Transformer<float>& model, AdamW* opt,
                     TrainerState* st) {
  io::verify_checkpoint(dir);
  io::SafetensorsReader weights(dir + "/model.safetensors");
  for (const ParamInfo& p : model.param_table()) {
    SY_CHECK(weights.has(p.name),
             "{}/model.safetensors: tensor {} is missing; was this checkpoint written for a "
             "different model config?",
             dir, p.name);
    weights.read(p.name, p.shape, model.params() + p.offset);
  }
  SY_CHECK(static_cast<int64_t>(weights.names().size()) == model.full_table_size(),
           "{}/model.safetensors: must hold exactly the model's {} tensors, got {}", dir,
           model.full_table_size(), weights.names().size());
  load_routing_state(dir, model);
  if (opt) {
    io::SafetensorsReader moments(dir + "/optimizer.safetensors");
    for (const ParamInfo& p : model.param_table()) {
      moments.read(p.name + ".exp_avg", p.shape, opt->exp_avg() + p.offset);
      moments.read(p.name + ".exp_avg_sq", p.shape, opt->exp_avg_sq() + p.offset);
    }
  }
  if (st || opt) {
    const std::string path = dir + "/trainer_state.json";
    const TrainerStateFile f = parse_trainer_state(read_text(path), path);
    if (st) *st = f.state;
    if (opt) opt->set_steps_taken(f.optimizer_steps);
  }
}

}  // namespace sy
