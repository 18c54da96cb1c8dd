// The classify run: the top-K classes of every image, in batches, with
// decoding on worker threads ahead of the network.
#ifndef CNNVIZ_CLASSIFY_H_
#define CNNVIZ_CLASSIFY_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/limits.h"
#include "cnnviz/model.h"
#include "cnnviz/predict.h"
#include "cnnviz/progress.h"

namespace cnnviz {

struct ClassifyOptions {
  int top_k = 0;          // classes per image; 0: 5, or all of a model with fewer
  size_t batch_size = 8;  // images per forward pass
  int decoders = 0;       // decoding threads; 0 = every core
  int64_t max_pixels = kDefaultMaxPixels;  // images with more fail before decoding
};

struct ClassifyResult {
  std::string image;
  std::vector<Prediction> predictions;  // top_k, by decreasing probability
  std::optional<std::string> error;     // why the image failed
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
// interrupted(). Throws Error(kUsage) when top_k is not between 1 and the
// model's classes, and Error for failures that stop the whole run.
ClassifySummary classify(const Model& model, const std::vector<std::string>& images,
                         const ClassifyOptions& options, Progress& progress,
                         const std::function<void(const ClassifyResult&)>& on_result);

}  // namespace cnnviz

#endif  // CNNVIZ_CLASSIFY_H_
