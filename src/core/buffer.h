// Aligned, owning, fixed-size arrays: the only way switchyard allocates bulk memory.
//
// A Buffer is allocated once (outside the step loop) and zero-filled; it never grows. Not
// thread-safe to resize; elements may be written from several threads on disjoint ranges.
//
// Large buffers (at least kHugePage bytes) are mapped on their own, starting on a 2 MB boundary,
// and the kernel is asked to back them with transparent huge pages (madvise MADV_HUGEPAGE,
// which Debian's default THP mode "madvise" honours): one page fault per 2 MB instead of 512,
// and one TLB entry where the step streams the weights, gradients and AdamW moments. Where the
// kernel gives no huge pages (THP "never"), the same mapping runs on 4 KB pages. docs/training.md,
// "Memory".
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace sy {

inline constexpr std::size_t kAlign = 64;
inline constexpr std::size_t kHugePage = std::size_t{2} << 20;

namespace detail {
// `bytes` (> 0, a multiple of kAlign) of zeroed memory, aligned to kAlign — from the mapping
// described above when bytes >= kHugePage (then aligned to kHugePage), else from aligned_alloc.
// Every page is touched (committed) before it returns, so a machine short of memory fails here,
// at start-up, not in the middle of a step. Throws std::bad_alloc.
void* allocate_bulk(std::size_t bytes);
// Frees what allocate_bulk(bytes) returned, with the same bytes.
void release_bulk(void* p, std::size_t bytes) noexcept;
}  // namespace detail

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t n) { reset(n); }
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  // Reallocates to n zeroed elements (discarding the contents).
  void reset(std::size_t n) {
    release();
    if (n == 0) return;
    data_ = static_cast<T*>(detail::allocate_bulk(bytes_for(n)));
    size_ = n;
  }
  void zero() {
    if (size_) std::memset(static_cast<void*>(data_), 0, size_ * sizeof(T));
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  static std::size_t bytes_for(std::size_t n) {
    return (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
  }
  void release() noexcept {
    if (data_ != nullptr) detail::release_bulk(data_, bytes_for(size_));
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

// Rounds a count of elements up so that consecutive sub-arrays of a block stay 64-byte aligned.
template <typename T>
constexpr std::size_t aligned_count(std::size_t n) {
  constexpr std::size_t per = kAlign / sizeof(T);
  return (n + per - 1) / per * per;
}

}  // namespace sy
