// Test helpers shared by the src/data tests (not part of the library).
//
// temp_dir(tag): a fresh directory per test, named after the test and the process, removed (with
// everything registered by remove_at_exit) when the test process exits. Tests run as separate
// processes under CTest, so names never collide. Not thread-safe.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace sy::test {

struct Cleanup {
  std::vector<std::filesystem::path> paths;
  ~Cleanup() {
    std::error_code ec;
    for (const auto& p : paths) std::filesystem::remove_all(p, ec);
  }
};

inline Cleanup& cleanup() {
  static Cleanup c;
  return c;
}

inline void remove_at_exit(const std::filesystem::path& p) { cleanup().paths.push_back(p); }

inline std::string temp_dir(std::string_view tag) {
  const auto* info = testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      fmt::format("sy_{}_{}_{}_{}", tag, info->test_suite_name(), info->name(), getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  remove_at_exit(dir);
  return dir.string();
}

}  // namespace sy::test
