#include "core/signals.h"

#include <pthread.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): POSIX sigset_t, sigwaitinfo
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace sy {

namespace {

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};

bool launched_by_open_mpi() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }

sigset_t waited_set(bool under_mpirun) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kStopSignals) sigaddset(&set, s);
  if (under_mpirun) sigaddset(&set, SIGCONT);
  return set;
}

// The signal's default action, from the receiving thread: unblock it here and raise it.
[[noreturn]] void die_of(int signum) {
  std::signal(signum, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, signum);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  raise(signum);
  _exit(128 + signum);  // not reached for the stop signals (their default is to terminate)
}

void say(const char* text) {
  // write(2): the stderr FILE may be locked by a thread we interrupted; a failure is ignored.
  const ssize_t ignored = write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

}  // namespace

StopSignals::StopSignals() : under_mpirun_(launched_by_open_mpi()) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed output: a failed write, not a death
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit: a failed write (checked), not a death
  const sigset_t set = waited_set(under_mpirun_);
  const int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr);
  SY_CHECK(rc == 0, "cannot block the stop signals: {}", std::strerror(rc));
  thread_ = std::thread([this] { receive_loop(); });
}

StopSignals::~StopSignals() {
  closing_.store(true);
  pthread_kill(thread_.native_handle(), SIGHUP);  // wakes sigwaitinfo; closing_ makes it return
  thread_.join();
}

void StopSignals::simulate(int signum) const {
  pthread_kill(const_cast<std::thread&>(thread_).native_handle(), signum);
}

void StopSignals::receive_loop() {
  const sigset_t set = waited_set(under_mpirun_);
  for (;;) {
    siginfo_t info;
    const int signum = sigwaitinfo(&set, &info);
    if (signum < 0) continue;  // EINTR
    if (closing_.load()) return;
    on_signal(signum);
  }
}

void StopSignals::on_signal(int signum) {
  if (!accepting_.load()) {
    if (signum == SIGCONT) return;  // mpirun's first notice; nothing to stop gracefully
    die_of(signum);
  }
  if (requested_.load() == 0) {
    requested_.store(signum);
    return;
  }
  if (signum == SIGINT) {
    say("switchyard: second interrupt: stopping now, without a checkpoint of this step\n");
    die_of(signum);
  }
  // Further SIGTERM/SIGHUP/SIGCONT (mpirun sends SIGCONT then SIGTERM): already stopping.
}

ChildSignalDefaults::ChildSignalDefaults() {
  posix_spawnattr_init(&attr_);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : kStopSignals) sigaddset(&defaults, s);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGXFSZ);
  posix_spawnattr_setsigmask(&attr_, &none);
  posix_spawnattr_setsigdefault(&attr_, &defaults);
  posix_spawnattr_setflags(&attr_, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

ChildSignalDefaults::~ChildSignalDefaults() { posix_spawnattr_destroy(&attr_); }

}  // namespace sy
