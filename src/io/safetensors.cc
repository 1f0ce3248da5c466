#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace sy::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors is little-endian; a big-endian host would need byte swaps");

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeEntry {
  const char* name;
  int64_t size;
  bool writable;
};
constexpr DtypeEntry kDtypes[] = {
    {"F32", 4, true},  {"F64", 8, true},   {"I32", 4, true},   {"I64", 8, true},  {"U8", 1, true},
    {"F16", 2, false}, {"BF16", 2, false}, {"I8", 1, false},   {"I16", 2, false}, {"U16", 2, false},
    {"U32", 4, false}, {"U64", 8, false},  {"BOOL", 1, false},
};

const DtypeEntry* find_dtype(const std::string& dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.name) return &d;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// numel(shape) * elem with overflow detection; returns false on overflow or a negative dim.
bool byte_count(const std::vector<int64_t>& shape, int64_t elem, int64_t* out) {
  int64_t n = elem;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  *out = n;
  return true;
}

std::string errno_str() { return std::strerror(errno); }

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};

// Reads a JSON integer that must fit in [0, INT64_MAX].
bool json_nonneg_int(const nlohmann::json& j, int64_t* out) {
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
    return true;
  }
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    *out = v;
    return true;
  }
  return false;
}

}  // namespace

int64_t dtype_size(const std::string& dtype, const std::string& where) {
  const DtypeEntry* d = find_dtype(dtype);
  if (!d) {
    fail(
        fmt::format("{}: dtype must be one of F32, F64, I32, I64, U8, F16, BF16, I8, I16, U16, "
                    "U32, U64, BOOL, got '{}'",
                    where, dtype));
  }
  return d->size;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Validate everything before touching the file.
  std::set<std::string> seen;
  std::vector<std::pair<const TensorView*, int64_t>> order;  // tensor, element size
  for (const TensorView& t : tensors) {
    SY_CHECK(!t.name.empty(), "{}: tensor name must be non-empty", path);
    SY_CHECK(t.name != "__metadata__", "{}: tensor name must not be '__metadata__' (reserved)",
             path);
    SY_CHECK(seen.insert(t.name).second, "{}: tensor names must be unique, got '{}' twice", path,
             t.name);
    const DtypeEntry* d = find_dtype(t.dtype);
    SY_CHECK(d && d->writable,
             "{}: tensor {} dtype must be one of F32, F64, I32, I64, U8, got '{}'", path, t.name,
             t.dtype);
    int64_t nbytes = 0;
    SY_CHECK(byte_count(t.shape, d->size, &nbytes),
             "{}: tensor {} shape must have non-negative dims with a size below 2^63, got {}", path,
             t.name, shape_str(t.shape));
    SY_CHECK(nbytes == 0 || t.data != nullptr, "{}: tensor {} data must be non-null, got nullptr",
             path, t.name);
    order.emplace_back(&t, d->size);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    return a.first->name < b.first->name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  int64_t offset = 0;
  std::vector<int64_t> sizes;
  for (const auto& [t, elem] : order) {
    int64_t nbytes = 0;
    byte_count(t->shape, elem, &nbytes);
    auto& e = header[t->name] = nlohmann::ordered_json::object();
    e["dtype"] = t->dtype;
    e["shape"] = t->shape;
    e["data_offsets"] = {offset, offset + nbytes};
    offset += nbytes;
    sizes.push_back(nbytes);
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(fmt::format("{}: tensor names and metadata must be valid UTF-8, got {}", path, e.what()));
  }
  json.append((8 - json.size() % 8) % 8, ' ');  // 8 + N, hence the data buffer, 8-aligned

  // Not truncated when opened: an existing file's cached pages are overwritten in place (a
  // recycled checkpoint's, CheckpointWriter), then the file is cut to its new length. Fresh
  // page-cache memory can cost far more than the copy (docs/training.md, "Recycling").
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  SY_CHECK(fd >= 0, "{}: cannot open for writing: {}", path, errno_str());
  std::unique_ptr<FILE, FileCloser> f(::fdopen(fd, "wb"));
  if (!f) ::close(fd);
  SY_CHECK(f, "{}: cannot open for writing: {}", path, errno_str());
  std::vector<char> iobuf(1 << 20);
  std::setvbuf(f.get(), iobuf.data(), _IOFBF, iobuf.size());
  const uint64_t n = json.size();
  bool ok = std::fwrite(&n, 8, 1, f.get()) == 1;
  ok = ok && std::fwrite(json.data(), 1, json.size(), f.get()) == json.size();
  for (size_t i = 0; ok && i < order.size(); ++i) {
    const auto nb = static_cast<size_t>(sizes[i]);
    ok = nb == 0 || std::fwrite(order[i].first->data, 1, nb, f.get()) == nb;
  }
  ok = ok && std::fflush(f.get()) == 0;
  SY_CHECK(ok, "{}: write failed: {}", path, errno_str());
  const auto length = static_cast<off_t>(8 + json.size() + static_cast<size_t>(offset));
  SY_CHECK(::ftruncate(fd, length) == 0, "{}: cannot set the file's length to {} bytes: {}", path,
           length, errno_str());
  SY_CHECK(std::fclose(f.release()) == 0, "{}: close failed: {}", path, errno_str());
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SY_CHECK(fd_ >= 0, "{}: cannot open safetensors file: {}", path, errno_str());
  try {
    parse_header();
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() { ::close(fd_); }

void SafetensorsReader::pread_exact(void* dst, int64_t nbytes, int64_t offset) const {
  auto* p = static_cast<char*>(dst);
  while (nbytes > 0) {
    ssize_t got = ::pread(fd_, p, static_cast<size_t>(nbytes), offset);
    if (got < 0 && errno == EINTR) continue;
    SY_CHECK(got >= 0, "{}: read failed at byte {}: {}", path_, offset, errno_str());
    SY_CHECK(got > 0, "{}: unexpected end of file at byte {}; the file shrank after it was opened",
             path_, offset);
    p += got;
    nbytes -= got;
    offset += got;
  }
}

void SafetensorsReader::parse_header() {
  const std::string hint = "; the file is truncated, corrupt or not safetensors";
  struct stat st {};
  SY_CHECK(::fstat(fd_, &st) == 0, "{}: stat failed: {}", path_, errno_str());
  const int64_t file_size = st.st_size;
  SY_CHECK(file_size >= 8,
           "{}: file size must be at least 8 bytes (the header size field), got {}{}", path_,
           file_size, hint);
  uint64_t n = 0;
  pread_exact(&n, 8, 0);
  SY_CHECK(n <= static_cast<uint64_t>(file_size - 8),
           "{}: header size must be at most {} bytes (the file is {} bytes), got {}{}", path_,
           file_size - 8, file_size, n, hint);
  SY_CHECK(n <= kMaxHeaderBytes, "{}: header size must be at most {} bytes, got {}{}", path_,
           kMaxHeaderBytes, n, hint);
  std::string text(n, '\0');
  pread_exact(text.data(), static_cast<int64_t>(n), 8);
  data_start_ = 8 + static_cast<int64_t>(n);
  const int64_t buffer_size = file_size - data_start_;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number beyond double's range (1e999).
    fail(fmt::format("{}: header must be valid JSON, got: {}{}", path_, e.what(), hint));
  }
  SY_CHECK(header.is_object(), "{}: header must be a JSON object, got {}{}", path_,
           header.type_name(), hint);

  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      SY_CHECK(v.is_object(), "{}: __metadata__ must be an object of strings, got {}", path_,
               v.type_name());
      for (const auto& [k, s] : v.items()) {
        SY_CHECK(s.is_string(), "{}: __metadata__[{}] must be a string, got {}", path_, k,
                 s.type_name());
        metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    const std::string where = fmt::format("{}: tensor {}", path_, name);
    SY_CHECK(v.is_object(), "{} must be an object with dtype, shape, data_offsets, got {}", where,
             v.type_name());
    TensorInfo t;
    const auto dt = v.find("dtype");
    SY_CHECK(dt != v.end() && dt->is_string(), "{} dtype must be a string, got {}", where,
             dt == v.end() ? "nothing" : dt->dump());
    t.dtype = dt->get<std::string>();
    const int64_t elem = dtype_size(t.dtype, where);

    const auto sh = v.find("shape");
    SY_CHECK(sh != v.end() && sh->is_array(), "{} shape must be an array, got {}", where,
             sh == v.end() ? "nothing" : sh->dump());
    for (const auto& d : *sh) {
      int64_t x = 0;
      SY_CHECK(json_nonneg_int(d, &x), "{} shape must hold non-negative integers, got {}", where,
               sh->dump());
      t.shape.push_back(x);
    }
    const auto off = v.find("data_offsets");
    SY_CHECK(off != v.end() && off->is_array() && off->size() == 2 &&
                 json_nonneg_int((*off)[0], &t.begin) && json_nonneg_int((*off)[1], &t.end),
             "{} data_offsets must be [begin, end] with non-negative integers, got {}", where,
             off == v.end() ? "nothing" : off->dump());
    SY_CHECK(t.begin <= t.end && t.end <= buffer_size,
             "{} data_offsets must lie within the {}-byte data buffer, got [{}, {}]{}", where,
             buffer_size, t.begin, t.end, hint);
    int64_t want = 0;
    SY_CHECK(byte_count(t.shape, elem, &want) && want == t.end - t.begin,
             "{} data_offsets must span numel({}) x {} bytes ({}) = {} bytes, got [{}, {}] ({} "
             "bytes){}",
             where, shape_str(t.shape), elem, t.dtype, want, t.begin, t.end, t.end - t.begin, hint);
    tensors_.emplace(name, std::move(t));
  }

  // Ranges must tile the buffer exactly: sort by range, then each starts where the last ended.
  std::vector<std::pair<const std::string*, const TensorInfo*>> by_offset;
  for (const auto& [name, t] : tensors_) by_offset.emplace_back(&name, &t);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
  });
  int64_t pos = 0;
  const std::string* prev = nullptr;
  for (const auto& [name, t] : by_offset) {
    SY_CHECK(t->begin >= pos,
             "{}: tensor {} data_offsets [{}, {}] must not overlap tensor {}, "
             "which ends at {}{}",
             path_, *name, t->begin, t->end, prev ? *prev : "", pos, hint);
    SY_CHECK(t->begin == pos,
             "{}: tensor {} data_offsets must start at {} (where the previous "
             "tensor ends), got {}: bytes [{}, {}) belong to no tensor{}",
             path_, *name, pos, t->begin, pos, t->begin, hint);
    pos = t->end;
    prev = name;
  }
  SY_CHECK(pos == buffer_size,
           "{}: tensors must cover the {}-byte data buffer, got {} bytes "
           "({} trailing bytes belong to no tensor){}",
           path_, buffer_size, pos, buffer_size - pos, hint);
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::string list;
    int shown = 0;
    for (const auto& [n, t] : tensors_) {
      if (shown++ == 8) {
        list += ", ...";
        break;
      }
      list += (list.empty() ? "" : ", ") + n;
    }
    fail(fmt::format("{}: tensor {} must be present, got no such tensor (the file holds {}: {})",
                     path_, name, tensors_.size(), list.empty() ? "none" : list));
  }
  return it->second;
}

void SafetensorsReader::read(const std::string& name, const std::string& dtype,
                             const std::vector<int64_t>& shape, void* dst) const {
  const TensorInfo& t = info(name);
  SY_CHECK(t.dtype == dtype, "{}: tensor {} has dtype {}, expected {}", path_, name, t.dtype,
           dtype);
  SY_CHECK(t.shape == shape, "{}: tensor {} has shape {}, expected {}", path_, name,
           shape_str(t.shape), shape_str(shape));
  pread_exact(dst, t.nbytes(), data_start_ + t.begin);
}

}  // namespace sy::io
