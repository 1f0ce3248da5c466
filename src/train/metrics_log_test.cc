#include "train/metrics_log.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string temp_path(const std::string& tag) {
  return (fs::temp_directory_path() / ("sy_mlog_" + std::to_string(::getpid()) + tag)).string();
}

TEST(MetricsLogTest, AppendsWholeRecordsAndLargeOnesInOneLine) {
  const std::string p = temp_path("a");
  {
    MetricsLog log(p, /*fresh=*/true);
    log.append(R"({"step":1})");
    log.append("{\"big\":\"" + std::string(100000, 'x') + "\"}");
  }
  const std::string text = slurp(p);
  EXPECT_EQ(text.substr(0, 11), "{\"step\":1}\n");
  EXPECT_EQ(text.size(), 11u + 100011u);
  MetricsLog again(p, /*fresh=*/false);  // appends
  again.append(R"({"step":2})");
  EXPECT_EQ(slurp(p).size(), 11u + 100011u + 11u);
  fs::remove(p);
}

TEST(MetricsLogTest, FullDiskIsAnErrorNotASilentLoss) {
  // /dev/full: every write fails with ENOSPC.
  MetricsLog log("/dev/full", /*fresh=*/false);
  try {
    log.append(R"({"step":1})");
    FAIL() << "a failed append must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("No space left"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("resumes from the last checkpoint"), std::string::npos);
  }
}

TEST(MetricsLogTest, ShortWriteIsCutBackToTheLastWholeRecord) {
  // A file-size limit makes the second record a short write (SIGXFSZ ignored, as the CLI does).
  const std::string p = temp_path("b");
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  ::getrlimit(RLIMIT_FSIZE, &old);
  {
    MetricsLog log(p, /*fresh=*/true);
    log.append(R"({"step":1})");
    rlimit lim = old;
    lim.rlim_cur = 20;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
    EXPECT_THROW(log.append(R"({"step":2,"pad":"0123456789"})"), Error);
    ::setrlimit(RLIMIT_FSIZE, &old);
  }
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(slurp(p), "{\"step\":1}\n");
  fs::remove(p);
}

TEST(MetricsLogTest, TruncateKeepsStepsUpToAndDropsATornLastLine) {
  const std::string p = temp_path("c");
  std::ofstream(p) << "{\"type\":\"train\",\"step\":1}\n{\"type\":\"eval\",\"step\":2}\n"
                      "{\"type\":\"train\",\"step\":3}\n{\"type\":\"tra";
  truncate_metrics(p, 2);
  EXPECT_EQ(slurp(p), "{\"type\":\"train\",\"step\":1}\n{\"type\":\"eval\",\"step\":2}\n");
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777 & ~0644u, 0u);
  fs::remove(p);
}

TEST(MetricsLogTest, TruncateRefusesAGarbledLineInTheMiddle) {
  const std::string p = temp_path("d");
  const std::string text = "{\"step\":1}\n{garbage\n{\"step\":2}\n";
  std::ofstream(p) << text;
  EXPECT_THROW(truncate_metrics(p, 5), Error);
  EXPECT_EQ(slurp(p), text);  // untouched
  fs::remove(p);
}

// Found with fuzz/metrics_log_fuzz (fuzz/regressions/metrics_log/): a record whose step is not an
// integer made value("step", 0) throw nlohmann's type_error ("x") or convert 1e300 to int64_t,
// which is undefined behaviour, instead of a sy::Error naming the line.
TEST(MetricsLogTest, TruncateRefusesAStepThatIsNotAnInteger) {
  const std::string p = temp_path("s");
  for (const std::string bad : {R"({"step":"x"})", R"({"step":1e300})", R"({"step":2.5})"}) {
    const std::string text = "{\"step\":1}\n" + bad + "\n{\"step\":2}\n";
    std::ofstream(p) << text;
    try {
      truncate_metrics(p, 5);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(": line 2 step must be an integer, got "),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(slurp(p), text);  // untouched
  }
  std::ofstream(p) << "{\"step\":18446744073709551615}\n{\"step\":-1}\n";
  truncate_metrics(p, 5);  // an unsigned step beyond int64_t is after every checkpoint
  EXPECT_EQ(slurp(p), "{\"step\":-1}\n");
  fs::remove(p);
}

TEST(MetricsLogTest, TruncateFailureLeavesTheLogUntouched) {
  // The rewrite fails (file-size limit below the kept records): the full log must survive.
  const std::string p = temp_path("e");
  const std::string text = "{\"step\":1,\"pad\":\"0123456789\"}\n{\"step\":2}\n";
  std::ofstream(p) << text;
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  ::getrlimit(RLIMIT_FSIZE, &old);
  rlimit lim = old;
  lim.rlim_cur = 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  EXPECT_THROW(truncate_metrics(p, 1), Error);
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(slurp(p), text);
  fs::remove(p);
}

}  // namespace
}  // namespace sy
