// The segment run: each pixel's class, by a segmenter (a model whose forward
// gives class scores per pixel), with the area of each class in the source
// image and, with an output folder, a colour mask and an overlay per image.
#ifndef CNNVIZ_RUN_SEGMENT_H_
#define CNNVIZ_RUN_SEGMENT_H_

#include <cstddef>
#include <functional>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/run/image_facts.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

struct SegmentOptions {
  size_t batch_size = 4;                   // images per forward pass (1 without a crop)
  int decoders = 0;                        // decoding threads; 0 = every core
  int64_t max_pixels = kDefaultMaxPixels;  // images with more fail before decoding
  std::string outdir;                      // empty: no pictures
  double opacity = 0.5;                    // of the class colours in the overlay
};

// One class's pixels in the source image.
struct ClassArea {
  int64_t index = 0;
  int64_t pixels = 0;
  double share = 0;  // of the image's pixels
};

struct SegmentResult : ImageFacts {
  std::vector<ClassArea> areas;  // the classes present, most pixels first (ties: lower index)
  std::string mask, overlay;     // files written, relative to the output folder
  bool done() const { return error || !areas.empty(); }
};

using SegmentSummary = PerImageSummary<SegmentResult>;

// The class of each pixel of one image's class scores [K,h,w] (its
// highest-scoring class; ties: the lower index), CV_32SC1 at h x w.
cv::Mat scores_labels(const at::Tensor& scores);
// The classes present in `labels` (CV_32SC1, indices below `classes`), most
// pixels first (ties: lower index).
std::vector<ClassArea> areas_of(const cv::Mat& labels, int64_t classes);

// Labels the pixels of `images` with `model`: each pixel of the network's
// input takes its highest-scoring class (ties: the lower index), and each
// pixel of the source image the class of the input pixel at its centre
// (io/label_map.h, resize_labels). With an output folder, writes
// STEM_mask.png (class colours) and STEM_overlay.png (the image with every
// class but the background blended in) at the source's size; STEM is the
// run's unique stem of the image. `on_result` sees each successful result
// as soon as it is done; failures go to `progress`, and never stop the
// others. Throws Error(kModel) when the model's output is not per-pixel
// class scores, Error(kOutput) when the folder cannot be written.
SegmentSummary segment(const Model& model, const std::vector<std::string>& images,
                       const SegmentOptions& options, Progress& progress,
                       const std::function<void(const SegmentResult&)>& on_result);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_SEGMENT_H_
