// Hash routing (Roller et al. 2021, "Hash Layers For Large Sparse Models", arXiv 2106.04426): a
// token's experts are a fixed function of its token id. No parameters, no gradient; balanced by
// construction on uniformly distributed token ids. ALGORITHMS.md §6.
//
// Dimension letters: N tokens, E routed experts, K experts per token.
//
// The hash (ours; fixed, part of the format: changing it changes every trained hash model).
//   splitmix64(x): x += 0x9E3779B97F4A7C15; x = (x ^ x>>30)·0xBF58476D1CE4E5B9;
//                  x = (x ^ x>>27)·0x94D049BB133111EB; return x ^ x>>31   (x is the state, mod
//                  2^64)
//   state = splitmix64 of the seed (one call from state = seed) XOR the token id (as uint32).
//   Draws r_0, r_1, … are successive splitmix64 outputs from that state.
//   Partial Fisher–Yates over a = [0, 1, …, E−1]: for j = 0..K−1, m = j + (r_j mod (E − j)),
//   swap a[j] and a[m], expert j of the token = a[j]. So the K experts are distinct, and for a
//   uniformly random hash output every ordered K-subset is equally likely (modulo bias ≤ E/2^64).
// Gates: kUniform g = 1/K (default: the block output is the mean of the K experts), kOne g = 1
//   (Roller et al.'s K = 1 layer: the expert output unscaled).
//
// Plan: like topk_route_forward's, dropless: slots t·K + k; rows grouped by expert, token order
// within an expert.
//
// Ownership: caller-owned HashRouterBuffers sized once by resize(); nothing allocates per call.
// Threading: OpenMP inside; call from outside a parallel region; distinct buffers may be used
// concurrently. Results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <vector>

namespace sy {

enum class HashGate { kUniform, kOne };

struct HashRouterOptions {
  int64_t n_experts = 16;  // E
  int64_t top_k = 1;       // K
  uint64_t seed = 0;       // selects one fixed hash of the family; keep it in the model config
  HashGate gate = HashGate::kUniform;
};

// Throws sy::Error unless 1 ≤ K ≤ E < 2^31.
void hash_validate(const HashRouterOptions& o);

// The K experts of one token id, in draw order, into out[K]. scratch[2K] is caller-owned.
// A pure function of (token_id, seed, E, K).
void hash_experts(int32_t token_id, uint64_t seed, int64_t n_experts, int64_t top_k, int32_t* out,
                  int32_t* scratch);

template <typename T>
struct HashRouterBuffers {
  // Validates o; sized for up to n_max tokens.
  void resize(const HashRouterOptions& o, int64_t n_max);

  int64_t n_max = 0, e = 0, k = 0;   // sizes made for
  int64_t n = 0;                     // tokens of the last call
  std::vector<int32_t> expert;       // [N,K] experts of each token
  std::vector<T> gate;               // [N,K] 1/K or 1
  std::vector<int64_t> offsets;      // [E+1] rows of expert i: [offsets[i], offsets[i+1])
  std::vector<int32_t> slot_of_row;  // [N·K] slot t·K + k of each expert-sorted row
  std::vector<int64_t> load;         // [E] assignments per expert
  std::vector<int32_t> scratch;      // [N,2K] Fisher–Yates scratch
};

// token_ids[N] → experts, gates and plan in buf. REQUIRES: buf.resize(o, n_max), n ≤ n_max.
template <typename T>
void hash_route_forward(const HashRouterOptions& o, const int32_t* token_ids, int64_t n,
                        HashRouterBuffers<T>& buf);

}  // namespace sy
