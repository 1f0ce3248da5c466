// Megatron-LM indexed datasets (`MMIDIDX`): token sequences in `<prefix>.bin`, their index in
// `<prefix>.idx`, byte-compatible with megatron/core/datasets/indexed_dataset.py, so data
// prepared for Megatron reads here and ours reads there.
//
// `.idx` layout (little-endian, packed, no padding):
//   offset 0    9 bytes   magic "MMIDIDX\x00\x00"
//   offset 9    u64       version, always 1
//   offset 17   u8        dtype code of the tokens in .bin (TokenDtype below)
//   offset 18   u64       n = sequence count
//   offset 26   u64       m = document-index count = documents + 1 (the leading 0 is stored)
//   offset 34   i32[n]    sequence lengths, in tokens
//   then        i64[n]    sequence pointers: byte offset of each sequence in .bin
//   then        i64[m]    document indices: document d is sequences [idx[d], idx[d+1]);
//                         idx[0] = 0, non-decreasing, idx[m-1] = n
// `.bin`: the sequences' tokens back to back in the dtype, nothing else. Megatron's writer
// stores pointers as the running sum of length * itemsize, so the last sequence ends at EOF.
// Multimodal datasets (an extra i8[n] of modes after the document indices) are not supported.
//
// All errors are sy::Error, name the file and say what to do.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"

namespace sy {

// Megatron's DType codes. Only the integer ones are token types here.
enum class TokenDtype : uint8_t {
  kU8 = 1,
  kI8 = 2,
  kI16 = 3,
  kI32 = 4,
  kI64 = 5,
  kF64 = 6,
  kF32 = 7,
  kU16 = 8,
};

// Bytes per element; 0 for a code that is not a Megatron dtype.
int64_t token_dtype_size(uint8_t code);
// "uint16", "int32", ... ("unknown" for a code outside 1..8).
std::string_view token_dtype_name(uint8_t code);
// The dtype Megatron's preprocessing picks for a vocabulary (DType.optimal_dtype):
// uint16 when vocab_size < 65500, else int32.
TokenDtype token_dtype_for_vocab(int64_t vocab_size);

// The C++ element type stored for an integer dtype.
template <typename T>
constexpr TokenDtype token_dtype_of() {
  if constexpr (std::is_same_v<T, uint8_t>)
    return TokenDtype::kU8;
  else if constexpr (std::is_same_v<T, int8_t>)
    return TokenDtype::kI8;
  else if constexpr (std::is_same_v<T, int16_t>)
    return TokenDtype::kI16;
  else if constexpr (std::is_same_v<T, int32_t>)
    return TokenDtype::kI32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return TokenDtype::kI64;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return TokenDtype::kU16;
  else
    static_assert(sizeof(T) == 0, "no Megatron token dtype for this type");
}

// Writes one dataset. Tokens stream into `<prefix>.bin.tmp` as they are added; finalize()
// writes `<prefix>.idx.tmp` and renames both into place (.bin first, .idx last), so a dataset
// whose .idx exists is complete. Destroying an unfinalized writer removes the temp files.
// Owns its file; not thread-safe.
class IndexedDatasetWriter {
 public:
  // REQUIRES: dtype is an integer dtype.
  IndexedDatasetWriter(std::string prefix, TokenDtype dtype);
  ~IndexedDatasetWriter();
  IndexedDatasetWriter(const IndexedDatasetWriter&) = delete;
  IndexedDatasetWriter& operator=(const IndexedDatasetWriter&) = delete;

  // Appends one sequence to the current document (Megatron's add_item). Every token must be
  // >= 0 and fit the dtype.
  void add_sequence(std::span<const int32_t> tokens);
  // Closes the current document (Megatron's end_document); a document may be empty.
  void end_document();
  // One document made of one sequence: add_sequence(tokens) then end_document().
  void add_document(std::span<const int32_t> tokens);
  // Writes the index and publishes both files. REQUIRES: no sequence after the last
  // end_document(). The writer is unusable afterwards.
  void finalize();

