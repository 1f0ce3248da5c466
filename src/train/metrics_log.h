// metrics.jsonl: the run's JSON Lines log, written so that no record is lost or torn silently.
//
// * Every record is one line written by one write(2) on an O_APPEND descriptor: a reader of a
//   live run sees whole records (at most a torn last line if the process dies mid-write), never
//   half of a record followed by more records.
// * Every write is checked. A failed or short write (a full disk, a file-size limit) cuts the
//   file back to its last whole record and throws sy::Error naming the file and the cause, so
//   training stops instead of going on without its metrics.
// * On resume, the records after the checkpoint's step are dropped by writing the kept records
//   to a temporary file, checking and fsyncing it, and only then renaming it over the log: an
//   error leaves the old log untouched.
//
// Owned by the lead rank's trainer; not thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace sy {

class MetricsLog {
 public:
  // Opens `path` for appending, creating it (0644 before umask) if missing. `fresh`: empty it
  // first (a new run). Throws sy::Error if it cannot be opened.
  MetricsLog(const std::string& path, bool fresh);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends `record` (one JSON object, no newline) and a newline. Throws sy::Error on failure,
  // after removing any partial line it wrote.
  void append(const std::string& record);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Keeps only the records of steps <= step (resume): an unparsable line is dropped only as the
// last line (a torn write); anywhere else it is an error naming the line. Atomic: the log is
// replaced only by a complete, fsynced copy. A missing file is left missing.
void truncate_metrics(const std::string& path, int64_t step);

}  // namespace sy
