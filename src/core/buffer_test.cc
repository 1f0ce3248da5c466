#include "core/buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

namespace sy {
namespace {

bool aligned_to(const void* p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

template <typename T>
bool all_zero(const Buffer<T>& b) {
  for (std::size_t i = 0; i < b.size(); ++i)
    if (b[i] != T(0)) return false;
  return true;
}

TEST(BufferTest, SmallBuffersAreZeroedAndCacheLineAligned) {
  Buffer<float> b(1000);
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_TRUE(aligned_to(b.data(), kAlign));
  EXPECT_TRUE(all_zero(b));
}

TEST(BufferTest, LargeBuffersStartOnAHugePageAndAreZeroedAndWritable) {
  // 5 MB and a bit: two whole huge pages and a tail of small ones.
  const std::size_t n = (5u << 20) / sizeof(float) + 123;
  Buffer<float> b(n);
  EXPECT_TRUE(aligned_to(b.data(), kHugePage));
  EXPECT_TRUE(all_zero(b));
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<float>(i);
  EXPECT_EQ(b[n - 1], static_cast<float>(n - 1));
  b.zero();
  EXPECT_TRUE(all_zero(b));
}

TEST(BufferTest, MovesAndResetsAcrossTheSizeBoundary) {
  Buffer<double> a(kHugePage / sizeof(double));  // exactly one huge page: mapped
  a[7] = 3.0;
  Buffer<double> b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b[7], 3.0);
  b.reset(10);  // small: from the heap
  EXPECT_EQ(b.size(), 10u);
  EXPECT_TRUE(all_zero(b));
  b.reset(3 * kHugePage / sizeof(double));  // large again
  EXPECT_TRUE(all_zero(b));
  Buffer<double> c(5);
  c = std::move(b);
  EXPECT_EQ(c.size(), 3 * kHugePage / sizeof(double));
  b.reset(0);
  EXPECT_EQ(b.data(), nullptr);
}

// The kernel's THP mode, the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled.
std::string thp_mode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(f, line);
  const auto l = line.find('['), r = line.find(']');
  return l == std::string::npos || r == std::string::npos ? "" : line.substr(l + 1, r - l - 1);
}

// AnonHugePages of the mapping that contains p, in kB (from /proc/self/smaps), or -1.
long anon_huge_kb(const void* p) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool inside = false;
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  while (std::getline(f, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= addr && addr < hi;
      continue;
    }
    if (inside && line.rfind("AnonHugePages:", 0) == 0) return std::stol(line.substr(14));
  }
  return -1;
}

TEST(BufferTest, LargeBuffersAreBackedByHugePagesWhereTheKernelOffersThem) {
  const std::string mode = thp_mode();
  if (mode != "always" && mode != "madvise")
    GTEST_SKIP() << "transparent huge pages are '" << mode << "' here";
  Buffer<float> b(4 * kHugePage / sizeof(float));
  const long kb = anon_huge_kb(b.data());
  EXPECT_GT(kb, 0) << "THP mode " << mode << ": no huge page behind an 8 MB buffer";
}

}  // namespace
}  // namespace sy
