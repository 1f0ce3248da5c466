// Checkpoint directories: written atomically, verified by a manifest of SHA-256 checksums.
//
// A checkpoint is a flat directory of files (safetensors, JSON, text) plus manifest.json:
//   {"format": "switchyard-checkpoint", "version": 1,
//    "files": {name: {"bytes": n, "sha256": "<64 hex digits>"}, ...}}
// A run directory holds several checkpoints, a `latest` file naming the newest one, and possibly
// debris from an interrupted write (`<name>.tmp-<pid>`) or removal (`<name>.del-<pid>`), which
// readers ignore and prune_checkpoints removes once process <pid> is gone.
//
// Modes: files are created 0644 and checkpoint directories 0755, both before umask, so another
// user can resume from or evaluate a run.
//
// Crash safety: files are written into `<final>.tmp-<pid>` and only commit() makes them visible,
// after every file and the directory are fsynced, by one rename (an atomic exchange when `final`
// already exists). A crash at any point leaves either the old or the new checkpoint complete.
//
// One process writes a run directory at a time (rank 0); nothing here is thread-safe.
// All errors are sy::Error naming the file and the problem.
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace sy::io {

inline constexpr const char* kCheckpointFormat = "switchyard-checkpoint";
inline constexpr int kCheckpointVersion = 1;
inline constexpr const char* kManifestName = "manifest.json";

// Writes one checkpoint directory. Owns its temp directory: the destructor removes it unless
// commit() succeeded. Neither copyable nor movable; one writer per final directory at a time.
class CheckpointWriter {
 public:
  // Creates `<final_dir>.tmp-<pid>` (and final_dir's parent if missing); a leftover temp dir
  // of the same name, from a crashed process that had our pid, is removed first.
  // `recycle`: a committed checkpoint beside final_dir that is no longer wanted (what pruning
  // would remove next: recyclable_checkpoint), renamed to be the temp dir instead of creating
  // one; its files are overwritten in place, so their cached pages are reused rather than new
  // memory taken for the page cache (docs/training.md, "Asynchronous commits"). From the rename
  // on it is no longer a checkpoint; files of it that are not written again are removed at
  // commit. "" creates a new directory.
  explicit CheckpointWriter(const std::string& final_dir, const std::string& recycle = "");
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Where to write file `name` (a plain file name: no '/', not "manifest.json"); the file is
  // part of the checkpoint from then on. REQUIRES: commit() not yet called.
  std::string path(const std::string& name);
  // Writes `text` to path(name).
  void write_text(const std::string& name, const std::string& text);

  // Removes the files no path() named (a recycled checkpoint's leftovers), checksums every file,
  // writes manifest.json, fsyncs files and directory, then replaces final_dir atomically and
  // fsyncs its parent. Subdirectories are an error.
  void commit();

  const std::string& final_dir() const { return final_; }
  const std::string& temp_dir() const { return tmp_; }

 private:
  std::string final_;
  std::string tmp_;
  std::set<std::string> named_;  // the files path() handed out
  bool committed_ = false;
};

// Commits a run directory's checkpoints on a thread of its own, so that training goes on while
// their bytes reach the disk: CheckpointWriter::commit (fsync, checksums, manifest, the atomic
// rename), then `latest` names the checkpoint and prune_checkpoints keeps the newest keep_last.
// The files must be written when a writer is handed over: they are the state at that moment.
// One commit at a time, in order: start() first waits for the previous one. Until a commit ends,
// `latest` names the one before it, so a kill -9 meanwhile resumes from that one (its temp
// directory is debris the next prune removes). A failed background commit's error is rethrown
// by the next start() or wait(), naming the checkpoint.
//
// The thread runs at a lower scheduling priority (nice +10): on a machine whose cores the
// training threads fill, the checksums yield to them. It inherits the creating thread's signal
// mask (core/signals.h: every stop signal blocked).
//
// Threading: one owner thread calls start(), wait() and the destructor; the background thread
// touches only the writer it was given and run_dir's `latest` and old checkpoints.
class BackgroundCommitter {
 public:
  BackgroundCommitter(std::string run_dir, int keep_last);
  // Waits for a pending commit; its error, if any, is printed to stderr (a destructor cannot
  // throw): the previous checkpoint then stays the latest.
  ~BackgroundCommitter();
  BackgroundCommitter(const BackgroundCommitter&) = delete;
  BackgroundCommitter& operator=(const BackgroundCommitter&) = delete;

  // Waits for the previous commit (rethrowing its error), then commits `w` in the background.
  // REQUIRES: w's final directory is a child of run_dir; w not committed.
  void start(std::unique_ptr<CheckpointWriter> w);
  // Returns when no commit is pending; rethrows the error of one that failed.
  void wait();
  // The final directory of the commit started last and not yet waited for ("" if none).
  const std::string& pending() const { return pending_; }

 private:
  std::string run_dir_;
  int keep_last_;
  std::thread thread_;
  std::exception_ptr error_;
  std::string pending_;
};

struct ManifestEntry {
  int64_t bytes = 0;
  std::string sha256;  // lowercase hex
};

// Checks `dir`'s manifest (format, version) and that every listed file exists with the listed
// size and SHA-256. Returns the manifest's files. Files not in the manifest are not checked.
std::map<std::string, ManifestEntry> verify_checkpoint(const std::string& dir);

// Lowercase hex SHA-256 of a file's contents.
std::string sha256_file(const std::string& path);

// Atomically points `<run_dir>/latest` at checkpoint `name` (a committed subdirectory).
void write_latest_pointer(const std::string& run_dir, const std::string& name);
// The checkpoint `<run_dir>/latest` names, or nullopt if there is no pointer yet. Throws if it
// names a directory that does not exist.
std::optional<std::string> read_latest_pointer(const std::string& run_dir);

// Committed checkpoints in run_dir (subdirectories holding manifest.json, not debris),
// oldest first by name with digit runs compared as numbers ("step_99" < "step_100").
std::vector<std::string> list_checkpoints(const std::string& run_dir);

// The checkpoint prune_checkpoints(run_dir, keep_last, prefix) would remove once one more is
// committed — the oldest `<prefix><digits>` one other than `latest`, when there are keep_last or
// more — for a CheckpointWriter to recycle; "" when there is none. Never `except` (the name about
// to be written).
std::string recyclable_checkpoint(const std::string& run_dir, int keep_last,
                                  const std::string& except, const std::string& prefix = "step_");

// Removes all but the newest `keep_last` of the checkpoints named `<prefix><digits>` (never the
// one `latest` names); any other directory, such as a user's copy `keep_best`, is never touched.
// Also removes debris left by processes no longer running, and `<prefix><digits>` directories
// without manifest.json (what a removal killed half-way left). Each checkpoint is renamed to
// `<name>.del-<pid>` before it is removed, so a kill leaves only debris. Returns the names
// removed. REQUIRES: keep_last >= 1; prefix a plain name.
std::vector<std::string> prune_checkpoints(const std::string& run_dir, int keep_last,
                                           const std::string& prefix = "step_");

}  // namespace sy::io
