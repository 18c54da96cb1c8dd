// The explain run: a visualization method over images, every output file and
// the manifest. Batches go through the network on the calling thread while a
// pool of writer threads renders and writes the previous ones. See docs/guide.md,
// "Outputs" and "Batch runs".
#ifndef CNNVIZ_RUN_EXPLAIN_H_
#define CNNVIZ_RUN_EXPLAIN_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

struct ExplainOptions {
  std::string method;               // a name from method_table()
  std::vector<std::string> layers;  // --layer (repeatable); empty: the default layer
  bool all_layers = false;          // every feature layer
  // What the maps explain. An image named in `targets_file` gets the classes
  // of its row; the others get `classes` (--class, repeatable: indices or
  // labels) when given, else their `top` most probable classes.
  std::vector<std::string> classes;
  std::string targets_file;  // --targets: CSV or TSV (inputs.h); empty: none
  int top = 1;               // maps for each of the top N classes
  // --unit LAYER:K[:y:x] (targets.h): every image's one target is that
  // channel or neuron instead of a class; excludes classes, targets_file
  // and top. Empty: class targets.
  std::string unit;
  // A segmenter's targets count only the pixels of this mask picture
  // (--region; io/region.h), which has each image's size. Empty: all pixels.
  std::string region;
  // A detector's targets (--box, repeatable; run/image_targets.h): its
  // detection K (best first, from 0), or x1,y1,x2,y2[:label], the
  // detections matching that box of the image's pixels by IoU >= match_iou
  // (summed); an image named in targets_file gets its row's. Default: every
  // detection scoring above min_score, each on its own.
  std::vector<std::string> boxes;
  double min_score = 0.25;
  std::optional<double> match_iou;  // --iou; default 0.5
  std::optional<ScoreKind> score;  // --score; default: the method's (registry)
  bool counterfactual = false;     // explain the negated score
  std::string outdir = "cnnviz-out";
  std::vector<std::string> write;  // --write: the variants to write; empty: all (outputs.h)
  bool raw = true;                 // write .npy arrays (--no-raw: false)
  std::string colormap = "jet";
  double alpha = 0.5;  // heatmap weight in overlays
  size_t batch_size = 4;
  int decoders = 0;                        // decoding threads; 0 = every core
  int writers = 0;                         // rendering and writing threads; 0 = every core
  int64_t max_pixels = kDefaultMaxPixels;  // images with more fail before decoding
  Shard shard;                             // this process's share of the images
  bool skip_existing = false;              // reuse complete outputs of earlier runs
  MethodParams params;                     // the method's own settings (mean/std: from the model)
  int test_write_delay_ms = 0;             // test seam: each map takes this much longer to write
};

struct ExplainSummary {
  nlohmann::ordered_json manifest;  // also written to OUTDIR/manifest.json
  size_t images = 0;                // in this shard
  size_t failed = 0;
  size_t skipped = 0;          // complete from an earlier run (--skip-existing)
  size_t default_targets = 0;  // with --targets: images of this shard it does not name
  bool interrupted = false;
  size_t writers = 0;         // writer threads
  double compute_ms = 0.0;    // forward, backward passes and methods (the calling thread)
  std::vector<double> batch_compute_ms;  // compute_ms per batch, in order (warm vs first)
  double write_ms = 0.0;      // rendering and writing: wall time summed over writer threads
  double write_cpu_ms = 0.0;  // the CPU time the writers used
  double wait_ms = 0.0;       // the calling thread waiting for writers (full queue, the end)
  double tail_ms = 0.0;       // after the last batch computed, until every file was written
  size_t bytes_written = 0;   // in the files the manifest lists (this run's, not skipped ones)
  size_t files_written = 0;
};

// Runs options.method on the images of options.shard and writes
// OUTDIR/<stem>/..., appends each finished image to the journal
// OUTDIR/journal[.shard-K-of-N].jsonl once all its files are written (so an
// interrupted run loses only the images in flight), and at the end writes
// OUTDIR/manifest.json (sharded: manifest.shard-K-of-N.json;
// `merge_manifests` combines them). Stems are made unique over the whole
// list, so shards agree on directories. A bad image gets an error entry and
// is reported through `progress`; the others go on. Stops at the next batch
// when interrupted() and finishes writing what was computed. Throws Error
// for failures that stop the run (unknown method, layer or class; unwritable
// output).
ExplainSummary explain(const Model& model, const std::vector<std::string>& images,
                       const ExplainOptions& options, Progress& progress);

// The line that ends a run, saying where its files went and what to open
// first: "wrote 14 files to out/snake/; start with out/snake/..._contact.png"
// for one image, "wrote 140 files for 10 images to out/; `cnnviz report
// out` makes a page of them" for several. Empty when nothing was written.
std::string where_files_went(const ExplainSummary& summary, const std::string& outdir);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_EXPLAIN_H_
