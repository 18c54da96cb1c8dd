// The records a run keeps in its output directory: the manifest (one JSON
// document per run or shard), the journal (one JSON line per finished image,
// for resuming), and the names of both for sharded runs. See README,
// "Outputs" and "Batch runs".
#ifndef CNNVIZ_MANIFEST_H_
#define CNNVIZ_MANIFEST_H_

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cnnviz/model.h"

namespace cnnviz {

// The model as manifests and `classify --json` describe it: name, path, arch,
// weights {kind, source}.
nlohmann::ordered_json model_json(const ModelInfo& info);

// One directory name per input: the file's stem, made unique in input order
// ("cat", "cat-2", ...).
std::vector<std::string> unique_stems(const std::vector<std::string>& images);

// Creates `dir` (and parents) and checks that it is writable; throws
// Error(kOutput) otherwise.
void make_output_dir(const std::string& dir);

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

// The latest entry without error per image in OUTDIR's journals (whole run
// and shards) whose run_key is `run_key`.
std::map<std::string, nlohmann::ordered_json> read_journals(const std::string& outdir,
                                                            const std::string& run_key);

// True when every file `entry` lists exists under `outdir` (and it lists one).
bool outputs_complete(const std::string& outdir, const nlohmann::ordered_json& entry);

// Combines OUTDIR/manifest.shard-*.json into OUTDIR/manifest.json (images in
// input order). Throws Error(kInput) when there are none or they come from
// different runs. Returns the number of images.
size_t merge_manifests(const std::string& outdir);

}  // namespace cnnviz

#endif  // CNNVIZ_MANIFEST_H_
