#include "train/trainer_state.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"

namespace sy {

using nlohmann::json;

std::string trainer_state_json(const TrainerStateFile& f) {
  const json j = {{"step", f.state.step},
                  {"data_position", f.state.data_position},
                  {"tokens_seen", f.state.tokens_seen},
                  {"optimizer_steps", f.optimizer_steps}};
  return j.dump(2) + "\n";
}

namespace {

// A JSON integer in [0, max], or nullopt: floats (1e300 does not fit int64_t), booleans, strings
// and negative numbers are not step counts.
std::optional<uint64_t> count(const json& j, uint64_t max) {
  if (j.is_number_unsigned()) {
    const auto v = j.get<uint64_t>();
    if (v <= max) return v;
  } else if (j.is_number_integer()) {
    const auto v = j.get<int64_t>();
    if (v >= 0) return static_cast<uint64_t>(v);
  }
  return std::nullopt;
}

}  // namespace

TrainerStateFile parse_trainer_state(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error; out_of_range for 1e999
    fail(
        fmt::format("{}: must be valid JSON, got: {}; the checkpoint is corrupt", where, e.what()));
  }
  SY_CHECK(j.is_object(),
           "{}: must be a JSON object with step, data_position, tokens_seen and optimizer_steps, "
           "got {}",
           where, j.type_name());
  constexpr auto kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  auto get = [&](const char* key, uint64_t max) {
    const auto it = j.find(key);
    SY_CHECK(it != j.end(), "{}: {} must be present, got no such key; the checkpoint is corrupt",
             where, key);
    const std::optional<uint64_t> v = count(*it, max);
    SY_CHECK(v.has_value(), "{}: {} must be an integer in [0, {}], got {}", where, key, max,
             it->dump());
    return *v;
  };
  TrainerStateFile f;
  f.state.step = static_cast<int64_t>(get("step", kInt64Max));
  f.state.data_position = get("data_position", std::numeric_limits<uint64_t>::max());
  f.state.tokens_seen = static_cast<int64_t>(get("tokens_seen", kInt64Max));
  f.optimizer_steps = static_cast<int64_t>(get("optimizer_steps", kInt64Max));
  return f;
}

}  // namespace sy
