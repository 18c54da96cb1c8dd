// Running a visualization method over images and writing every output file
// and the manifest: the IO layer's orchestration of engine, methods and
// rendering. See README, "Outputs", for the file layout.
#ifndef CNNVIZ_EXPLAIN_H_
#define CNNVIZ_EXPLAIN_H_

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/engine.h"
#include "cnnviz/inputs.h"
#include "cnnviz/methods.h"
#include "cnnviz/model.h"
#include "cnnviz/progress.h"

namespace cnnviz {

struct ExplainOptions {
  std::string method;                       // a name from method_table()
  std::vector<std::string> layers;          // --layer (repeatable); empty: the default layer
  bool all_layers = false;                  // every feature layer
  std::optional<std::string> target_class;  // index or label; default: top-1
  int top = 1;                              // maps for each of the top N classes
  std::string outdir = "cnnviz-out";
  bool raw = true;  // write .npy arrays
  std::string colormap = "jet";
  double alpha = 0.5;  // heatmap weight in overlays
  size_t batch_size = 4;
  int decoders = 0;
  Shard shard;                 // this process's share of the images
  bool skip_existing = false;  // reuse complete outputs of earlier runs
  MethodParams params;         // the method's own settings (mean/std: from the model)
};

struct ExplainSummary {
  nlohmann::ordered_json manifest;  // also written to OUTDIR/manifest.json
  size_t images = 0;                // in this shard
  size_t failed = 0;
  size_t skipped = 0;  // complete from an earlier run (--skip-existing)
  bool interrupted = false;
  double compute_ms = 0.0;  // forward, backward passes and methods
  double write_ms = 0.0;    // rendering and writing files
};

// The model as manifests and `classify --json` describe it: name, path, arch,
// weights {kind, source}.
nlohmann::ordered_json model_json(const ModelInfo& info);

// One directory name per input: the file's stem, made unique in input order
// ("cat", "cat-2", ...).
std::vector<std::string> unique_stems(const std::vector<std::string>& images);

// Creates `dir` (and parents) and checks that it is writable; throws
// Error(kOutput) otherwise.
void make_output_dir(const std::string& dir);

// The feature layers of `model` (described by `d`): the metadata's
// feature_layers when it names them, else feature_stages() of its module
// tree.
std::vector<std::string> feature_layers(const Model& model, const Engine::Description& d);

// Grad-CAM's default layer: the metadata's gradcam_layer, else the last
// feature layer; empty when there is none.
std::string default_layer(const Model& model, const Engine::Description& d);

// The layers a method will use on `model` given the options: the requested
// ones, every feature layer for all_layers, or the default layer. Throws
// Error(kUnsupported) when none can be found.
std::vector<std::string> resolve_layers(const Model& model, const ExplainOptions& options);

// Parses a class given as an index or a label (case-insensitive). Throws
// Error(kUsage) with near matches when it names no class of the model.
int64_t parse_class(const std::string& text, const ModelInfo& info, int64_t classes);

// Runs options.method on the images of options.shard and writes
// OUTDIR/<stem>/..., appends each finished image to the journal
// OUTDIR/journal[.shard-K-of-N].jsonl (so an interrupted run loses only the
// images in flight), and at the end writes OUTDIR/manifest.json (sharded:
// manifest.shard-K-of-N.json; `merge_manifests` combines them). Stems are
// made unique over the whole list, so shards agree on directories. A bad
// image gets an error entry and is reported through `progress`; the others
// go on. Stops at the next batch when interrupted(). Throws Error for
// failures that stop the run (unknown method, layer or class; unwritable
// output).
ExplainSummary explain(const Model& model, const std::vector<std::string>& images,
                       const ExplainOptions& options, Progress& progress);

// Combines OUTDIR/manifest.shard-*.json into OUTDIR/manifest.json (images in
// input order). Throws Error(kInput) when there are none or they come from
// different runs. Returns the number of images.
size_t merge_manifests(const std::string& outdir);

}  // namespace cnnviz

#endif  // CNNVIZ_EXPLAIN_H_
