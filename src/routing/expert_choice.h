// Expert Choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing",
// arXiv 2202.09368): experts choose tokens instead of tokens choosing experts. ALGORITHMS.md §4.
//
// Dimension letters: N tokens in the call, E routed experts, G tokens per routing group.
//
// Math. z[N,E] router logits (row-major); S[t,i] = softmax_i(z[t,:]).
//   Routing groups: the N tokens, in the order pos → perm[pos] (identity when perm is null), are
//   cut into consecutive groups of G = chunk tokens (chunk = 0: one group of all N). When G does
//   not divide N the last group is smaller, T_last = N mod G, and gets its own capacity.
//   Capacity of a group of T tokens: k(T) = min(T, ceil(T·c / E)), c = capacity_factor (the
//   average number of experts per token; c = K matches top-K compute).
//   Selection: in each group g and for each expert i, the k(T_g) tokens of g with the highest
//   S[t,i]; ties go to the lower token index. Gate of the row (t,i): S[t,i].
//   A token gets 0, 1 or many experts; every expert takes exactly Σ_g k(T_g) tokens.
//   Backward: the selection is piecewise constant, so dz[t,:] = S[t,:] ⊙ (ds[t,:] − ⟨ds[t,:],
//   S[t,:]⟩), ds[t,i] = d(gate) of the row (t,i) if selected, else 0.
//
// Causal evaluation (ours; ALGORITHMS.md §4 "Causality"). In a causal LM, training-time EC lets
//   a token's routing depend on other tokens of its group, including LATER tokens of its own
//   sequence (the k-th largest score of a column is a statistic of the whole group). The training
//   loss is therefore optimistic (a leak of up to ~K·log2((1−R)/R) bits per token per layer,
//   R = K/E). For an honest evaluation we keep per-expert thresholds θ_i, an EMA over training
//   batches of the k-th largest S[:,i] of each group (kth_value below), and route at evaluation
//   with  t → i  iff  S[t,i] ≥ θ_i : a token's experts then depend on its own scores only (the
//   load becomes variable). Report EC results under both evaluations, side by side.
//
// Row layout of a plan (both forwards): rows grouped by expert, rows of expert i are
// [offsets[i], offsets[i+1]), in ascending token index within an expert.
//
// Implementation of the training forward for float on AVX-512 without a shuffle: S is computed
//   16 tokens at a time in the transposed layout scores_t[E, ld] (routing/transposed.h; the same
//   floats as the scalar softmax) and copied back to scores[N,E]; per expert and group the k-th
//   largest value is found by radix selection on the order-preserving integer image of the float
//   bits (routing/kth_select.h), then one vectorised pass in token order takes the tokens above it
//   and the first ties. Otherwise: std::nth_element. Same rows, gates and kth_value either way.
//   Scores must not be NaN (a NaN logit makes the selection unspecified, as with nth_element).
//
// Ownership: every function writes into caller-owned ExpertChoiceBuffers, sized once by resize();
// nothing allocates per call. perm and theta are caller-owned; the caller owns the RNG that made
// perm (e.g. a seeded Fisher–Yates per step). Threading: functions parallelise internally with
// OpenMP and must be called from outside a parallel region; distinct buffers may be used
// concurrently. Results are identical for any thread count.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace sy {

struct ExpertChoiceOptions {
  int64_t n_experts = 16;        // E
  double capacity_factor = 2.0;  // c: average experts per token
  int64_t chunk = 0;             // G: tokens per routing group; 0 = all N tokens of the call
};

// k(T) = min(T, ceil(T·c/E)) for a group of T ≥ 1 tokens.
int64_t ec_capacity(const ExpertChoiceOptions& o, int64_t group_tokens);
// Rows per expert for N tokens: Σ_g k(T_g) over the groups of the call.
int64_t ec_rows_per_expert(const ExpertChoiceOptions& o, int64_t n_tokens);
// Throws sy::Error unless E ≥ 1, c > 0, chunk ≥ 0.
void ec_validate(const ExpertChoiceOptions& o);

template <typename T>
struct ExpertChoiceBuffers {
  // REQUIRES: ec_validate(o) passes. Sized for up to n_max tokens.
  void resize(const ExpertChoiceOptions& o, int64_t n_max);

  int64_t n_max = 0, e = 0;                // sizes made for
  int64_t n = 0;                           // tokens of the last call
  int64_t rows = 0;                        // rows of the last plan
  std::vector<T> scores;                   // [N,E] S = softmax(z)
  std::vector<int64_t> offsets;            // [E+1] rows of expert i: [offsets[i], offsets[i+1])
  std::vector<int32_t> token_of_row;       // [rows ≤ N·E] token of each row
  std::vector<T> gate_of_row;              // [rows] S[token, expert] of each row
  std::vector<int32_t> experts_per_token;  // [N] rows holding each token
  std::array<int64_t, 6> histogram{};      // tokens with 0,1,2,3,4,≥5 experts (sums to N)
  std::vector<T> kth_value;                // [E] k-th largest S[:,i] (training forward only)
  std::vector<int32_t> candidates;         // [E,G] scratch: one group's tokens per expert
  std::vector<T> work;                     // [E,G] scratch: one group's selection (float)
  std::vector<T> scores_t;                 // [E,ld ≥ N] scratch: S transposed (float)
  std::vector<T> dscores;                  // [N,E] scratch for the backward pass
};

// Training forward: z[N,E] → S, the plan (exactly rows_per_expert rows per expert, exactly k(T_g)
// per expert in each group g), the per-token counts and histogram, and kth_value[i] = the k-th
// largest S[:,i] of each group, averaged over groups weighted by group size T_g/N (with one group,
// simply the k-th largest). perm: null, or a permutation of 0..N−1 (perm[pos] = token at position
// pos of the shuffled order) — shuffling only changes which tokens compete; rows stay token-sorted.
// REQUIRES: buf.resize(o, n_max) with n ≤ n_max; N < 2^31.
template <typename T>
void ec_route_forward(const ExpertChoiceOptions& o, const T* z, int64_t n, const int32_t* perm,
                      ExpertChoiceBuffers<T>& buf);

// Causal evaluation forward: S = softmax(z) into buf.scores, then row (t,i) iff S[t,i] ≥ θ_i
// (theta[E]). Gates S[t,i]; loads variable. A token's experts depend only on z[t,:] and θ.
// Does not touch kth_value. Same buffers, same backward.
template <typename T>
void ec_route_causal(const ExpertChoiceOptions& o, const T* z, int64_t n, const T* theta,
                     ExpertChoiceBuffers<T>& buf);

// θ_i ← decay·θ_i + (1 − decay)·kth_values[i], for i < E. decay = 0 copies (use it for the first
// training batch). Call after each training forward (never from evaluation), with buf.kth_value.
// θ is state of its owner (the model layer): save it in checkpoints.
template <typename T>
void ec_update_thresholds(T* theta, const T* kth_values, int64_t n_experts, double decay);

// dz[N,E] = ∂/∂z of Σ_rows dgate_of_row[r]·gate_of_row[r], for the plan in buf (either forward).
// dz is OVERWRITTEN.
template <typename T>
void ec_route_backward(const ExpertChoiceOptions& o, const T* dgate_of_row,
                       ExpertChoiceBuffers<T>& buf, T* dz);

}  // namespace sy
