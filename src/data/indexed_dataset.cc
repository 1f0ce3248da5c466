#include "data/indexed_dataset.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

namespace sy {

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr uint64_t kVersion = 1;
constexpr int64_t kHeaderSize = 34;  // magic 9 + version 8 + dtype 1 + counts 8 + 8

template <typename T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

bool is_integer_code(uint8_t code) { return code >= 1 && code <= 8 && code != 6 && code != 7; }

// Opens `path` read-only; *size receives its size.
int open_file(const std::string& path, int64_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SY_CHECK(fd >= 0, "{}: file must be readable, got {} (is the dataset prefix right?)", path,
           std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(fmt::format("{}: fstat failed: {}", path, std::strerror(err)));
  }
  *size = static_cast<int64_t>(st.st_size);
  return fd;
}

// The size of the open file now, or -1.
int64_t current_size(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

constexpr int kEndOfFile = -1;

// Reads bytes [offset, offset + bytes) of fd. Returns 0, an errno, or kEndOfFile when the file
// ends first (it shrank since it was opened).
int pread_all(int fd, int64_t offset, int64_t bytes, void* dst) {
  auto* p = static_cast<unsigned char*>(dst);
  while (bytes > 0) {
    const ssize_t got = ::pread(fd, p, static_cast<size_t>(bytes), offset);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return errno;
    if (got == 0) return kEndOfFile;
    p += got;
    offset += got;
    bytes -= got;
  }
  return 0;
}

// Throws for a failed pread_all of bytes [offset, offset + bytes) of `path`, open as fd.
[[noreturn]] void fail_read(int rc, const std::string& path, int fd, int64_t opened_size,
                            int64_t offset, int64_t bytes) {
  if (rc != kEndOfFile)
    fail(fmt::format("{}: read of bytes [{}, {}) must succeed, got {}", path, offset,
                     offset + bytes, std::strerror(rc)));
  const int64_t now = current_size(fd);
  const std::string now_str = now < 0 ? std::string("unknown") : std::to_string(now);
  fail(fmt::format(
      "{}: was truncated while in use ({} bytes when opened, {} now); restore the file and resume",
      path, opened_size, now_str));
}

// The whole file, read once: an index truncated later cannot fault its readers.
std::vector<unsigned char> read_file(const std::string& path) {
  int64_t size = 0;
  const int fd = open_file(path, &size);
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  const int rc = pread_all(fd, 0, size, bytes.data());
  if (rc != 0) {
    try {
      fail_read(rc, path, fd, size, 0, size);
    } catch (...) {
      ::close(fd);
      throw;
    }
  }
  ::close(fd);
  return bytes;
}

void write_all(std::FILE* f, const void* data, size_t n, const std::string& path) {
  if (n == 0) return;
  SY_CHECK(std::fwrite(data, 1, n, f) == n, "{}: write must succeed, got {} (disk full?)", path,
           std::strerror(errno));
}

template <typename T>
void convert(std::span<const int32_t> tokens, char* out, const std::string& path) {
  constexpr int64_t lo = std::numeric_limits<T>::min() < 0 ? 0 : std::numeric_limits<T>::min();
  constexpr int64_t hi = std::numeric_limits<T>::max();
  for (size_t t = 0; t < tokens.size(); ++t) {
    const int64_t v = tokens[t];
    SY_CHECK(v >= lo && v <= hi,
             "{}: token id must be in [{}, {}] for dtype {}, got {} at position {} (choose the "
             "dtype with token_dtype_for_vocab)",
             path, lo, hi, token_dtype_name(static_cast<uint8_t>(token_dtype_of<T>())), v, t);
    const T x = static_cast<T>(v);
    std::memcpy(out + t * sizeof(T), &x, sizeof(T));
  }
}

}  // namespace

int64_t token_dtype_size(uint8_t code) {
  switch (code) {
    case 1:
    case 2:
      return 1;
    case 3:
    case 8:
      return 2;
    case 4:
    case 7:
      return 4;
    case 5:
    case 6:
      return 8;
    default:
      return 0;
  }
}

std::string_view token_dtype_name(uint8_t code) {
  static constexpr std::string_view kNames[] = {"unknown", "uint8",   "int8",    "int16", "int32",
                                                "int64",   "float64", "float32", "uint16"};
  return code <= 8 ? kNames[code] : kNames[0];
}

TokenDtype token_dtype_for_vocab(int64_t vocab_size) {
  return vocab_size < 65500 ? TokenDtype::kU16 : TokenDtype::kI32;
}

// ---------------------------------------------------------------------------------------------
// Writer

IndexedDatasetWriter::IndexedDatasetWriter(std::string prefix, TokenDtype dtype)
    : prefix_(std::move(prefix)), dtype_(dtype) {
  const auto code = static_cast<uint8_t>(dtype);
  SY_CHECK(is_integer_code(code),
           "{}: dataset dtype must be an integer type (uint8, int8, int16, int32, int64, "
           "uint16), got code {} ({})",
           prefix_, code, token_dtype_name(code));
  itemsize_ = token_dtype_size(code);
  const std::string path = prefix_ + ".bin.tmp";
  bin_ = std::fopen(path.c_str(), "wb");
  SY_CHECK(bin_ != nullptr, "{}: file must be writable, got {} (does the directory exist?)", path,
           std::strerror(errno));
  std::setvbuf(bin_, nullptr, _IOFBF, 1 << 20);
}

IndexedDatasetWriter::~IndexedDatasetWriter() {
  if (finalized_) return;
  if (bin_ != nullptr) std::fclose(bin_);
  std::remove((prefix_ + ".bin.tmp").c_str());
  std::remove((prefix_ + ".idx.tmp").c_str());
}

void IndexedDatasetWriter::check_open(std::string_view what) const {
  SY_CHECK(!finalized_, "{}: {} must come before finalize(), got a call after it", prefix_, what);
}

void IndexedDatasetWriter::add_sequence(std::span<const int32_t> tokens) {
  check_open("add_sequence");
  SY_CHECK(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
           "{}: sequence length must fit int32, got {} tokens", prefix_, tokens.size());
  scratch_.resize(tokens.size() * static_cast<size_t>(itemsize_));
  const std::string path = prefix_ + ".bin";
  switch (dtype_) {
    case TokenDtype::kU8:
      convert<uint8_t>(tokens, scratch_.data(), path);
      break;
    case TokenDtype::kI8:
      convert<int8_t>(tokens, scratch_.data(), path);
      break;
    case TokenDtype::kI16:
      convert<int16_t>(tokens, scratch_.data(), path);
      break;
    case TokenDtype::kI32:
      convert<int32_t>(tokens, scratch_.data(), path);
      break;
    case TokenDtype::kI64:
      convert<int64_t>(tokens, scratch_.data(), path);
      break;
    case TokenDtype::kU16:
      convert<uint16_t>(tokens, scratch_.data(), path);
      break;
    default:
      SY_DCHECK(false);
  }
  write_all(bin_, scratch_.data(), scratch_.size(), prefix_ + ".bin.tmp");
  lengths_.push_back(static_cast<int32_t>(tokens.size()));
  tokens_ += static_cast<int64_t>(tokens.size());
}

void IndexedDatasetWriter::end_document() {
  check_open("end_document");
  doc_index_.push_back(static_cast<int64_t>(lengths_.size()));
}

void IndexedDatasetWriter::add_document(std::span<const int32_t> tokens) {
  add_sequence(tokens);
  end_document();
}

void IndexedDatasetWriter::finalize() {
  check_open("finalize");
  SY_CHECK(doc_index_.back() == num_sequences(),
           "{}: every sequence must belong to a document at finalize(), got {} sequence(s) after "
           "the last end_document() (call end_document() first)",
           prefix_, num_sequences() - doc_index_.back());
  const std::string bin_tmp = prefix_ + ".bin.tmp", idx_tmp = prefix_ + ".idx.tmp";
  const int close_rc = std::fclose(bin_);
  bin_ = nullptr;
  SY_CHECK(close_rc == 0, "{}: close must succeed, got {}", bin_tmp, std::strerror(errno));

  std::FILE* idx = std::fopen(idx_tmp.c_str(), "wb");
  SY_CHECK(idx != nullptr, "{}: file must be writable, got {}", idx_tmp, std::strerror(errno));
  std::setvbuf(idx, nullptr, _IOFBF, 1 << 20);
  const uint64_t version = kVersion, n = lengths_.size(), m = doc_index_.size();
  const uint8_t code = static_cast<uint8_t>(dtype_);
  std::vector<int64_t> pointers(lengths_.size());
  int64_t p = 0;
  for (size_t i = 0; i < lengths_.size(); ++i) {
    pointers[i] = p;
    p += int64_t{lengths_[i]} * itemsize_;
  }
  // Little-endian host assumed (x86-64, aarch64), as numpy's native order is in Megatron.
  write_all(idx, kMagic, sizeof(kMagic), idx_tmp);
  write_all(idx, &version, 8, idx_tmp);
  write_all(idx, &code, 1, idx_tmp);
  write_all(idx, &n, 8, idx_tmp);
  write_all(idx, &m, 8, idx_tmp);
  write_all(idx, lengths_.data(), lengths_.size() * 4, idx_tmp);
  write_all(idx, pointers.data(), pointers.size() * 8, idx_tmp);
  write_all(idx, doc_index_.data(), doc_index_.size() * 8, idx_tmp);
  SY_CHECK(std::fclose(idx) == 0, "{}: close must succeed, got {}", idx_tmp, std::strerror(errno));

  const std::string bin_path = prefix_ + ".bin", idx_path = prefix_ + ".idx";
  SY_CHECK(std::rename(bin_tmp.c_str(), bin_path.c_str()) == 0, "{}: rename must succeed, got {}",
           bin_path, std::strerror(errno));
  SY_CHECK(std::rename(idx_tmp.c_str(), idx_path.c_str()) == 0, "{}: rename must succeed, got {}",
           idx_path, std::strerror(errno));
  finalized_ = true;
}

// ---------------------------------------------------------------------------------------------
// Reader

IndexedDataset::IndexedDataset(std::string prefix) : prefix_(std::move(prefix)) {
  idx_bytes_ = read_file(prefix_ + ".idx");
  idx_ = idx_bytes_.data();
  idx_size_ = static_cast<int64_t>(idx_bytes_.size());
  bin_fd_ = open_file(prefix_ + ".bin", &bin_size_);
  try {
    validate();
  } catch (...) {
    ::close(bin_fd_);
    throw;
  }
}

IndexedDataset::~IndexedDataset() { ::close(bin_fd_); }

void IndexedDataset::read_bin(int64_t offset, int64_t bytes, void* dst) const {
  const int rc = pread_all(bin_fd_, offset, bytes, dst);
  if (rc != 0) fail_read(rc, prefix_ + ".bin", bin_fd_, bin_size_, offset, bytes);
}

void IndexedDataset::validate() {
  const std::string idx_path = prefix_ + ".idx", bin_path = prefix_ + ".bin";
  const char* rebuild = "rebuild the dataset";
  SY_CHECK(idx_size_ >= kHeaderSize,
           "{}: file size must be at least the {}-byte MMIDIDX header, got {} bytes (truncated "
           "index; {})",
           idx_path, kHeaderSize, idx_size_, rebuild);
  SY_CHECK(std::memcmp(idx_, kMagic, sizeof(kMagic)) == 0,
           "{}: magic must be \"MMIDIDX\\x00\\x00\" (a Megatron-LM indexed dataset index), got "
           "a different header (is this an .idx from another tool, or the .bin?)",
           idx_path);
  const auto version = load<uint64_t>(idx_ + 9);
  SY_CHECK(version == kVersion,
           "{}: version must be {}, got {} (written by an incompatible tool; {} with "
           "switchyard or Megatron-LM)",
           idx_path, kVersion, version, rebuild);
  const uint8_t code = idx_[17];
  SY_CHECK(is_integer_code(code),
           "{}: dtype code must be an integer token type (1 uint8, 2 int8, 3 int16, 4 int32, "
           "5 int64, 8 uint16), got {} ({}; {})",
           idx_path, code, token_dtype_name(code), rebuild);
  dtype_ = static_cast<TokenDtype>(code);
  itemsize_ = token_dtype_size(code);
  const auto n = load<uint64_t>(idx_ + 18);
  const auto m = load<uint64_t>(idx_ + 26);
  // Sizes in unsigned 128-bit-safe form: counts from a corrupt header can be huge.
  const uint64_t max_count = static_cast<uint64_t>(idx_size_);
  SY_CHECK(n <= max_count && m <= max_count && m >= 1,
           "{}: sequence count {} and document-index count {} must fit the file's {} bytes and "
           "the document index must hold at least its leading 0 (corrupt header; {})",
           idx_path, n, m, idx_size_, rebuild);
  n_seq_ = static_cast<int64_t>(n);
  n_doc_index_ = static_cast<int64_t>(m);
  lengths_off_ = kHeaderSize;
  pointers_off_ = lengths_off_ + 4 * n_seq_;
  docs_off_ = pointers_off_ + 8 * n_seq_;
  const int64_t expected = docs_off_ + 8 * n_doc_index_;
  SY_CHECK(idx_size_ == expected,
           "{}: file size must be {} bytes for {} sequences and {} document indices, got {} "
           "({}; multimodal datasets with sequence modes are not supported; {})",
           idx_path, expected, n_seq_, n_doc_index_, idx_size_,
           idx_size_ < expected ? "truncated" : "trailing bytes", rebuild);

  int64_t end = 0;  // end of the previous sequence in .bin
  n_tokens_ = 0;
  for (int64_t i = 0; i < n_seq_; ++i) {
    const int64_t len = load<int32_t>(idx_ + lengths_off_ + 4 * i);
    const int64_t ptr = load<int64_t>(idx_ + pointers_off_ + 8 * i);
    SY_CHECK(len >= 0, "{}: sequence {} length must be >= 0, got {} ({})", idx_path, i, len,
             rebuild);
    SY_CHECK(ptr >= end && ptr % itemsize_ == 0,
             "{}: sequence {} pointer must be a multiple of {} and >= {} (the end of sequence "
             "{}), got {} (corrupt index; {})",
             idx_path, i, itemsize_, end, i - 1, ptr, rebuild);
    SY_CHECK(ptr <= bin_size_ && len * itemsize_ <= bin_size_ - ptr,
             "{}: sequence {} (bytes [{}, {})) must lie inside the file of {} bytes, got past "
             "its end (truncated .bin or an .idx from another dataset; {})",
             bin_path, i, ptr, static_cast<uint64_t>(ptr) + static_cast<uint64_t>(len * itemsize_),
             bin_size_, rebuild);  // unsigned: ptr may be INT64_MAX here, and ptr >= 0
    end = ptr + len * itemsize_;
    n_tokens_ += len;
  }
  SY_CHECK(end == bin_size_,
           "{}: file size must be {} bytes (the end of the last sequence), got {} (the .bin does "
           "not belong to this .idx; {})",
           bin_path, end, bin_size_, rebuild);

  int64_t prev = 0;
  for (int64_t d = 0; d < n_doc_index_; ++d) {
    const int64_t v = load<int64_t>(idx_ + docs_off_ + 8 * d);
    SY_CHECK(d > 0 || v == 0, "{}: document index 0 must be 0, got {} ({})", idx_path, v, rebuild);
    SY_CHECK(v >= prev && v <= n_seq_,
             "{}: document index {} must be in [{}, {}] (non-decreasing, at most the sequence "
             "count), got {} ({})",
             idx_path, d, prev, n_seq_, v, rebuild);
    prev = v;
  }
  SY_CHECK(prev == n_seq_,
           "{}: last document index must be the sequence count {}, got {} (sequences outside "
           "any document; {})",
           idx_path, n_seq_, prev, rebuild);
}

int64_t IndexedDataset::sequence_length(int64_t i) const {
  SY_CHECK(i >= 0 && i < n_seq_, "{}: sequence index must be in [0, {}), got {}", prefix_, n_seq_,
           i);
  return load<int32_t>(idx_ + lengths_off_ + 4 * i);
}

int64_t IndexedDataset::sequence_pointer(int64_t i) const {
  SY_CHECK(i >= 0 && i < n_seq_, "{}: sequence index must be in [0, {}), got {}", prefix_, n_seq_,
           i);
  return load<int64_t>(idx_ + pointers_off_ + 8 * i);
}

std::pair<int64_t, int64_t> IndexedDataset::document_range(int64_t d) const {
  SY_CHECK(d >= 0 && d < num_documents(), "{}: document index must be in [0, {}), got {}", prefix_,
           num_documents(), d);
  return {load<int64_t>(idx_ + docs_off_ + 8 * d), load<int64_t>(idx_ + docs_off_ + 8 * (d + 1))};
}

namespace {
// Tokens of a narrower or wider dtype are read through a buffer of this many bytes.
constexpr int64_t kReadChunk = 16384;

template <typename T>
void widen(const unsigned char* src, int64_t count, int32_t* out, const std::string& where) {
  for (int64_t t = 0; t < count; ++t) {
    const T v = load<T>(src + t * static_cast<int64_t>(sizeof(T)));
    if constexpr (sizeof(T) > 4) {
      SY_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(),
               "{}: token must fit int32, got {}", where, v);
    }
    out[t] = static_cast<int32_t>(v);  // NOLINT(bugprone-signed-char-misuse): int8 ids are signed
  }
}
}  // namespace

