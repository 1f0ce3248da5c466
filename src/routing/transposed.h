// Internal to src/routing: router scores in the transposed layout sT[E, ld] (sT[i·ld + t] = s[t,i],
// ld = padded_ld(N) ≥ N), where an expert's column is contiguous and 16 consecutive tokens are one
// vector. Expert Choice and BIP select over columns; BIP's row pass runs on 16 tokens at a time.
//
// Dimension letters: N tokens, E experts.
//
// Threading: plain functions over caller-owned buffers; threads may work on disjoint token ranges
// of the same matrices concurrently.
#pragma once

#include <cstdint>

namespace sy::detail {

// The leading dimension of a transposed [E,N] copy: N rounded up to whole 64-byte lines, and to an
// odd number of them. With a power-of-two N the E rows would otherwise start in the same L1 cache
// set (N = 2048: 8 KiB apart), and walking down a column of 16 tokens would thrash one set.
inline int64_t padded_ld(int64_t n) {
  const int64_t lines = (n + 15) / 16;
  return 16 * (lines | 1);
}

// p rounded up to a 64-byte boundary: transposed matrices start on a cache line, so that the
// 16-float rows of a block are whole lines (an unaligned store of 64 bytes writes two). Buffers
// that hold one are allocated kAlignSlack elements longer.
constexpr int64_t kAlignSlack = 16;
template <typename T>
inline T* align64(T* p) {
  const auto misalign = reinterpret_cast<uintptr_t>(p) & 63;
  return p + (misalign == 0 ? 0 : (64 - misalign) / sizeof(T));  // T is float/double: exact
}

// dst[c·ld + r] = src[r·cols + c] for r in [r0, r1), c in [0, cols): rows r0..r1 of a row-major
// [rows, cols] matrix written as columns of its transpose, whose leading dimension is ld (≥ r1).
// Threads may transpose disjoint row ranges concurrently.
template <typename T>
inline void transpose_rows(const T* src, int64_t ld, int64_t cols, int64_t r0, int64_t r1, T* dst) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ld + r] = src[r * cols + c];
}

}  // namespace sy::detail

// Float on AVX-512: transpose_rows<float> by 16×16 blocks in registers, and the kernels that
// compute scores in this layout (untranspose_block, scores_block_transposed).
#if defined(__AVX512F__)
#include "routing/avx512/transposed.h"
#endif
