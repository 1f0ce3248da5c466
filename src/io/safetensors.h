// Hugging Face safetensors files: the weight format the Python ecosystem loads.
//
// Layout (little-endian throughout):
//   bytes [0, 8)        N, a u64: the size of the JSON header
//   bytes [8, 8+N)      UTF-8 JSON object, padded with spaces so 8+N is a multiple of 8:
//                         {"__metadata__": {str: str},            (optional)
//                          name: {"dtype": "F32", "shape": [d0, d1, ...],
//                                 "data_offsets": [begin, end]}, ...}
//   bytes [8+N, EOF)    the data buffer; offsets are relative to its start; tensors row-major,
//                       contiguous, no gaps or overlap, the last one ending at EOF.
//
// The writer orders tensors by element size (largest first), then by name, as the reference
// implementation does, so every tensor starts at a multiple of its element size. Written dtypes:
// F32, F64, I32, I64, U8. The reader also accepts F16, BF16, I8, I16, U16, U32, U64 and BOOL so
// files from the ecosystem open; their bytes are copied as they are.
//
// All errors are sy::Error and name the file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sy::io {

// The safetensors dtype name of a C++ element type: dtype_of<float>() == "F32".
template <typename T>
constexpr std::string_view dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return "F32";
  else if constexpr (std::is_same_v<T, double>)
    return "F64";
  else if constexpr (std::is_same_v<T, int32_t>)
    return "I32";
  else if constexpr (std::is_same_v<T, int64_t>)
    return "I64";
  else if constexpr (std::is_same_v<T, uint8_t>)
    return "U8";
  else
    static_assert(sizeof(T) == 0, "no safetensors dtype for this type");
}

// Bytes per element of a dtype name; throws sy::Error (naming `where`) for an unknown one.
int64_t dtype_size(const std::string& dtype, const std::string& where);

// A tensor to write. Borrows `data` (row-major, numel(shape) * dtype_size bytes) until
// write_safetensors returns. A 0-d tensor has shape {} and one element.
struct TensorView {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes `tensors` and `metadata` to `path` (replacing it) with one buffered stream. An existing
// file is overwritten in place and then cut to the new length (its cached pages are reused).
// Not atomic by itself: write into a CheckpointWriter directory for that.
// REQUIRES: names unique, non-empty, not "__metadata__"; dtypes among the written ones.
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// One header entry. Offsets are relative to the data buffer.
struct TensorInfo {
  std::string dtype;
  std::vector<int64_t> shape;
  int64_t begin = 0;  // data_offsets[0]
  int64_t end = 0;    // data_offsets[1]
  int64_t numel() const;
  int64_t nbytes() const { return end - begin; }
};

// An open safetensors file whose header has been fully validated: header size within the file,
// JSON well-formed, every dtype known, every offset range inside the buffer and equal to
// numel(shape) * dtype_size, ranges contiguous without overlap and covering the whole buffer.
// Data is read on demand with pread, so files of any size cost only their header in memory.
// Owns the file descriptor. After construction every method is const and may be called from
// several threads at once.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return tensors_.contains(name); }
  std::vector<std::string> names() const;                 // sorted
  const TensorInfo& info(const std::string& name) const;  // throws if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Copies tensor `name` into dst (info(name).nbytes() bytes) after checking that its dtype and
  // shape are the expected ones, e.g. "<file>: tensor w has shape [2, 3], expected [3, 2]".
  void read(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
            void* dst) const;

  template <typename T>
  void read(const std::string& name, const std::vector<int64_t>& shape, T* dst) const {
    read(name, std::string(dtype_of<T>()), shape, dst);
  }

 private:
  void parse_header();
  void pread_exact(void* dst, int64_t nbytes, int64_t offset) const;

  std::string path_;
  int fd_ = -1;
  int64_t data_start_ = 0;  // 8 + N
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sy::io