void IndexedDataset::read(int64_t i, int64_t offset, int64_t count, int32_t* out) const {
  const int64_t len = sequence_length(i);
  SY_CHECK(offset >= 0 && count >= 0 && offset <= len && count <= len - offset,
           "{}: token range [{}, {}) of sequence {} must lie within its {} tokens", prefix_, offset,
           offset + count, i, len);
  if (count == 0) return;
  const int64_t start = sequence_pointer(i) + offset * itemsize_;
  if (dtype_ == TokenDtype::kI32) {
    read_bin(start, count * 4, out);
    return;
  }
  unsigned char buf[kReadChunk];  // per call: read() may run on several threads
  const std::string& where = prefix_;
  for (int64_t done = 0; done < count;) {
    const int64_t n = std::min(count - done, kReadChunk / itemsize_);
    read_bin(start + done * itemsize_, n * itemsize_, buf);
    int32_t* dst = out + done;
    switch (dtype_) {
      case TokenDtype::kU8:
        widen<uint8_t>(buf, n, dst, where);
        break;
      case TokenDtype::kI8:
        widen<int8_t>(buf, n, dst, where);
        break;
      case TokenDtype::kI16:
        widen<int16_t>(buf, n, dst, where);
        break;
      case TokenDtype::kI64:
        widen<int64_t>(buf, n, dst, where);
        break;
      case TokenDtype::kU16:
        widen<uint16_t>(buf, n, dst, where);
        break;
      default:
        SY_DCHECK(false);
    }
    done += n;
  }
}

std::vector<int32_t> IndexedDataset::read(int64_t i) const {
  std::vector<int32_t> out(static_cast<size_t>(sequence_length(i)));
  read(i, 0, static_cast<int64_t>(out.size()), out.data());
  return out;
}

}  // namespace sy