  int64_t num_sequences() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t num_documents() const { return static_cast<int64_t>(doc_index_.size()) - 1; }
  int64_t num_tokens() const { return tokens_; }

 private:
  void check_open(std::string_view what) const;
  std::string prefix_;
  TokenDtype dtype_;
  int64_t itemsize_;
  std::FILE* bin_ = nullptr;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> doc_index_{0};
  std::vector<char> scratch_;  // one sequence converted to the dtype
  int64_t tokens_ = 0;
  bool finalized_ = false;
};

// An open dataset whose index has been fully validated against both files: magic, version,
// dtype code (integer types only), .idx size equal to the size its counts imply, every
// sequence length >= 0, pointers aligned to the token size, increasing without overlap and
// inside .bin, the last sequence ending at the end of .bin, document indices starting at 0,
// non-decreasing and ending at the sequence count.
// The index is read into memory once (and read with unaligned loads: its arrays start at byte
// 34); tokens are read from .bin with pread() on demand, not through a memory mapping, so a
// .bin truncated while in use is an error naming it rather than a SIGBUS. Owns the index and
// the .bin descriptor. After construction every method is const and may be called from several
// threads at once.
class IndexedDataset {
 public:
  explicit IndexedDataset(std::string prefix);
  ~IndexedDataset();
  IndexedDataset(const IndexedDataset&) = delete;
  IndexedDataset& operator=(const IndexedDataset&) = delete;

  const std::string& prefix() const { return prefix_; }
  TokenDtype dtype() const { return dtype_; }
  int64_t num_sequences() const { return n_seq_; }
  int64_t num_documents() const { return n_doc_index_ - 1; }
  int64_t num_tokens() const { return n_tokens_; }

  int64_t sequence_length(int64_t i) const;
  int64_t sequence_pointer(int64_t i) const;  // byte offset in .bin
  // Sequences [first, last) of document d.
  std::pair<int64_t, int64_t> document_range(int64_t d) const;

  // The tokens of sequence i in their stored type. REQUIRES: token_dtype_of<T>() == dtype().
  template <typename T>
  std::vector<T> sequence(int64_t i) const {
    SY_CHECK(token_dtype_of<T>() == dtype_,
             "{}.bin: requested element type must be the dataset's dtype {}, got {}", prefix_,
             token_dtype_name(static_cast<uint8_t>(dtype_)),
             token_dtype_name(static_cast<uint8_t>(token_dtype_of<T>())));
    std::vector<T> out(static_cast<size_t>(sequence_length(i)));
    read_bin(sequence_pointer(i), static_cast<int64_t>(out.size() * sizeof(T)), out.data());
    return out;
  }

  // Copies tokens [offset, offset + count) of sequence i into out as int32, whatever the dtype
  // (an int64 token that does not fit int32 is an error).
  void read(int64_t i, int64_t offset, int64_t count, int32_t* out) const;
  std::vector<int32_t> read(int64_t i) const;

 private:
  void validate();
  // Reads bytes [offset, offset + bytes) of .bin into dst; a short read is the "truncated while
  // in use" error.
  void read_bin(int64_t offset, int64_t bytes, void* dst) const;
  std::string prefix_;
  TokenDtype dtype_ = TokenDtype::kI32;
  int64_t itemsize_ = 4;
  std::vector<unsigned char> idx_bytes_;  // the whole .idx
  const unsigned char* idx_ = nullptr;    // idx_bytes_.data()
  int bin_fd_ = -1;                       // .bin, open for pread
  int64_t idx_size_ = 0, bin_size_ = 0;
  int64_t n_seq_ = 0, n_doc_index_ = 0, n_tokens_ = 0;
  int64_t lengths_off_ = 0, pointers_off_ = 0, docs_off_ = 0;  // byte offsets in .idx
};

}  // namespace sy
