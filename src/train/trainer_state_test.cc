#include "train/trainer_state.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"

namespace sy {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_trainer_state(text, "ckpt/trainer_state.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_HAS(msg, sub) \
  EXPECT_NE((msg).find(sub), std::string::npos) << "message: " << (msg) << "\nwanted: " << (sub)

TEST(TrainerStateTest, RoundTripsIncludingTheLargestValues) {
  TrainerStateFile f;
  f.state.step = 123;
  f.state.data_position = ~0ull;
  f.state.tokens_seen = INT64_MAX;
  f.optimizer_steps = 120;
  const TrainerStateFile g = parse_trainer_state(trainer_state_json(f), "x");
  EXPECT_EQ(g.state.step, 123);
  EXPECT_EQ(g.state.data_position, ~0ull);
  EXPECT_EQ(g.state.tokens_seen, INT64_MAX);
  EXPECT_EQ(g.optimizer_steps, 120);
}

// Found by fuzz/trainer_state_fuzz (fuzz/regressions/trainer_state/step-float-overflows-int64):
// get<int64_t>() of a float outside int64_t's range is undefined behaviour (UBSan:
// float-cast-overflow), and in-range floats were silently truncated.
TEST(TrainerStateTest, RejectsStepThatIsAFloatBeyondInt64) {
  const std::string msg = error_of(
      R"({"step": 10995116277765899906842624, "data_position": 0, "tokens_seen": 0,
          "optimizer_steps": 0})");
  EXPECT_HAS(msg, "ckpt/trainer_state.json: step must be an integer in [0, 9223372036854775807]");
  EXPECT_HAS(msg, "got 1.099511627776");
  EXPECT_HAS(error_of(R"({"step": 2.5, "data_position": 0, "tokens_seen": 0,
                          "optimizer_steps": 0})"),
             "step must be an integer");
}

TEST(TrainerStateTest, RejectsNegativeAndNonIntegerCounts) {
  const std::string ok_rest = R"("data_position": 0, "tokens_seen": 0, "optimizer_steps": 0)";
  EXPECT_HAS(error_of(R"({"step": -1, )" + ok_rest + "}"), "step must be an integer in [0, ");
  EXPECT_HAS(error_of(R"({"step": true, )" + ok_rest + "}"), "got true");
  EXPECT_HAS(error_of(R"({"step": "7", )" + ok_rest + "}"), "got \"7\"");
  EXPECT_HAS(
      error_of(R"({"step": 1, "data_position": -3, "tokens_seen": 0, "optimizer_steps": 0})"),
      "data_position must be an integer in [0, 18446744073709551615], got -3");
  EXPECT_HAS(error_of(R"({"step": 1, "data_position": 0, "tokens_seen": 9223372036854775808,
                          "optimizer_steps": 0})"),
             "tokens_seen must be an integer in [0, 9223372036854775807]");
}

TEST(TrainerStateTest, RejectsMissingKeysAndNonObjects) {
  EXPECT_HAS(error_of(R"({"step": 1, "data_position": 0, "tokens_seen": 0})"),
             "optimizer_steps must be present");
  EXPECT_HAS(error_of("[1, 2]"), "must be a JSON object with step, data_position");
  EXPECT_HAS(error_of("{\"step\": "), "must be valid JSON");
}

// A number beyond double's range is nlohmann::json's out_of_range, not parse_error.
TEST(TrainerStateTest, RejectsJsonNumberOverflowAsSyError) {
  EXPECT_HAS(error_of(R"({"step": 1e999})"), "must be valid JSON");
}

}  // namespace
}  // namespace sy
