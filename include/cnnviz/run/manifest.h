// The records a run keeps in its output directory: the manifest (one JSON
// document per run or shard), the journal (one JSON line per finished image,
// for resuming), and the names of both for sharded runs. See docs/guide.md,
// "Outputs" and "Batch runs".
#ifndef CNNVIZ_RUN_MANIFEST_H_
#define CNNVIZ_RUN_MANIFEST_H_

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cnnviz/core/model.h"

namespace cnnviz {

// The model as manifests and `classify --json` describe it: name, path, arch,
// weights {kind, source}.
nlohmann::ordered_json model_json(const ModelInfo& info);

// How an image met the model's input channels: {"grey": whether the source
// has no colour, "conversion": "rgb to grey (ITU-R 601 luma)" for a colour
// image into a 1-channel model, "grey to rgb (copied)" for a grey image into
// a 3-channel one, else null}.
nlohmann::ordered_json input_json(int channels, bool grey);

// One directory name per input: the file's stem, made unique in input order
// ("cat", "cat-2", ...), valid UTF-8 (other bytes become '_'), and never a
// name the run itself writes in OUTDIR (manifest*, journal*, evaluate*,
// index.html, hidden names): "manifest.json.png" gets "manifest.json-image".
std::vector<std::string> unique_stems(const std::vector<std::string>& images);

// An entry's "image": the path as given, and "image_hex" (its bytes in hex)
// when it is not valid UTF-8, so that no name is lost when the manifest is
// written (JSON holds UTF-8 only); image_name() reads it back.
void set_image_name(nlohmann::ordered_json& entry, const std::string& image);
std::string image_name(const nlohmann::ordered_json& entry);

// Creates `dir` (and parents) and checks that it is writable; throws
// Error(kOutput) otherwise.
void make_output_dir(const std::string& dir);

// make_output_dir for a run's OUTDIR, undone when the run fails: a
// directory this object created is removed again if it is still empty when
// an exception leaves the scope (a run refused for a bad option value
// leaves no empty ./cnnviz-out/ behind).
class OutputDir {
 public:
  explicit OutputDir(const std::string& dir);
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

 private:
  std::string dir_;
  bool created_ = false;
  int exceptions_ = 0;
};

// A run's file in OUTDIR: BASE.EXT for a whole run (k = n = 0), or
// BASE.shard-K-of-N.EXT for shard K of N.
struct RunFile {
  std::string name;  // file name inside OUTDIR
  long k = 0, n = 0;
};
// The whole run's file (when present) first, then every shard file in
// increasing K (then N). The one place shard files are found: merge, report
// and --skip-existing all call it. ("manifest", ".json"), ("journal",
// ".jsonl").
std::vector<RunFile> find_run_files(const std::string& outdir, const std::string& base,
                                    const std::string& extension);

// Appends one JSON line per finished image to a journal and flushes it to
// disk, so that after a crash or Ctrl-C the journal lists exactly the
// complete images. append() may be called from any thread.
class Journal {
 public:
  // Opens (creates) `path` for appending. Throws Error(kOutput).
  explicit Journal(const std::string& path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // `entry` with "run_key" added, as one line. Throws Error(kOutput).
  void append(const nlohmann::ordered_json& entry, const std::string& run_key);

 private:
  std::mutex mutex_;
  std::string path_;
  int fd_ = -1;
};

// Holds OUTDIR for one run (or one shard of one): a second run with the same
// `name` ("run", "shard-2-of-4", "evaluate") into the same OUTDIR refuses to
// start instead of mixing its files and journal lines with the first's.
// Shards of one run, with different names, write side by side. The lock is
// an flock on OUTDIR/.cnnviz-lock.<name>, released when the holder ends
// (also by a crash). The holder removes the file when it ends normally; a
// run that locks a file another has just removed takes the new one.
class RunLock {
 public:
  // Throws Error(kOutput) when another process holds it or the lock file
  // cannot be opened (it must not be a symbolic link).
  RunLock(const std::string& outdir, const std::string& name);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

// Throws Error(kOutput) when OUTDIR/`subdir` exists as anything but a real
// directory (a symbolic link would send the maps outside OUTDIR).
void check_image_dir(const std::string& outdir, const std::string& subdir);

// The latest entry without error per image in OUTDIR's journals (whole run
// and shards) whose run_key is `run_key`.
std::map<std::string, nlohmann::ordered_json> read_journals(const std::string& outdir,
                                                            const std::string& run_key);

// True when every file `entry` lists exists under `outdir` (and it lists one).
bool outputs_complete(const std::string& outdir, const nlohmann::ordered_json& entry);

struct MergeResult {
  size_t images = 0;
  long shards = 0;            // N
  std::vector<long> missing;  // the K that were not there (with `partial`)
};

// Combines OUTDIR/manifest.shard-K-of-N.json into OUTDIR/manifest.json
// (images in input order). Throws Error(kInput) when there are none, when
// they are shards of runs split different ways, when shards are missing
// (unless `partial`: then the manifest lists them as "missing_shards"), when
// they come from runs with other settings, or when one is not a cnnviz
// manifest (too large, not JSON, nested too deep, fields of the wrong type).
MergeResult merge_manifests(const std::string& outdir, bool partial = false);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_MANIFEST_H_
