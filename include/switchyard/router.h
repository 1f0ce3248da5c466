// The router interface: how one MoE layer chooses experts for its tokens, whatever the family.
//
// A Router turns router logits z[N,E] into a RoutingPlan — rows grouped by expert, each row one
// (token, expert) pair with its gate — which is the only thing dispatch, the experts and combine
// read (src/moe). Its backward turns the gradient of each row's gate into dz[N,E]. Everything a
// family needs between calls (BIP's prices, Expert Choice's thresholds, Sinkhorn's potentials) it
// owns and declares in state(), which checkpoints save and load by name and which data-parallel
// ranks keep identical. The families, each in its own file under src/routing/router_*.cc, are
// listed once in the registry (src/routing/router.cc): make_router() builds one by name and
// router_names() is what router.type accepts.
//
//   family          chooses                                             state (per layer)
//   topk            the K largest scores (+ the loss-free bias)         —
//   bip             the K largest of s − q, q BIP's dual prices         bip_dual q[E]
//   sinkhorn        top-K of the Sinkhorn-balanced matrix (S-BASE)      sinkhorn_potentials b̄[E]
//   hash            a fixed hash of the token id                        —
//   optimal         the exact balanced assignment (oracle)              —
//   expert_choice   each expert its top tokens (variable experts/token) ec_threshold θ[E]
//
// Call order for one layer: route() (forward), then backward() for the same call; between steps,
// after state() has been made equal on every rank, end_step(). Balancing terms (LBL, z-loss) are
// not routers' business: they act on slots(), the token-slot view of top-K-family plans.
//
// Ownership: a Router owns its options, state and scratch, sized once for n_max tokens; route()
// and backward() allocate nothing. The RoutingPlan is the caller's. Threading: not thread-safe;
// calls parallelise internally with OpenMP (call from outside a parallel region). Integer outputs
// (the plan, loads) are identical for any thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "switchyard/routing.h"

namespace sy {

// BIP's order of update and routing (routing/bip.h): kAsPublished updates q on the batch, then
// routes it; kCausal routes with the previous batch's q, then updates.
enum class BipMode { kAsPublished, kCausal };
BipMode parse_bip_mode(const std::string& s);  // "as-published" | "causal"

template <typename T>
class Router;
struct RouterOptions;

// How a family is built: a router for calls of up to n_max tokens, from its options and the
// top-K options every family starts from (E, K, scores, gates, capacity, z-loss).
template <typename T>
using RouterFactory = std::unique_ptr<Router<T>> (*)(const RouterOptions&, const TopKOptions&,
                                                     int64_t n_max);
// A router family: its name (router.type) and its factories. The registry is a list of these;
// a family of your own (a research prototype, a test) can be handed to make_router through
// RouterOptions::family without being registered.
struct RouterFamily {
  const char* name = "";
  RouterFactory<float> make_float = nullptr;
  RouterFactory<double> make_double = nullptr;
};

// Every family's options (each family reads its own). The defaults are the config's.
struct RouterOptions {
  std::string type = "topk";  // one of router_names()
  // When set, make_router builds this family instead of looking type up in the registry; the
  // pointee must outlive the call.
  const RouterFamily* family = nullptr;
  int bip_iterations = 2;  // BIP: T; 0 = until q stops changing (at most kBipMaxIterations)
  BipMode bip_mode = BipMode::kAsPublished;
  int sinkhorn_iterations = 8;    // Sinkhorn: iterations per call
  double sinkhorn_decay = 0.99;   // Sinkhorn: EMA decay of the causal-evaluation potentials
  uint64_t hash_seed = 0;         // hash: which hash of the family
  double ec_capacity_factor = 0;  // Expert Choice: c, average experts per token (0 = K)
  int64_t ec_chunk = 0;           // Expert Choice: tokens per routing group (0 = all)
  bool ec_shuffle = false;        // Expert Choice: groups of shuffled tokens (RouteCall::stream)
  double ec_decay = 0.99;         // Expert Choice: EMA decay of the thresholds θ
};

// BIP with bip_iterations = 0 iterates until no price moves by more than 8 ulp of 1 in an
// iteration (q has stopped changing up to rounding), at most this many times.
constexpr int kBipMaxIterations = 1000;

// What one call knows besides the logits.
template <typename T>
struct RouteCall {
  // Training: the router's state moves (BIP's q, θ, b̄). false: the pre-pass and evaluation.
  bool update = true;
  // Evaluation by the family's causal rule (Expert Choice: thresholds θ; Sinkhorn: top-K of
  // z + b̄), so a token's experts depend only on its own logits. Other families are causal.
  bool causal = false;
  // The run's very first training batch: state kept as a moving average is copied, not averaged.
  bool first_batch = false;
  const int32_t* token_ids = nullptr;  // [N] the tokens' ids (hash)
  const T* bias = nullptr;             // [E] the loss-free selection bias (nullable; top-K family)
  uint64_t stream = 0;                 // key of the call's random choices (Expert Choice's groups)
};

// The plan as rows, whatever the router. Rows of expert i are [expert_offsets[i],
// expert_offsets[i+1]); token_rows[token_offsets[t] .. token_offsets[t+1]) are token t's rows in
// expert order (the fixed combine order). Sized once by resize().
template <typename T>
struct RoutingPlan {
  void resize(int64_t n_max, int64_t n_experts, int64_t max_rows);

