// Stop signals (SIGINT, SIGTERM, SIGHUP, SIGUSR1) received by one thread, never by compute code.
//
// Why a dedicated thread: oneDNN 2.6's AVX-512 sgemm kernels (jit_avx512_common_gemm_f32) point
// the stack pointer into a heap workspace while they run. A signal delivered to a thread inside
// such a kernel makes the kernel write its signal frame (≈ 3 KB with the AVX-512 state) into the
// heap: glibc later aborts with "corrupted size vs. prev_size" or the process segfaults (oneDNN
// issue 4845, fixed upstream in 2026 by no longer moving rsp; Debian 12 ships 2.6). Blocking the
// signals in every thread and receiving them with sigwait in one thread of our own means no
// asynchronous signal ever lands in a GEMM, whatever library runs there.
//
// Use: construct one StopSignals first thing in main, before MPI_Init, OpenMP or any other
// thread exists (threads inherit the blocked mask). While a stop is not accepted (the default),
// a signal ends the process as its default action would (exit status 128 + signal). Between
// accept_stop() and its scope's end (training), the first signal only records a stop request
// that the trainer polls after each step; a second SIGINT ends the process at once.
//
// Under Open MPI (OMPI_COMM_WORLD_SIZE set), mpirun answers SIGTERM/SIGINT by sending its ranks
// SIGCONT, then SIGTERM a second later, then SIGKILL a second after that
// (odls_base_sigkill_timeout = 1 s). So while a stop is accepted, SIGCONT under mpirun is a stop
// request too: it buys the ranks the extra second. mpirun forwards SIGUSR1 to its ranks as it
// is, so SIGUSR1 is a stop request with no deadline (a scheduler's "signal before the end").
// docs/distributed.md says how to use both.
//
// SIGPIPE is ignored: a closed stdout or stderr (a pipe into `head`, a `tee` that died) turns
// into failed writes, which the console code ignores, instead of killing the run. SIGXFSZ too:
// a file-size limit becomes a failed write, which the metrics and checkpoint code report.
//
// Threading: requested() may be called from any thread. One StopSignals per process.
#pragma once

#include <spawn.h>

#include <atomic>
#include <thread>

namespace sy {

class StopSignals {
 public:
  // REQUIRES: no other thread has been started yet; no other StopSignals exists.
  StopSignals();
  // Stops and joins the receiving thread; leaves the signals blocked (other threads may still
  // run, e.g. MPI's). Default dispositions return only with the process.
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // While the returned scope lives, the first signal is a stop request instead of an exit.
  class AcceptScope {
   public:
    explicit AcceptScope(StopSignals* s) : s_(s) {
      if (s_) s_->accepting_.store(true);
    }
    ~AcceptScope() {
      if (s_) s_->accepting_.store(false);
    }
    AcceptScope(const AcceptScope&) = delete;
    AcceptScope& operator=(const AcceptScope&) = delete;

   private:
    StopSignals* s_;
  };
  AcceptScope accept_stop() { return AcceptScope(this); }

  // The first stop signal received while accepting (0 = none yet).
  int requested() const { return requested_.load(); }
  // The flag the trainer polls (borrowed by TrainOptions::stop).
  const std::atomic<int>& flag() const { return requested_; }

  // For tests: behave as if `signum` had arrived (goes through the receiving thread).
  void simulate(int signum) const;

 private:
  void receive_loop();
  void on_signal(int signum);

  std::atomic<int> requested_{0};
  std::atomic<bool> accepting_{false};
  std::atomic<bool> closing_{false};
  bool under_mpirun_ = false;
  std::thread thread_;
};

// posix_spawn attributes for a child process: the stop signals unblocked and every signal we
// changed (SIGPIPE ignored, the stop signals) back at its default, so a child (the report
// script, a corpus extractor) can be interrupted and sees a normal environment.
class ChildSignalDefaults {
 public:
  ChildSignalDefaults();
  ~ChildSignalDefaults();
  ChildSignalDefaults(const ChildSignalDefaults&) = delete;
  ChildSignalDefaults& operator=(const ChildSignalDefaults&) = delete;
  const posix_spawnattr_t* get() const { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

}  // namespace sy
