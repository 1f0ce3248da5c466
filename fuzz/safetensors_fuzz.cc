// safetensors files (src/io/safetensors.h): the header parser and validation in
// SafetensorsReader, then a read of every tensor as load_checkpoint reads them.
// Input: a whole .safetensors file.
#include <string>
#include <vector>

#include "core/error.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = sy::fuzz::scratch_dir() + "/input.safetensors";
  sy::fuzz::write_file(path, data, size);
  try {
    sy::io::SafetensorsReader r(path);
    // What validation promises: the tensors tile the data buffer exactly.
    int64_t total = 0;
    for (const std::string& name : r.names()) {
      const sy::io::TensorInfo& t = r.info(name);
      SY_FUZZ_ASSERT(t.begin >= 0 && t.begin <= t.end, "tensor %s", name.c_str());
      total += t.nbytes();
      std::vector<unsigned char> buf(static_cast<size_t>(t.nbytes()));
      r.read(name, t.dtype, t.shape, buf.data());
    }
    SY_FUZZ_ASSERT(total <= static_cast<int64_t>(size), "%lld tensor bytes in a %zu-byte file",
                   static_cast<long long>(total), size);
    (void)r.has("model.embed_tokens.weight");
    (void)r.metadata().size();
  } catch (const sy::Error&) {
  }
  return 0;
}
