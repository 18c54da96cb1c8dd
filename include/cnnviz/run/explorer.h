// The explorer behind `cnnviz serve`: images (given and uploaded), models,
// classifications and every map of a method for one image and target, from
// one pass, cached. One worker thread runs all model work in request order
// from a bounded queue, so one model engine serves every client; callers
// (the HTTP server's threads) wait for their job, and a job whose callers
// all went away before it started is dropped. No HTTP here: see server.h.
#ifndef CNNVIZ_RUN_EXPLORER_H_
#define CNNVIZ_RUN_EXPLORER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/detections.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/model_store.h"
#include "cnnviz/core/predict.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/segment.h"

namespace cnnviz {

// An image id or model name that names nothing the explorer has.
class NotFound : public Error {
 public:
  explicit NotFound(const std::string& message) : Error(ErrorCode::kUsage, message) {}
};

// The job queue is full: try again after `retry_seconds`.
class Busy : public Error {
 public:
  Busy(const std::string& message, int retry_seconds)
      : Error(ErrorCode::kRuntime, message), retry_seconds(retry_seconds) {}
  int retry_seconds;
};

// Every caller of a job went away before it finished.
class Cancelled : public Error {
 public:
  Cancelled() : Error(ErrorCode::kRuntime, "request cancelled: the client went away") {}
};

struct ExplorerOptions {
  std::string default_model;        // a name from `models` (the one -m loaded)
  std::vector<std::string> images;  // image files, in the order the page lists them
  // Directories the images were found in: an image must lie inside one of
  // them once links are resolved (or be one of `images` given by name), else
  // it is left out.
  std::vector<std::string> roots;
  int64_t max_pixels = kDefaultMaxPixels;
  size_t max_upload_bytes = size_t{64} << 20;
  size_t max_uploads = 64;                 // the oldest are dropped beyond this
  size_t cache_bytes = size_t{512} << 20;  // maps kept (LRU), raw float32 bytes
  size_t queue = 16;                       // jobs waiting for the worker at most
  size_t loaded_models = 2;                // models kept loaded (LRU)
  int test_job_delay_ms = 0;               // test seam: every job takes this much longer
};

// Loads a model by the name /api/models lists (the CLI's search path and,
// for the default model, its overrides). Called on the worker thread.
using ModelLoader = std::function<Model(const std::string& name)>;
// Lists the models a client may switch to.
using ModelLister = std::function<std::vector<ModelEntry>()>;
// True once the caller's client has gone away (polled while it waits).
using GoneCheck = std::function<bool()>;

struct ImageRef {
  std::string id;    // what requests name it by (a relative path, or "upload-<hex>")
  std::string name;  // what the page shows
};

// What a model says about an image: a classifier's top classes, a
// detector's detections, or a segmenter's classes and their areas.
struct Classification {
  std::string image, model;
  Task task = Task::kClassify;
  int width = 0, height = 0;  // of the source image
  CropBox box;                // the network's input square in the source
  std::vector<Prediction> predictions;  // a classifier's
  std::vector<float> logits;            // of the predicted classes, in the same order
  // A detector's detections in the source's pixels, best first, decoded
  // with detect_defaults() of the model (what box=K counts).
  std::vector<Detection> detections;
  DetectSettings settings;
  std::vector<ClassArea> areas;         // a segmenter's classes in the source's pixels, most first
  int grid_width = 0, grid_height = 0;  // a segmenter's output grid (SegmentGrid)
  std::vector<std::string> labels;      // of the predictions, detections or areas, in their order
  double ms = 0.0;                  // worker time (0 when cached)
};

// A segmenter's class of each pixel of its output grid, which the network's
// input square (Classification::box) covers.
struct SegmentGrid {
  int width = 0, height = 0;
  std::vector<uint16_t> labels;  // row by row
};

// What a map set is asked for.
struct MapRequest {
  std::string image, model, method;
  std::optional<int64_t> cls;      // none: the image's most probable class
  std::optional<ScoreKind> score;  // none: the method's default
  bool counterfactual = false;
  // A detector's target, as --box takes it: K (its K-th detection, best
  // first from 0) or x1,y1,x2,y2[:label] in the source's pixels; empty: 0.
  std::string box;
};

struct ExplorerMap {
  std::string layer;  // "" for an input-space map
  int head = -1;      // one attention head's map of `layer` (the method's every_head); -1: none
  MapKind kind = MapKind::kLayerMap;
  FloatArray raw;  // [h,w] layer map or [3,H,W] input-space map, as the CLI's .npy
};

// Every map of one method for one image and target, from one pass.
struct MapSet {
  MapRequest request;  // with the class and score resolved
  const MethodDef* method = nullptr;
  std::string label;
  // Softmax probability of the class; a segmenter's: the class's share of its
  // output's pixels; a detector's: the target's score.
  double probability = 0.0;
  Score score;
  int input_width = 0, input_height = 0;  // the network's input, pixels
  CropBox box;
  int width = 0, height = 0;  // of the source image
  std::vector<ExplorerMap> maps;
  Task task = Task::kClassify;
  // A detector's: the target as asked for (request.box, "0" when none),
  // its box in the source's pixels with its score (the detection's, or
  // the query's box with the matching detections' summed score), and the
  // detections it stands for (their indices, best first from 0).
  std::optional<Detection> target;
  std::vector<int64_t> matched;
  double compute_ms = 0.0;                           // worker time of the pass and the method
  std::shared_ptr<const std::vector<float>> logits;  // every class's logit for the image
  size_t bytes() const;
};

struct MapSetResult {
  std::shared_ptr<const MapSet> set;
  bool cached = false;
  double queue_ms = 0.0;  // waiting for the worker
};

struct ExplorerStats {
  size_t jobs_done = 0, jobs_cancelled = 0, jobs_rejected = 0;
  size_t cache_hits = 0, cache_misses = 0, cached_sets = 0, cache_bytes = 0;
  size_t queued = 0;
};

class Explorer {
 public:
  // Starts the worker. Throws Error(kUsage) when no image is left after the
  // root check and none may be uploaded (never: uploads are always allowed).
  Explorer(ExplorerOptions options, ModelLoader loader, ModelLister lister);
  ~Explorer();  // stops the worker after the job it is running
  Explorer(const Explorer&) = delete;
  Explorer& operator=(const Explorer&) = delete;

