// Writes what tests/python/test_parity.py compares against PyTorch: a checkpoint of a seeded
// model, a seeded batch, and the engine's logits, losses, routing and every parameter gradient.
//   parity_dump CONFIG.toml OUT_DIR [key=value ...]
#include <cstdio>
#include <filesystem>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "train/checkpoint.h"
#include "train/run_options.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: parity_dump CONFIG.toml OUT_DIR [key=value ...]\n");
    return 2;
  }
  try {
    std::vector<std::string> overrides(argv + 3, argv + argc);
    sy::RunConfig cfg = sy::load_run_config(argv[1], overrides);
    const std::string out = argv[2];
    std::filesystem::create_directories(out);
    const auto& m = cfg.model;
    const int64_t B = cfg.train.micro_batch, S = m.seq_len, N = B * S;
    sy::Transformer<float> model(m, sy::topk_options(cfg), sy::balancer_options(cfg), B, nullptr,
                                 sy::make_router_options(cfg.router));
    model.init(cfg.train.seed);
    model.set_precision(sy::parse_precision(cfg.system.precision));  // config.json records it
    model.set_keep_logits(true);  // a bf16 training forward keeps none otherwise
    sy::save_checkpoint(out + "/checkpoint", cfg, model, nullptr, sy::TrainerState{});

    std::vector<int32_t> tokens(B * (S + 1));
    sy::Rng rng(cfg.train.seed + 1);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(m.vocab_size));
    sy::io::write_safetensors(out + "/batch.safetensors",
                              {{"tokens", "I32", {B, S + 1}, tokens.data()}});

    model.balancer().begin_step(0);
    sy::ForwardStats st = model.forward(tokens.data(), B);
    std::vector<float> logits(model.logits(), model.logits() + N * m.vocab_size);
    std::vector<std::vector<int32_t>> topk;
    std::vector<std::vector<uint8_t>> kept;
    for (int64_t l = 0; l < model.n_moe_layers(); ++l) {
      const auto& r = *model.layer_router(l).slots();  // the parity test routes top-K
      topk.emplace_back(r.expert.begin(), r.expert.begin() + N * m.top_k);
      kept.emplace_back(r.kept.begin(), r.kept.begin() + N * m.top_k);
    }
    model.zero_grad();
    model.backward(1.0f / static_cast<float>(st.n_tokens), 1.0f);

    const float ce = static_cast<float>(st.ce_sum / st.n_tokens);
    const float lbl = static_cast<float>(st.lbl), z = static_cast<float>(st.z_loss);
    const float loss = ce + lbl + z;
    std::vector<sy::io::TensorView> t = {{"logits", "F32", {N, m.vocab_size}, logits.data()},
                                         {"loss", "F32", {}, &loss},
                                         {"ce", "F32", {}, &ce},
                                         {"lbl", "F32", {}, &lbl},
                                         {"z_loss", "F32", {}, &z}};
    for (int64_t l = 0; l < model.n_moe_layers(); ++l) {
      const std::string layer = std::to_string(m.n_dense_layers + l);
      t.push_back({"topk." + layer, "I32", {N, m.top_k}, topk[l].data()});
      t.push_back({"kept." + layer, "U8", {N, m.top_k}, kept[l].data()});
    }
    for (const auto& p : model.param_table())
      t.push_back({"grad." + p.name, "F32", p.shape, model.grads() + p.offset});
    sy::io::write_safetensors(out + "/expected.safetensors", t);
    std::printf("parity_dump: wrote %s (loss %.6f, ce %.6f, lbl %.6f, z %.6f)\n", out.c_str(), loss,
                ce, lbl, z);
    return 0;
  } catch (const sy::Error& e) {
    std::fprintf(stderr, "parity_dump: error: %s\n", e.what());
    return 1;
  }
}
