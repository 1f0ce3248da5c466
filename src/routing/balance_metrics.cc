// The balance metrics of include/switchyard/routing.h (ALGORITHMS.md §7).
#include <algorithm>

#include "switchyard/routing.h"

namespace sy {

double maxvio(const int64_t* load, int64_t n) {
  int64_t total = 0, mx = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += load[i];
    mx = std::max(mx, load[i]);
  }
  if (total == 0) return 0;
  return static_cast<double>(mx) * n / static_cast<double>(total) - 1.0;
}

double ep_imbalance(const int64_t* load, int64_t n, int64_t r) {
  const int64_t per = n / r;
  int64_t total = 0, mx = 0;
  for (int64_t k = 0; k < r; ++k) {
    int64_t s = 0;
    for (int64_t i = k * per; i < (k + 1) * per; ++i) s += load[i];
    total += s;
    mx = std::max(mx, s);
  }
  return total == 0 ? 1.0 : static_cast<double>(mx) * r / static_cast<double>(total);
}

}  // namespace sy
