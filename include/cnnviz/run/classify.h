// The classify run: the top-K classes of every image, in batches, with
// decoding on worker threads ahead of the network.
#ifndef CNNVIZ_RUN_CLASSIFY_H_
#define CNNVIZ_RUN_CLASSIFY_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/predict.h"
#include "cnnviz/run/image_targets.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

struct ClassifyOptions {
  int top_k = 0;                           // classes per image; 0: 5, or all of a model with fewer
  size_t batch_size = 8;                   // images per forward pass
  int decoders = 0;                        // decoding threads; 0 = every core
  int64_t max_pixels = kDefaultMaxPixels;  // images with more fail before decoding
  // --class, --targets: classes whose scores each image also reports (top
  // is not used: the predictions are the top classes).
  TargetRequest targets;
};

// An image's score for one of its given classes.
struct TargetScore {
  int64_t index = 0;
  std::string spec;    // as written
  std::string source;  // "class" or "targets"
  double logit = 0, probability = 0;
  int64_t rank = 0;  // 1 + the classes more probable (ties: the lower index first)
};

struct ClassifyResult {
  std::string image;
  std::vector<Prediction> predictions;  // top_k, by decreasing probability
  std::vector<TargetScore> targets;     // its given classes, if any
  std::optional<std::string> error;     // why the image failed
  bool grey = false;                    // the source has no colour (manifest.h: input_json)
  bool done() const { return error || !predictions.empty(); }
};

struct ClassifySummary {
  std::vector<ClassifyResult> results;  // one per image, in input order
  size_t failed = 0;
  bool interrupted = false;
  double run_ms = 0;         // from the first decode to the last result
  double network_ms = 0;     // in the forward passes
  double wait_ms = 0;        // waiting for decoded images
  double decode_cpu_ms = 0;  // CPU time of decoding and preprocessing, all images
};

// Classifies `images`; `on_result` sees each successful result (on the
// calling thread) as soon as its batch is done, in input order within the
// batch; failures go to `progress`. Stops at the next batch when
// interrupted(). An image whose given class does not exist fails. Throws
// Error(kUsage) when top_k is not between 1 and the model's classes or a
// --class does not exist, Error(kInput) for a targets file that cannot be
// read, and Error for failures that stop the whole run.
ClassifySummary classify(const Model& model, const std::vector<std::string>& images,
                         const ClassifyOptions& options, Progress& progress,
                         const std::function<void(const ClassifyResult&)>& on_result);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_CLASSIFY_H_