  const ExplorerOptions& options() const;
  // What the root check left out (one line each).
  const std::vector<std::string>& notes() const;
  // The images given that are missing or not regular files, left out (one
  // line each, naming the image).
  const std::vector<std::string>& warnings() const;

  std::vector<ImageRef> images() const;
  std::vector<ImageRef> uploads() const;
  // Checks the size and the header's pixel count before decoding; throws
  // Error(kInput) naming `name` for an image that is too large, not an image
  // or corrupt. The same bytes give the same id.
  ImageRef add_upload(const std::string& bytes, const std::string& name);
  // The decoded image as JPEG. Throws NotFound for an unknown id,
  // Error(kInput) when the file cannot be decoded.
  std::vector<uint8_t> image_jpeg(const std::string& id);

  std::vector<ModelEntry> models() const;

  // Model work, through the queue. Each throws NotFound (unknown image,
  // model, method or layer), Error (bad request: class out of range, score
  // the method cannot explain), Busy (the queue is full) or Cancelled.
  Classification classify(const std::string& image, const std::string& model, int top,
                          const GoneCheck& gone);
  MapSetResult maps(const MapRequest& request, const GoneCheck& gone);
  // The model's feature stages and default layer.
  std::pair<std::vector<std::string>, std::string> layers(const std::string& model,
                                                          const GoneCheck& gone);
  std::vector<std::string> labels(const std::string& model, const GoneCheck& gone);
  // A segmenter's pixel classes for the image (as classify() found them).
  // Throws Error(kUsage) for a model that is not a segmenter.
  SegmentGrid segments(const std::string& image, const std::string& model, const GoneCheck& gone);

  ExplorerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The layers `method` is computed at in the explorer, as /api/methods says:
// "all" (every feature stage, one pass), "default" (its default layer: a
// method with a forward pass per channel), "global-pool", "optional"
// (input space, and layers when asked: every feature stage) or "none".
std::string explorer_layer_use(const MethodDef& method);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_EXPLORER_H_
