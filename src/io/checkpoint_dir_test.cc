#include "io/checkpoint_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "io/safetensors.h"

namespace sy::io {
namespace {

namespace fs = std::filesystem;

class CheckpointDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
    run_ =
        (fs::temp_directory_path() / ("sy_io_ck_" + std::to_string(::getpid()) + "_" + t->name()))
            .string();
    fs::remove_all(run_);
    fs::create_directories(run_);
  }
  void TearDown() override { fs::remove_all(run_); }

  // Commits a checkpoint holding weights.safetensors ([value, value]) and state.json.
  void save(const std::string& name, float value, const std::string& extra_file = "") {
    CheckpointWriter w(run_ + "/" + name);
    const float data[2] = {value, value};
    write_safetensors(w.path("weights.safetensors"), {{"w", "F32", {2}, data}});
    w.write_text("state.json", R"({"step": 1})");
    if (!extra_file.empty()) w.write_text(extra_file, "x");
    w.commit();
  }

  float load(const std::string& name) {
    SafetensorsReader r(run_ + "/" + name + "/weights.safetensors");
    float data[2];
    r.read("w", {2}, data);
    return data[0];
  }

  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(run_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string run_;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sy::Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_HAS(msg, sub) \
  EXPECT_NE((msg).find(sub), std::string::npos) << "message: " << (msg) << "\nwanted: " << (sub)

TEST_F(CheckpointDirTest, CommitWritesManifestWithSha256) {
  CheckpointWriter w(run_ + "/ck");
  w.write_text("abc.txt", "abc");
  EXPECT_TRUE(fs::exists(w.temp_dir()));
  EXPECT_FALSE(fs::exists(run_ + "/ck"));  // invisible until commit
  w.commit();
  EXPECT_FALSE(fs::exists(w.temp_dir()));
  const auto m = nlohmann::json::parse(read_all(run_ + "/ck/manifest.json"));
  EXPECT_EQ(m["format"], "switchyard-checkpoint");
  EXPECT_EQ(m["version"], 1);
  EXPECT_EQ(m["files"]["abc.txt"]["bytes"], 3);
  // FIPS 180-2 test vector for "abc".
  EXPECT_EQ(m["files"]["abc.txt"]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const auto files = verify_checkpoint(run_ + "/ck");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files.at("abc.txt").bytes, 3);
}

TEST_F(CheckpointDirTest, CommitReplacesExistingDirAtomically) {
  save("ck", 1.0f, "only_in_old.txt");
  save("ck", 2.0f);
  EXPECT_EQ(load("ck"), 2.0f);
  EXPECT_FALSE(fs::exists(run_ + "/ck/only_in_old.txt"));
  EXPECT_EQ(verify_checkpoint(run_ + "/ck").size(), 2u);
  EXPECT_EQ(entries(), std::vector<std::string>{"ck"});  // no temp or aside dir left behind
}

TEST_F(CheckpointDirTest, DestructorWithoutCommitRemovesTempDir) {
  save("ck", 1.0f);
  std::string tmp;
  {
    CheckpointWriter w(run_ + "/ck");
    w.write_text("state.json", "partial");
    tmp = w.temp_dir();
    EXPECT_TRUE(fs::exists(tmp));
  }
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(load("ck"), 1.0f);
  verify_checkpoint(run_ + "/ck");
}

TEST_F(CheckpointDirTest, CrashBeforeCommitLeavesPreviousCheckpointIntact) {
  save("ck", 1.0f);
  write_latest_pointer(run_, "ck");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child dies mid-write: no commit, no destructor.
    try {
      auto* w = new CheckpointWriter(run_ + "/ck");
      const float data[2] = {9.0f, 9.0f};
      write_safetensors(w->path("weights.safetensors"), {{"w", "F32", {2}, data}});
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string debris = "ck.tmp-" + std::to_string(child);
  EXPECT_TRUE(fs::exists(run_ + "/" + debris));

  // The previous checkpoint is untouched and still the one to resume from.
  verify_checkpoint(run_ + "/ck");
  EXPECT_EQ(load("ck"), 1.0f);
  EXPECT_EQ(read_latest_pointer(run_), "ck");
  EXPECT_EQ(list_checkpoints(run_), std::vector<std::string>{"ck"});

  // The debris of the dead process is cleaned.
  EXPECT_EQ(prune_checkpoints(run_, 3), std::vector<std::string>{debris});
  EXPECT_EQ(entries(), (std::vector<std::string>{"ck", "latest"}));
}

TEST_F(CheckpointDirTest, VerifyDetectsTruncation) {
  save("ck", 1.0f);
  const std::string p = run_ + "/ck/weights.safetensors";
  const auto size = fs::file_size(p);
  fs::resize_file(p, size - 3);
  const std::string msg = error_of([&] { verify_checkpoint(run_ + "/ck"); });
  EXPECT_HAS(msg, p + ": size must be " + std::to_string(size) + " bytes, got " +
                      std::to_string(size - 3) + " bytes; the file is truncated");
}

TEST_F(CheckpointDirTest, VerifyDetectsFlippedByte) {
  save("ck", 1.0f);
  const std::string p = run_ + "/ck/weights.safetensors";
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-1, std::ios::end);
  f.put('\x55');
  f.close();
  const std::string msg = error_of([&] { verify_checkpoint(run_ + "/ck"); });
  EXPECT_HAS(msg, p + ": sha256 must be");
  EXPECT_HAS(msg, "checksum mismatch");
}

TEST_F(CheckpointDirTest, VerifyDetectsMissingFile) {
  save("ck", 1.0f);
  fs::remove(run_ + "/ck/state.json");
  const std::string msg = error_of([&] { verify_checkpoint(run_ + "/ck"); });
  EXPECT_HAS(msg, run_ + "/ck/state.json: file listed in the manifest must exist");
}

TEST_F(CheckpointDirTest, VerifyRejectsWrongManifestVersionAndFormat) {
  save("ck", 1.0f);
  const std::string mp = run_ + "/ck/manifest.json";
  auto m = nlohmann::json::parse(read_all(mp));
  m["version"] = 2;
  std::ofstream(mp) << m.dump();
  std::string msg = error_of([&] { verify_checkpoint(run_ + "/ck"); });
  EXPECT_HAS(msg, "version must be 1, got 2");
  EXPECT_HAS(msg, "newer switchyard");

  m["version"] = 1;
  m["format"] = "something-else";
  std::ofstream(mp) << m.dump();
  msg = error_of([&] { verify_checkpoint(run_ + "/ck"); });
  EXPECT_HAS(msg, "format must be \"switchyard-checkpoint\", got \"something-else\"");

  fs::remove(mp);
  msg = error_of([&] { verify_checkpoint(run_ + "/ck"); });
  EXPECT_HAS(msg, "manifest.json must exist");
}

// Found by fuzz/manifest_fuzz (fuzz/regressions/manifest/): nlohmann::json exceptions other than
// parse_error escaped verify_checkpoint instead of a sy::Error naming the manifest.
TEST_F(CheckpointDirTest, VerifyRejectsManifestFormatThatIsNotAString) {
  save("ck", 1.0f);
  const std::string mp = run_ + "/ck/manifest.json";
  std::ofstream(mp) << R"({"format": false})";
  EXPECT_HAS(error_of([&] { verify_checkpoint(run_ + "/ck"); }),
             "manifest.json: format must be \"switchyard-checkpoint\", got false");
}

TEST_F(CheckpointDirTest, VerifyRejectsJsonNumberOverflowInManifest) {
  save("ck", 1.0f);
  const std::string mp = run_ + "/ck/manifest.json";
  std::ofstream(mp) << R"({"format": "switchyard-checkpoint", "version": 1e999})";
  const std::string msg = error_of([&] { verify_checkpoint(run_ + "/ck"); });
  EXPECT_HAS(msg, "manifest.json: must be valid JSON");
  EXPECT_HAS(msg, "number overflow");
}

TEST_F(CheckpointDirTest, WriterRejectsNamesOutsideTheDirectory) {
  CheckpointWriter w(run_ + "/ck");
  EXPECT_HAS(error_of([&] { w.path("../evil"); }), "must be a plain name");
  EXPECT_HAS(error_of([&] { w.path("a/b"); }), "must be a plain name");
  EXPECT_HAS(error_of([&] { w.path("manifest.json"); }), "other than manifest.json");
  w.commit();
  EXPECT_HAS(error_of([&] { w.commit(); }), "commit() must be called once");
  EXPECT_HAS(error_of([&] { w.path("x"); }), "before commit()");
}

TEST_F(CheckpointDirTest, LatestPointerRoundTrips) {
  EXPECT_EQ(read_latest_pointer(run_), std::nullopt);
  save("step_1", 1.0f);
  save("step_2", 2.0f);
  write_latest_pointer(run_, "step_1");
  EXPECT_EQ(read_latest_pointer(run_), "step_1");
  write_latest_pointer(run_, "step_2");
  EXPECT_EQ(read_latest_pointer(run_), "step_2");
  EXPECT_EQ(read_all(run_ + "/latest"), "step_2\n");
  EXPECT_HAS(error_of([&] { write_latest_pointer(run_, "step_3"); }),
             "latest must name a committed checkpoint");
  EXPECT_EQ(entries(), (std::vector<std::string>{"latest", "step_1", "step_2"}));
  fs::remove_all(run_ + "/step_2");
  EXPECT_HAS(error_of([&] { read_latest_pointer(run_); }), "which does not exist");
}

TEST_F(CheckpointDirTest, PruneKeepsNewestAndLatest) {
  for (const char* name : {"step_100", "step_2", "step_10", "step_1"}) save(name, 1.0f);
  EXPECT_EQ(list_checkpoints(run_),
            (std::vector<std::string>{"step_1", "step_2", "step_10", "step_100"}));
  write_latest_pointer(run_, "step_1");  // e.g. resumed from an old checkpoint
  EXPECT_EQ(prune_checkpoints(run_, 2), std::vector<std::string>{"step_2"});
  EXPECT_EQ(list_checkpoints(run_), (std::vector<std::string>{"step_1", "step_10", "step_100"}));
  EXPECT_HAS(error_of([&] { prune_checkpoints(run_, 0); }), "keep_last must be >= 1, got 0");
}

// Regression: open(O_CREAT) without a mode gave `latest` mode -rwsr-Sr-T and manifest.json
// ---x--x---, so another user could not resume from or evaluate the run.
TEST_F(CheckpointDirTest, FilesAre0644AndDirs0755UnderUmask022) {
  const mode_t old_mask = ::umask(022);
  const std::string root = run_ + "/checkpoints";
  save("checkpoints/step_1", 1.0f);
  save("checkpoints/step_1", 2.0f);  // replaces: the exchange path
  write_latest_pointer(root, "step_1");
  ::umask(old_mask);
  int n_files = 0;
  auto check = [&](const fs::path& p) {
    struct stat st {};
    ASSERT_EQ(::lstat(p.c_str(), &st), 0) << p;
    const mode_t mode = st.st_mode & 07777;  // with setuid, setgid and sticky bits
    if (S_ISDIR(st.st_mode)) {
      EXPECT_EQ(mode, 0755u) << p << std::oct << " has mode " << mode;
    } else {
      ASSERT_TRUE(S_ISREG(st.st_mode)) << p;
      EXPECT_EQ(mode, 0644u) << p << std::oct << " has mode " << mode;
      ++n_files;
    }
  };
  check(root);
  for (const auto& e : fs::recursive_directory_iterator(root)) check(e.path());
  EXPECT_EQ(n_files, 4);  // latest, manifest.json, weights.safetensors, state.json
}

// A pid no process has: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

// Regression: pruning removed a user's copy `keep_best` (a directory with a manifest), which
// sorts before the trainer's `step_<n>`.
TEST_F(CheckpointDirTest, PruneRemovesOnlyTheTrainersCheckpoints) {
  for (const char* name : {"keep_best", "step_1", "step_2", "step_3", "step_4", "step_2_copy"})
    save(name, 1.0f);
  fs::create_directory_symlink(run_ + "/keep_best", run_ + "/step_0");
  write_latest_pointer(run_, "step_4");
  EXPECT_EQ(prune_checkpoints(run_, 2), (std::vector<std::string>{"step_1", "step_2"}));
  EXPECT_EQ(entries(), (std::vector<std::string>{"keep_best", "latest", "step_0", "step_2_copy",
                                                 "step_3", "step_4"}));
  verify_checkpoint(run_ + "/keep_best");
  // Another prefix is another writer's checkpoints.
  for (const char* name : {"best_1", "best_2"}) save(name, 1.0f);
  EXPECT_EQ(prune_checkpoints(run_, 1, "best_"), std::vector<std::string>{"best_1"});
  EXPECT_TRUE(fs::exists(run_ + "/step_3"));
  EXPECT_HAS(error_of([&] { prune_checkpoints(run_, 1, ""); }),
             "prefix must be a plain name, got ''");
}

// Regression: a kill during fs::remove_all of an old checkpoint left `step_<n>` half-removed,
// without its manifest, and no later prune removed it.
TEST_F(CheckpointDirTest, PruneRemovesHalfRemovedOrphan) {
  save("step_1", 1.0f);
  save("step_2", 2.0f);
  write_latest_pointer(run_, "step_2");
  fs::remove(run_ + "/step_1/manifest.json");
  fs::remove(run_ + "/step_1/state.json");
  fs::create_directory(run_ + "/notes");  // not ours: kept
  EXPECT_EQ(list_checkpoints(run_), std::vector<std::string>{"step_2"});
  EXPECT_EQ(prune_checkpoints(run_, 3), std::vector<std::string>{"step_1"});
  EXPECT_EQ(entries(), (std::vector<std::string>{"latest", "notes", "step_2"}));
}

TEST_F(CheckpointDirTest, PruneRemovesDebrisOfDeadPidAndKeepsDebrisOfLivePid) {
  save("step_1", 1.0f);
  save("step_2", 2.0f);
  save("step_3", 3.0f);
  write_latest_pointer(run_, "step_3");
  // What a kill during a removal leaves: the checkpoint renamed aside, partly deleted.
  const std::string dead = "step_1.del-" + std::to_string(dead_pid());
  fs::rename(run_ + "/step_1", run_ + "/" + dead);
  fs::remove(run_ + "/" + dead + "/state.json");
  // A removal still under way in a live process (our parent): not ours to touch.
  const std::string live = "step_2.del-" + std::to_string(::getppid());
  fs::copy(run_ + "/step_2", run_ + "/" + live);
  EXPECT_EQ(list_checkpoints(run_), (std::vector<std::string>{"step_2", "step_3"}));
  EXPECT_EQ(prune_checkpoints(run_, 3), std::vector<std::string>{dead});
  EXPECT_EQ(entries(), (std::vector<std::string>{"latest", "step_2", live, "step_3"}));
  // Pruning itself leaves no debris behind.
  EXPECT_EQ(prune_checkpoints(run_, 1), std::vector<std::string>{"step_2"});
  EXPECT_EQ(entries(), (std::vector<std::string>{"latest", live, "step_3"}));
}

// A checkpoint recycled for the next one: renamed to be its temp dir (no longer a checkpoint),
// its files overwritten in place (same inodes), the ones not written again removed at commit.
TEST_F(CheckpointDirTest, RecycledCheckpointIsOverwrittenInPlace) {
  save("step_1", 1.0f, "only_in_old.txt");
  save("step_2", 2.0f);
  write_latest_pointer(run_, "step_2");
  struct stat old_file {};
  ASSERT_EQ(::stat((run_ + "/step_1/weights.safetensors").c_str(), &old_file), 0);
  CheckpointWriter w(run_ + "/step_3", "step_1");
  EXPECT_EQ(list_checkpoints(run_), std::vector<std::string>{"step_2"});
  const float data[2] = {3.0f, 3.0f};
  write_safetensors(w.path("weights.safetensors"), {{"w", "F32", {2}, data}});
  w.write_text("state.json", "{}");
  w.commit();
  struct stat new_file {};
  ASSERT_EQ(::stat((run_ + "/step_3/weights.safetensors").c_str(), &new_file), 0);
  EXPECT_EQ(new_file.st_ino, old_file.st_ino);
  EXPECT_EQ(load("step_3"), 3.0f);
  EXPECT_EQ(read_all(run_ + "/step_3/state.json"), "{}");
  const auto files = verify_checkpoint(run_ + "/step_3");
  EXPECT_EQ(files.size(), 2u);
  EXPECT_FALSE(fs::exists(run_ + "/step_3/only_in_old.txt"));
  EXPECT_EQ(entries(), (std::vector<std::string>{"latest", "step_2", "step_3"}));
}

TEST_F(CheckpointDirTest, RecyclableIsWhatPruningWouldRemoveNext) {
  EXPECT_EQ(recyclable_checkpoint(run_, 2, "step_9"), "");
  save("step_10", 1.0f);
  EXPECT_EQ(recyclable_checkpoint(run_, 2, "step_20"), "");  // fewer than keep_last
  save("step_2", 1.0f);
  save("keep_best", 1.0f);  // a user's copy: never recycled
  EXPECT_EQ(recyclable_checkpoint(run_, 2, "step_20"), "step_2");
  write_latest_pointer(run_, "step_2");  // resumed from the older one
  EXPECT_EQ(recyclable_checkpoint(run_, 2, "step_20"), "step_10");
  EXPECT_EQ(recyclable_checkpoint(run_, 2, "step_10"), "");  // never the one being written
  EXPECT_EQ(recyclable_checkpoint(run_, 3, "step_20"), "");
  EXPECT_HAS(error_of([&] { recyclable_checkpoint(run_, 0, "step_20"); }),
             "keep_last must be >= 1, got 0");
}

TEST_F(CheckpointDirTest, RecycleMustNameAnotherCommittedCheckpoint) {
  save("step_1", 1.0f);
  EXPECT_HAS(error_of([&] { CheckpointWriter w(run_ + "/step_1", "step_1"); }),
             "the checkpoint to recycle must be a plain directory name other than the one being "
             "written, got 'step_1'");
  EXPECT_HAS(error_of([&] { CheckpointWriter w(run_ + "/step_2", "step_7"); }),
             "step_7: the checkpoint to recycle must be a committed checkpoint (with "
             "manifest.json), got none");
  EXPECT_EQ(entries(), std::vector<std::string>{"step_1"});
}

// A writer holding weights.safetensors ([value, value]) and state.json, not yet committed.
std::unique_ptr<CheckpointWriter> written(const std::string& dir, float value) {
  auto w = std::make_unique<CheckpointWriter>(dir);
  const float data[2] = {value, value};
  write_safetensors(w->path("weights.safetensors"), {{"w", "F32", {2}, data}});
  w->write_text("state.json", R"({"step": 1})");
  return w;
}

TEST_F(CheckpointDirTest, BackgroundCommitsInOrderPointLatestAndPrune) {
  BackgroundCommitter c(run_, 2);
  for (int i = 1; i <= 5; ++i) {
    const std::string name = "step_" + std::to_string(i);
    c.start(written(run_ + "/" + name, static_cast<float>(i)));
    EXPECT_EQ(c.pending(), run_ + "/" + name);
  }
  c.wait();
  EXPECT_EQ(c.pending(), "");
  EXPECT_EQ(read_latest_pointer(run_), "step_5");
  EXPECT_EQ(entries(), (std::vector<std::string>{"latest", "step_4", "step_5"}));
  for (const char* name : {"step_4", "step_5"}) verify_checkpoint(run_ + "/" + name);
  EXPECT_EQ(load("step_4"), 4.0f);
  EXPECT_EQ(load("step_5"), 5.0f);
  c.wait();  // nothing pending: returns at once
}

TEST_F(CheckpointDirTest, BackgroundCommitErrorSurfacesNamingTheCheckpointAndLatestStays) {
  BackgroundCommitter c(run_, 3);
  c.start(written(run_ + "/step_1", 1.0f));
  c.wait();
  auto w = written(run_ + "/step_2", 2.0f);
  fs::create_directory(w->temp_dir() + "/sub");  // commit() refuses subdirectories
  c.start(std::move(w));
  const std::string msg = error_of([&] { c.start(written(run_ + "/step_3", 3.0f)); });
  EXPECT_HAS(msg, run_ + "/step_2: the checkpoint's commit failed: ");
  EXPECT_HAS(msg, "must be regular files, got 'sub'");
  EXPECT_HAS(msg, "the checkpoint before it stays the latest");
  EXPECT_EQ(read_latest_pointer(run_), "step_1");
  // The failed writer removed its temp directory; step_3 was not started (its writer too).
  EXPECT_EQ(entries(), (std::vector<std::string>{"latest", "step_1"}));
  c.wait();  // the error was reported once
}

TEST_F(CheckpointDirTest, BackgroundCommitterDestructorFinishesThePendingCommit) {
  {
    BackgroundCommitter c(run_, 3);
    c.start(written(run_ + "/step_7", 7.0f));
  }
  EXPECT_EQ(read_latest_pointer(run_), "step_7");
  EXPECT_EQ(load("step_7"), 7.0f);
  EXPECT_EQ(entries(), (std::vector<std::string>{"latest", "step_7"}));
}

TEST_F(CheckpointDirTest, BackgroundCommitterRejectsACheckpointOutsideItsRunDir) {
  fs::create_directories(run_ + "/a");
  BackgroundCommitter c(run_ + "/a", 3);
  EXPECT_HAS(error_of([&] { c.start(written(run_ + "/step_1", 1.0f)); }),
             "checkpoint " + run_ + "/step_1 must be in the run directory " + run_ + "/a");
  EXPECT_HAS(error_of([&] { BackgroundCommitter(run_, 0); }), "keep_last must be >= 1, got 0");
}

}  // namespace
}  // namespace sy::io
