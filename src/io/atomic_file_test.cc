#include "io/atomic_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace sy::io {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(AtomicFileTest, ReplacesWholeFileWithMode0644) {
  const std::string p = (fs::temp_directory_path() / ("sy_atomic_" + std::to_string(::getpid())))
                            .string();
  write_file_atomic(p, "old\n");
  const mode_t old_mask = ::umask(022);
  write_file_atomic(p, "new contents\n");
  ::umask(old_mask);
  EXPECT_EQ(slurp(p), "new contents\n");
  struct stat st{};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  fs::remove(p);
}

TEST(AtomicFileTest, AFailedWriteLeavesTheOldFile) {
  // /dev/full fails every write with ENOSPC: write_all must say so.
  const int fd = ::open("/dev/full", O_WRONLY);
  ASSERT_GE(fd, 0);
  try {
    write_all(fd, "x", 1, "/dev/full");
    FAIL() << "a write to /dev/full must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("No space left"), std::string::npos) << e.what();
  }
  ::close(fd);
  // A directory that cannot hold the temporary file: the target stays as it was.
  EXPECT_THROW(write_file_atomic("/proc/sy_no_such_dir/x", "y"), Error);
}

}  // namespace
}  // namespace sy::io
