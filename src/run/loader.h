// Decoding and preprocessing images on worker threads, ahead of the network.
#ifndef CNNVIZ_SRC_RUN_LOADER_H_
#define CNNVIZ_SRC_RUN_LOADER_H_

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/io/preprocess.h"

namespace cnnviz {

struct LoadedImage {
  size_t index = 0;  // position in the input list
  std::string path;
  at::Tensor input;            // [channels,crop,crop] float32, normalized; undefined on error
  bool grey = false;           // the source has no colour (every pixel R == G == B)
  CropBox box;                 // where `input` lies in the source image
  cv::Mat rgb;                 // the decoded source image, when LoaderOptions::keep_rgb
  std::optional<Error> error;  // why the image could not be loaded
  double load_cpu_ms = 0;      // CPU time spent reading, decoding and preprocessing it
};

struct LoaderOptions {
  size_t batch_size = 8;
  int workers = 0;                         // decoding threads; 0 = every available core
  size_t prefetch = 2;                     // batches decoded ahead of the consumer
  bool keep_rgb = false;                   // keep the decoded image (for overlays)
  int64_t max_pixels = kDefaultMaxPixels;  // larger images fail before decoding
};

// Loads `paths` in order, in batches of options.batch_size, on worker threads
// that run ahead of the consumer by at most `prefetch` batches, so that
// decoding overlaps the network's work. A file that cannot be loaded yields a
// LoadedImage with `error` set; it never stops the others.
class BatchLoader {
 public:
  BatchLoader(std::vector<std::string> paths, Preprocessing preprocessing, LoaderOptions options);
  ~BatchLoader();  // stops and joins the workers
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next batch in input order (failures included); empty when all
  // images have been returned.
  std::vector<LoadedImage> next();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The images of a run that still need loading, and where each stands in the
// whole input list (a run loads fewer when some fail early or are skipped).
struct LoadList {
  std::vector<std::string> paths;
  std::vector<size_t> positions;
  void add(size_t position, const std::string& path) {
    positions.push_back(position);
    paths.push_back(path);
  }
};

// Gives each image of `batch` (loaded from list.paths) its position in the
// whole input list as its index, hands those that failed to `failed`, and
// returns the others in order.
std::vector<LoadedImage*> place_loaded(std::vector<LoadedImage>& batch, const LoadList& list,
                                       const std::function<void(LoadedImage&)>& failed);

}  // namespace cnnviz

#endif  // CNNVIZ_SRC_RUN_LOADER_H_
