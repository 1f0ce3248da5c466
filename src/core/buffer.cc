#include "core/buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace sy::detail {
namespace {

std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// A mapping of `length` bytes (a multiple of the page size) starting on a kHugePage boundary: map
// kHugePage more than asked, then unmap the slack before and after the aligned start.
void* map_aligned(std::size_t length) {
  const std::size_t over = length + kHugePage;
  void* raw = mmap(nullptr, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = round_up(start, kHugePage);
  const std::size_t head = aligned - start, tail = over - head - length;
  if (head > 0) munmap(raw, head);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + length), tail);
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

void* allocate_bulk(std::size_t bytes) {
  if (bytes < kHugePage) {
    void* p = std::aligned_alloc(kAlign, bytes);
    if (p == nullptr) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    return p;
  }
  const std::size_t length = round_up(bytes, page_size());
  void* p = map_aligned(length);
  // Advice, not a requirement: without THP (or with it set to "never") this fails or does
  // nothing, and the mapping stays on small pages.
  madvise(p, length, MADV_HUGEPAGE);
  // An anonymous mapping reads as zeros; one write per page commits it (a huge page's first
  // write faults in all of its 2 MB).
  auto* bytes_p = static_cast<volatile unsigned char*>(p);
  for (std::size_t i = 0; i < length; i += page_size()) bytes_p[i] = 0;
  return p;
}

void release_bulk(void* p, std::size_t bytes) noexcept {
  if (bytes < kHugePage) {
    std::free(p);
    return;
  }
  munmap(p, round_up(bytes, page_size()));
}

}  // namespace sy::detail
