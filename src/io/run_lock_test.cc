#include "io/run_lock.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "core/error.h"

namespace sy::io {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& tag) {
  const fs::path p = fs::temp_directory_path() / ("sy_lock_" + std::to_string(::getpid()) + tag);
  fs::remove_all(p);
  return p.string();
}

TEST(RunDirLockTest, SecondHolderFailsNamingTheDirectoryAndTheHolder) {
  const std::string dir = temp_dir("a");
  RunDirLock first(dir, "training");
  try {
    RunDirLock second(dir, "experiment");
    FAIL() << "a second lock of the same directory must fail";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir), std::string::npos) << msg;
    EXPECT_NE(msg.find("training by pid " + std::to_string(::getpid())), std::string::npos) << msg;
    EXPECT_NE(msg.find("started 20"), std::string::npos) << msg;
  }
  fs::remove_all(dir);
}

TEST(RunDirLockTest, ReleasedOnDestructionAndWhenTheHolderIsKilled) {
  const std::string dir = temp_dir("b");
  { RunDirLock first(dir, "training"); }
  { RunDirLock again(dir, "training"); }  // released by the destructor
  // A holder killed with SIGKILL leaves the file but not the lock.
  const pid_t child = ::fork();
  if (child == 0) {
    RunDirLock held(dir, "training");
    ::pause();
    ::_exit(0);
  }
  std::optional<uint64_t> seen;
  for (int i = 0; i < 200 && !seen; ++i) {  // wait until the child holds it
    ::usleep(10000);
    try {
      RunDirLock probe(dir, "probe");
    } catch (const Error&) {
      seen = 1;
    }
  }
  ASSERT_TRUE(seen) << "the child never took the lock";
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  RunDirLock after(dir, "training");  // must not throw
  EXPECT_EQ(read_run_lock_token(dir), after.token());
  fs::remove_all(dir);
}

TEST(RunDirLockTest, UnwritableDirectoryIsAClearError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes anywhere";
  const std::string dir = temp_dir("c");
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_THROW(RunDirLock(dir, "training"), Error);
  fs::permissions(dir, fs::perms::owner_all);
  fs::remove_all(dir);
}

TEST(RunDirLockTest, TokenIsReadBackAndMissingIsZero) {
  const std::string dir = temp_dir("d");
  RunDirLock lock(dir, "training");
  EXPECT_NE(lock.token(), 0u);
  EXPECT_EQ(read_run_lock_token(dir), lock.token());
  EXPECT_EQ(read_run_lock_token(dir + "/nowhere"), 0u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sy::io
