// Decoding and preprocessing images on worker threads, ahead of the network.
#ifndef CNNVIZ_LOADER_H_
#define CNNVIZ_LOADER_H_

#include <ATen/core/Tensor.h>

#include <memory>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/error.h"
#include "cnnviz/limits.h"
#include "cnnviz/model.h"
#include "cnnviz/preprocess.h"

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

}  // namespace cnnviz

#endif  // CNNVIZ_LOADER_H_
