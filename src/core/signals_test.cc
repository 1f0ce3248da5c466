#include "core/signals.h"

#include <gtest/gtest.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): kill
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/gemm.h"

namespace sy {
namespace {

// Waits up to 5 s for a stop request.
int wait_for_request(const StopSignals& s) {
  for (int i = 0; i < 500 && s.requested() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return s.requested();
}

TEST(StopSignalsTest, ProcessSignalWhileAcceptingIsAStopRequest) {
  StopSignals s;
  const auto accept = s.accept_stop();
  ::kill(::getpid(), SIGTERM);  // process-directed, as a scheduler sends it
  EXPECT_EQ(wait_for_request(s), SIGTERM);
  ::kill(::getpid(), SIGHUP);  // later stop signals change nothing
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(s.requested(), SIGTERM);
}

// Regression (SIGTERM crashed training with "corrupted size vs. prev_size"): oneDNN 2.6's AVX-512
// sgemm kernels run with the stack pointer in a heap workspace, so a signal frame written there
// corrupts the heap. With StopSignals no signal may reach a thread running a GEMM: a storm of
// process-directed stop signals during thousands of sgemm calls leaves the heap and the results
// intact. (With a plain handler, a standalone loop like this one aborts in about 2 of 3 runs.)
TEST(StopSignalsTest, SignalStormDuringSgemmNeverReachesComputeThreads) {
  StopSignals s;
  const auto accept = s.accept_stop();
  set_gemm_backend(GemmBackend::kOneDnn);
  std::atomic<bool> done{false};
  std::thread storm([&] {
    while (!done.load()) {
      ::kill(::getpid(), SIGTERM);
      ::usleep(50);
    }
  });
  const int64_t M = 2048, N = 256, K = 256;
  std::vector<float> a(M * K, 1.0f), b(K * N, 1.0f), c(M * N);
  bool right = true;
  for (int it = 0; it < 1500 && right; ++it) {
    gemm(false, true, M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N);
    right = c[0] == static_cast<float>(K) && c[M * N - 1] == static_cast<float>(K);
    std::vector<char> churn(1 << 16, 1);  // malloc/free traffic to trip glibc's checks
    right = right && churn[100] == 1;
  }
  done.store(true);
  storm.join();
  EXPECT_TRUE(right);
  EXPECT_EQ(s.requested(), SIGTERM);
}

TEST(StopSignalsTest, HangupIsAStopRequestToo) {
  StopSignals s;
  const auto accept = s.accept_stop();
  s.simulate(SIGHUP);
  EXPECT_EQ(wait_for_request(s), SIGHUP);
}

TEST(StopSignalsDeathTest, SignalWhileNotAcceptingEndsTheProcessAsItsDefaultWould) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        StopSignals s;
        s.simulate(SIGTERM);
        std::this_thread::sleep_for(std::chrono::seconds(5));
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGTERM), "");
}

TEST(StopSignalsDeathTest, SecondInterruptEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        StopSignals s;
        const auto accept = s.accept_stop();
        s.simulate(SIGINT);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        s.simulate(SIGINT);
        std::this_thread::sleep_for(std::chrono::seconds(5));
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGINT), "second interrupt");
}

TEST(StopSignalsTest, BrokenPipeIsAFailedWriteNotADeath) {
  StopSignals s;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  EXPECT_EQ(::write(fds[1], "x", 1), -1);
  EXPECT_EQ(errno, EPIPE);
  ::close(fds[1]);
}

TEST(StopSignalsTest, AcceptScopeEnds) {
  StopSignals s;
  { const auto accept = s.accept_stop(); }
  // No longer accepting: a SIGCONT (ignored unless under mpirun) must not stop or kill us.
  ::kill(::getpid(), SIGCONT);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(s.requested(), 0);
}

}  // namespace
}  // namespace sy
