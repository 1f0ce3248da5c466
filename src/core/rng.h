// Counter-free, serialisable random numbers: SplitMix64 seeding a xoshiro256** stream.
//
// An Rng is a value (32 bytes of state): copy it to fork, save state() in checkpoints to resume
// bit-exactly. Not thread-safe; give each thread its own Rng (e.g. Rng(seed).fork(i)).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace sy {

// SplitMix64's finaliser: a bijective 64-bit mix, for deriving seeds from (seed, index) pairs.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_state(seed); }

  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 24 bits (float) / 53 bits (double).
  float uniform_f() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift, negligible bias for n << 2^64).
  uint64_t below(uint64_t n) {
    // NOLINTNEXTLINE(modernize-use-using): __extension__ (quiet under -Wpedantic) needs typedef
    __extension__ typedef unsigned __int128 u128;
    return static_cast<uint64_t>((static_cast<u128>(next_u64()) * n) >> 64);
  }
  // Standard normal (Box-Muller, one value per call; deterministic).
  double normal() {
    double u1 = uniform();
    double u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  // An independent stream derived from this one's seed material and an index.
  Rng fork(uint64_t index) const {
    Rng r(0);
    uint64_t x = s_[0] ^ (index * 0x9E3779B97F4A7C15ull) ^ s_[3];
    r.seed_state(x);
    return r;
  }

  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  void seed_state(uint64_t seed) {
    for (auto& v : s_) v = splitmix(seed);
  }
  std::array<uint64_t, 4> s_{};
};

}  // namespace sy
