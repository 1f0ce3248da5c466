// One writer per run directory: an exclusive advisory lock held for a whole run.
//
// RunDirLock creates `<dir>/.lock` (0644 before umask) and takes flock(LOCK_EX | LOCK_NB) on
// it; the kernel releases the lock when the process ends in any way (kill -9 included), so a
// stale lock never blocks a resume. The file holds the holder's pid, host, start time and a
// random token, rewritten by each holder; a second process that finds the lock taken fails at
// once with an error naming the directory and the holder. The token lets the ranks of an MPI job
// check that they all see the directory rank 0 locked (token()).
//
// Creating the lock also proves the directory exists and is writable: its errors say so.
// Not thread-safe; one RunDirLock per directory per process.
#pragma once

#include <cstdint>
#include <string>

namespace sy::io {

inline constexpr const char* kRunLockName = ".lock";

class RunDirLock {
 public:
  // Creates `dir` (and parents, 0755 before umask) if missing, then locks it. `what` names the
  // holder's activity in the file and in errors ("training", "experiment").
  // Throws sy::Error if the directory cannot be created or written, or is locked by another
  // process (naming the holder).
  RunDirLock(const std::string& dir, const std::string& what);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  // The random token written into the lock file (nonzero).
  uint64_t token() const { return token_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t token_ = 0;
};

// The token in `<dir>/.lock`, or 0 if the file is missing or unreadable (a rank that does not
// see the directory rank 0 locked).
uint64_t read_run_lock_token(const std::string& dir);

}  // namespace sy::io