  int64_t n = 0;                        // tokens of the last call
  int64_t rows = 0;                     // rows of the last call (kept token-expert pairs)
  int64_t dropped = 0;                  // assignments dropped by capacity
  std::vector<int64_t> expert_offsets;  // [E+1]
  std::vector<int32_t> token_of_row;    // [rows]
  std::vector<T> gate_of_row;           // [rows]
  std::vector<int64_t> token_offsets;   // [N+1]
  std::vector<int32_t> token_rows;      // [rows]
  std::vector<int64_t> load;            // [E] rows per expert
  std::vector<int64_t> demand;          // [E] assignments per expert before capacity
};

// Fills plan.token_offsets / token_rows from token_of_row (a stable counting sort, so a token's
// rows stay in expert order) and the experts-per-token histogram of st. REQUIRES: plan.n set.
template <typename T>
void index_rows_by_token(RoutingPlan<T>& plan, RoutingStats& st);

// One tensor of per-layer routing state, declared once by its owner (a Router, or the balancer
// for the loss-free bias): checkpoints save and load every entry under its name, data-parallel
// replicas are compared over all of them, and those each rank updates from its own micro-batches
// are replaced by their mean over ranks after every step.
template <typename V>  // T, or const T from a const owner
struct StateTensor {
  const char* name = "";  // tensor name in a layer: "model.layers.<l>.mlp.gate.<name>"
  V* data = nullptr;
  int64_t size = 0;
  // false: a checkpoint without it (written before it existed) restarts it (restart_state).
  bool required = true;
  bool rank_mean = false;  // replaced by its mean over ranks after each step
};

// Values a router reports about its last call or its state, for the step's metrics record.
class RouterMetrics {
 public:
  virtual ~RouterMetrics() = default;
  virtual void scalar(const char* name, double v) = 0;
  virtual void vector(const char* name, const float* v, int64_t n) = 0;
};

template <typename T>
class Router {
 public:
  virtual ~Router() = default;

  // z[N,E] (row-major) → plan, and the call's statistics (lbl is the caller's). REQUIRES:
  // n ≤ the n_max it was made for; plan resized for (n_max, E, n_max·max_experts_per_token()).
  virtual RoutingStats route(const T* z, int64_t n, const RouteCall<T>& call,
                             RoutingPlan<T>& plan) = 0;
  // dz[N,E] (overwritten) of the last route(): the gradient through the gates, given each row's
  // gate gradient dgate_row[plan.rows], plus aux_scale × the auxiliary losses' (LBL terms set on
  // slots(), z-loss).
  virtual void backward(const T* z, const RoutingPlan<T>& plan, const T* dgate_row, T aux_scale,
                        T* dz) = 0;

  // The most experts one token can get: K, or E for Expert Choice (sizes the plan).
  virtual int64_t max_experts_per_token() const = 0;
  // The top-K family's token-slot plan of the last call, which balancing terms read and add
  // their gradients to; null for a router without fixed slots (Expert Choice).
  virtual RoutingBuffers<T>* slots() { return nullptr; }
  const RoutingBuffers<T>* slots() const { return const_cast<Router*>(this)->slots(); }
  // Whether a causal call routes differently from a plain evaluation call.
  virtual bool has_causal_eval() const { return false; }

  // The state this layer keeps between calls (empty when none), in a fixed order.
  virtual std::vector<StateTensor<T>> state() { return {}; }
  std::vector<StateTensor<const T>> state() const;
  // A checkpoint lacked the named (not required) tensor: it was zeroed; rebuild it.
  virtual void restart_state(const std::string& name);
  // After an optimizer step, with state() equal on every rank.
  virtual void end_step() {}

  // BIP: the prices q[E] that routed the last call (for the oracle's dual gap); else null.
  virtual const T* routed_prices() const { return nullptr; }
  // The family's values for the step record (BIP's prices, Sinkhorn's residual imbalance).
  virtual void report(RouterMetrics& /*out*/) const {}
};

// The registry. make_router builds o.family if set, else the family named o.type, for routing
// calls of up to n_max tokens; an unknown name is an error that lists router_names().
template <typename T>
std::unique_ptr<Router<T>> make_router(const RouterOptions& o, const TopKOptions& topk,
                                       int64_t n_max);
const std::vector<std::string>& router_names();

}  // namespace sy
