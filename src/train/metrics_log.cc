#include "train/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"

namespace sy {

MetricsLog::MetricsLog(const std::string& path, bool fresh) : path_(path) {
  const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (fresh ? O_TRUNC : 0);
  fd_ = ::open(path.c_str(), flags, 0644);
  SY_CHECK(fd_ >= 0, "{}: cannot open for appending: {}", path, std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::append(const std::string& record) {
  std::string line;
  line.reserve(record.size() + 1);
  line += record;
  line += '\n';
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n == static_cast<ssize_t>(line.size())) return;
  // A failed or short write: leave only whole records behind, then stop the run.
  const std::string reason = n < 0 ? std::strerror(errno) : "short write (disk full?)";
  if (n > 0 && before >= 0) {
    const int rc = ::ftruncate(fd_, before);
    (void)rc;  // if even this fails, the reader drops the torn last line
  }
  fail(
      fmt::format("{}: appending a {}-byte record failed: {}; the records before it are intact. "
                  "Free space (or raise the file-size limit), then run the same command: "
                  "training resumes from the last checkpoint",
                  path_, line.size(), reason));
}

void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  std::string line, kept;
  int64_t number = 0;
  std::string bad;  // the first unparsable line, if any lines follow it
  int64_t bad_number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    SY_CHECK(bad.empty(),
             "{}: line {} must be a JSON record, got an unparsable line followed by more "
             "records; the log is corrupt (move it aside to resume)",
             path, bad_number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      bad = line;  // a torn last line from an interrupted write is dropped
      bad_number = number;
      continue;
    }
    // A record's step must be an integer: value("step", 0) would throw nlohmann's type_error
    // for a string and convert 1e300 to int64_t (undefined behaviour).
    const auto s = j.is_object() ? j.find("step") : j.end();
    if (s != j.end()) {
      SY_CHECK(s->is_number_integer(),
               "{}: line {} step must be an integer, got {}; the log is corrupt (move it aside to "
               "resume)",
               path, number, s->dump());
      if (s->is_number_unsigned()
              ? s->get<uint64_t>() > static_cast<uint64_t>(std::max<int64_t>(step, 0))
              : s->get<int64_t>() > step)
        continue;
    }
    kept += line;
    kept += '\n';
  }
  SY_CHECK(!in.bad(), "{}: read failed: {}", path, std::strerror(errno));
  io::write_file_atomic(path, kept);
}

}  // namespace sy
