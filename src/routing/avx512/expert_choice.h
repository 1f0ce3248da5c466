// Internal to src/routing: the AVX-512 path of the unshuffled Expert Choice forward for float,
// route_unshuffled_avx512: the scores computed transposed, then per expert and group the k-th
// largest by radix selection and one vectorised pass taking the rows. The scalar reference is the
// generic loop of ec_route_forward (softmax_rows, nth_element on each expert's column, the rows in
// token order); this path gives the same scores, rows, gates and kth_value, for any thread count.
//
// Included once, by expert_choice.cc inside `#if defined(__AVX512F__)`: its kernels live in that
// file's anonymous namespace.
#pragma once

#include <bit>
#include <cstdint>

#include "core/vec_math.h"
#include "routing/expert_choice.h"
#include "routing/kth_select.h"
#include "routing/transposed.h"

namespace sy {
// NOLINTBEGIN(google-build-namespaces, misc-definitions-in-headers): expert_choice.cc's own
// definitions (see above), left as they were there: made `inline`, they might be inlined
// differently.
namespace {

// Expert i's rows of one group of tokens, from c of its scores in token order (v[j] = S[t_j, i]
// with t_j = start + (kPositions ? pos[j] : j)): the tokens with S > kth, and the first `ties`
// tokens with S == kth, in token order, with their gates. Returns the rows written (k = above +
// ties).
template <bool kPositions>
inline int64_t take_rows(const float* v, const int32_t* pos, int64_t c, int64_t start, float kth,
                         int64_t ties, int32_t* out_token, float* out_gate) {
  const __m512 vk = _mm512_set1_ps(kth);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i base = _mm512_set1_epi32(static_cast<int32_t>(start));
  int64_t w = 0, j = 0;
  for (; j + 16 <= c; j += 16) {
    const __m512 x = _mm512_loadu_ps(v + j);
    uint32_t take = _mm512_cmp_ps_mask(x, vk, _CMP_GT_OQ);
    for (uint32_t eq = _mm512_cmp_ps_mask(x, vk, _CMP_EQ_OQ); eq != 0 && ties > 0; --ties) {
      take |= eq & (~eq + 1);  // the lowest remaining tied lane
      eq &= eq - 1;
    }
    const auto sel = static_cast<__mmask16>(take);
    const auto fill = static_cast<__mmask16>((1u << std::popcount(take)) - 1);
    const __m512i tokens =
        kPositions ? _mm512_add_epi32(_mm512_loadu_si512(pos + j), base)
                   : _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(start + j)));
    // Masked stores: the next expert's rows follow and may be written by another thread.
    _mm512_mask_storeu_epi32(out_token + w, fill, _mm512_maskz_compress_epi32(sel, tokens));
    _mm512_mask_storeu_ps(out_gate + w, fill, _mm512_maskz_compress_ps(sel, x));
    w += std::popcount(take);
  }
  for (; j < c; ++j) {
    if (v[j] > kth || (v[j] == kth && ties-- > 0)) {
      out_token[w] = static_cast<int32_t>(start + (kPositions ? pos[j] : j));
      out_gate[w++] = v[j];
    }
  }
  return w;
}

// One group's rows of an expert from its column segment v[0..tg) (tokens start..): the k-th
// largest S into kth, the rows into out_token/out_gate; returns k. Usually the k largest lie above
// a sampled bound with a few hundred others (top_candidates): then the selection and the take
// pass run on those, rather than on the whole segment twice. Kept out of line: inlined, it made
// the caller's other path (k a large share of the group, E = 16) 5–8% slower.
[[gnu::noinline]] int64_t select_candidates(const float* v, int64_t tg, int64_t start, int64_t k,
                                            float* cand, int32_t* pos, float* work, uint32_t* hist,
                                            int32_t* out_token, float* out_gate, float& kth) {
  const int64_t c = detail::top_candidates(v, tg, k - 1, cand, pos);
  if (c < 0) return -1;
  const detail::KthResult kr = detail::rth_largest_radix(cand, c, k - 1, work, hist);
  kth = kr.value;
  return take_rows<true>(cand, pos, c, start, kth, k - kr.above, out_token, out_gate);
}

inline int64_t select_group(const float* v, int64_t tg, int64_t start, int64_t k, float* cand,
                            int32_t* pos, float* work, uint32_t* hist, int32_t* out_token,
                            float* out_gate, float& kth) {
  // The inline test (top_candidates repeats it for its other callers) spares the E = 16 shapes
  // the out-of-line call: without it they measured 2–5% slower.
  if (detail::top_candidates_apply(tg, k - 1)) {
    const int64_t w =
        select_candidates(v, tg, start, k, cand, pos, work, hist, out_token, out_gate, kth);
    if (w >= 0) return w;
  }
  const detail::KthResult kr = detail::rth_largest_radix(v, tg, k - 1, cand, hist);
  kth = kr.value;
  return take_rows<false>(v, nullptr, tg, start, kth, k - kr.above, out_token, out_gate);
}

// The unshuffled training forward for float: S computed transposed, scores_t[E,ld] (and copied
// back to the row-major buf.scores, the same floats as softmax_rows), then per expert and group
// the k-th largest value by radix selection (kth_select.h) on the contiguous column segment (its
// candidates in scratch), and one vectorised pass in token order taking the tokens above it and
// the first ties. The same rows, gates and kth_value as the generic path, for any thread count.
void route_unshuffled_avx512(const ExpertChoiceOptions& o, const float* z, int64_t n, int64_t G,
                             ExpertChoiceBuffers<float>& buf) {
  const int64_t E = o.n_experts;
  float* S = buf.scores.data();
  float* ST = detail::align64(buf.scores_t.data());
  const int64_t blocks = (n + 15) / 16, ld = detail::padded_ld(n);
#pragma omp parallel
  {
    alignas(64) uint32_t hist[detail::kRadixBins];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      detail::scores_block_transposed(z, n, E, false, b * 16, ld, ST, S);
    }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < E; ++i) {
      const float* col = ST + i * ld;
      // Scratch: the candidates' scores in the backward pass's buffer (overwritten there), their
      // positions, and the radix selection's work space.
      float* cand = buf.dscores.data() + i * G;
      int32_t* pos = buf.candidates.data() + i * G;
      float* work = buf.work.data() + i * G;
      const int64_t row0 = buf.offsets[i];
      double kth_acc = 0;
      float kth = 0.f;
      int64_t w = 0;
      for (int64_t start = 0; start < n; start += G) {
        const int64_t tg = std::min(G, n - start);
        const int64_t k = ec_capacity(o, tg);
        int32_t* out_token = buf.token_of_row.data() + row0 + w;
        float* out_gate = buf.gate_of_row.data() + row0 + w;
        w += select_group(col + start, tg, start, k, cand, pos, work, hist, out_token, out_gate,
                          kth);
        kth_acc += static_cast<double>(kth) * static_cast<double>(tg);
      }
      buf.kth_value[i] = G >= n ? kth : static_cast<float>(kth_acc / static_cast<double>(n));
    }
  }
}

}  // namespace
// NOLINTEND(google-build-namespaces, misc-definitions-in-headers)
}  // namespace sy
