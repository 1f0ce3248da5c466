// Helper for tests/python/safetensors_check.py, which checks our safetensors against an
// independent numpy implementation.
//   sy_safetensors_xcheck write <path>   writes the reference tensors below
//   sy_safetensors_xcheck check <path>   reads a file holding them; exit 0 iff all values match
// Both sides compute the same values: integers, and floats exact in binary.
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

namespace {

using sy::io::SafetensorsReader;

struct Reference {
  std::vector<float> f32;                              // [2, 3]: (i - 2.5) * 0.75
  std::vector<double> f64{1.0, 1.0 / 2.0, 1.0 / 3.0};  // [3]: 1 / (i + 1)
  std::vector<int32_t> i32{std::numeric_limits<int32_t>::min(), -1, 0,
                           std::numeric_limits<int32_t>::max()};  // [4]
  std::vector<int64_t> i64{std::numeric_limits<int64_t>::min(), -(int64_t{1} << 40),
                           (int64_t{1} << 62) + 1, std::numeric_limits<int64_t>::max()};  // [2, 2]
  std::vector<uint8_t> u8{0, 1, 127, 128, 255};                                           // [5]
  float scalar = 3.25f;                                                                   // []
  Reference() {
    for (int i = 0; i < 6; ++i) f32.push_back((static_cast<float>(i) - 2.5f) * 0.75f);
  }
};

template <typename T>
bool check(const SafetensorsReader& r, const std::string& name, const std::vector<int64_t>& shape,
           const std::vector<T>& want) {
  std::vector<T> got(want.size());
  r.read(name, shape, got.data());
  // An empty vector's data() may be null, and memcmp's arguments must not be even for 0 bytes.
  if (!want.empty() && std::memcmp(got.data(), want.data(), want.size() * sizeof(T)) != 0) {
    std::fprintf(stderr, "%s: tensor %s values differ from the reference\n", r.path().c_str(),
                 name.c_str());
    return false;
  }
  return true;
}

int run(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "write") != 0 && std::strcmp(argv[1], "check") != 0)) {
    std::fprintf(stderr, "usage: %s write|check <path>\n", argv[0]);
    return 2;
  }
  const std::string path = argv[2];
  const Reference ref;
  if (std::strcmp(argv[1], "write") == 0) {
    sy::io::write_safetensors(path,
                              {{"f32", "F32", {2, 3}, ref.f32.data()},
                               {"f64", "F64", {3}, ref.f64.data()},
                               {"i32", "I32", {4}, ref.i32.data()},
                               {"i64", "I64", {2, 2}, ref.i64.data()},
                               {"u8", "U8", {5}, ref.u8.data()},
                               {"scalar", "F32", {}, &ref.scalar},
                               {"empty", "F32", {0, 4}, nullptr}},
                              {{"format", "pt"}, {"writer", "switchyard"}});
    return 0;
  }
  SafetensorsReader r(path);
  bool ok = check(r, "f32", {2, 3}, ref.f32) && check(r, "f64", {3}, ref.f64) &&
            check(r, "i32", {4}, ref.i32) && check(r, "i64", {2, 2}, ref.i64) &&
            check(r, "u8", {5}, ref.u8) && check(r, "scalar", {}, std::vector<float>{ref.scalar}) &&
            check(r, "empty", {0, 4}, std::vector<float>{});
  const auto it = r.metadata().find("writer");
  if (it == r.metadata().end() || it->second != "numpy") {
    std::fprintf(stderr, "%s: __metadata__ writer must be \"numpy\"\n", path.c_str());
    ok = false;
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const sy::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
