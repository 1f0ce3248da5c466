// Whole-file writes that either complete or leave the old file in place.
//
// write_all: every byte of a buffer to a descriptor, retrying short writes and EINTR; throws
// sy::Error naming `what` (usually the path) and the system's reason on failure.
// write_file_atomic: writes `<path>.tmp-<pid>` (0644 before umask), fsyncs it, renames it over
// `path` and fsyncs the directory. On any error the temporary file is removed, `path` is
// untouched, and sy::Error says what failed.
// Thread-compatible: distinct paths may be written from distinct threads.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sy::io {

void write_all(int fd, const void* data, size_t bytes, const std::string& what);

void write_file_atomic(const std::string& path, std::string_view text);

}  // namespace sy::io
