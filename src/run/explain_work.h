// The explain run's per-image work and the state its writer threads share:
// an image's maps become an ImageWork when its batch is computed; writer
// threads draw and write its maps one by one (ExplainWriters::write_one), and
// the last one to finish writes its contact sheets and journals its manifest
// entry (ExplainWriters::finish). Internal to src/run/explain.cpp.
#ifndef CNNVIZ_SRC_RUN_EXPLAIN_WORK_H_
#define CNNVIZ_SRC_RUN_EXPLAIN_WORK_H_

#include <ATen/core/Tensor.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/model.h"
#include "cnnviz/core/predict.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/image_targets.h"
#include "cnnviz/run/manifest.h"
#include "cnnviz/run/outputs.h"
#include "cnnviz/run/progress.h"
#include "loader.h"

namespace cnnviz {

// One image on its way through the writers: the maps of every rank, the
// source they are drawn over (built once, by the first map that needs it),
// and the parts of its manifest entry known when it was computed.
struct ImageWork {
  size_t position = 0;
  nlohmann::ordered_json entry;  // image, index, dir, input, predictions, targets
  ImageDir dir;
  cv::Mat source_rgb;
  CropBox box;
  bool full_view = false;  // overlays need the network's view of the source
  // [rank][map]: the raw maps (until written) and what writing them gave.
  std::vector<std::vector<FloatArray>> raw;
  std::vector<std::vector<MapFiles>> written;
  std::vector<MapTarget> targets;   // per rank
  std::vector<std::string> layers;  // per map
  std::atomic<size_t> remaining{0};

  const SourceView& view();
  size_t jobs() const;  // maps to write

 private:
  std::once_flag view_once_;
  SourceView view_;
};

// What an image's manifest entry says of a batch it was computed in.
struct BatchFacts {
  const ModelInfo& info;
  const TargetPlan& plan;
  const MethodDef& method;
  const std::optional<Unit>& unit;
  const BatchMaps& maps;
  std::vector<at::Tensor> rank_scores;  // [rank]: each image's differentiated score
  std::vector<std::vector<Prediction>> top;
  at::Tensor probabilities;  // softmax of maps.logits
};

// The batch's facts for `maps` (rank scores, top predictions, probabilities).
BatchFacts batch_facts(const ModelInfo& info, const TargetPlan& plan, const MethodDef& method,
                       const std::optional<Unit>& unit, const BatchMaps& maps, const Score& score);

// Image n of the batch as writer work: its maps moved to the CPU, its
// predictions and targets for the manifest. `img` gives up its source image.
std::shared_ptr<ImageWork> make_image_work(const BatchFacts& facts, size_t n, LoadedImage& img,
                                           const ImageDir& dir, bool full_view);

// What the writer threads share with the loop that feeds them.
struct ExplainWriters {
  const MethodDef& method;
  const OutputSelection& selection;
  const OutputStyle& style;
  Journal& journal;
  const std::string& run_key;
  Progress& progress;
  std::map<size_t, nlohmann::ordered_json>& entries;  // by input position
  int write_delay_ms = 0;                             // test seam: each map takes longer
  std::mutex mutex;                                   // guards entries, bytes, files
  size_t bytes = 0, files = 0;

  // Draws and writes map m of rank r; the last map of an image finishes it.
  void write_one(const std::shared_ptr<ImageWork>& w, size_t r, size_t m);
  // Called once every map of `w` is written: contact sheets, then the
  // image's manifest entry, journaled.
  void finish(ImageWork& w);
  // An image that failed: its error entry, journaled.
  void fail(size_t position, const std::string& image, const std::string& message);
};

}  // namespace cnnviz

#endif  // CNNVIZ_SRC_RUN_EXPLAIN_WORK_H_
