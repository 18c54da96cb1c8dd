// The detect run: the boxes a detector finds in each image (a model whose
// raw dense predictions come in a DetectLayout, core/detections.h), in the
// source image's pixels, and with an output folder the image with its boxes
// drawn.
#ifndef CNNVIZ_RUN_DETECT_H_
#define CNNVIZ_RUN_DETECT_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/detections.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/core/model.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/run/image_facts.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

struct DetectOptions {
  size_t batch_size = 4;                   // images per forward pass
  int decoders = 0;                        // decoding threads; 0 = every core
  int64_t max_pixels = kDefaultMaxPixels;  // images with more fail before decoding
  std::string outdir;                      // empty: no pictures
  DetectSettings settings;
};

struct DetectResult : ImageFacts {
  std::vector<Detection> detections;  // in the source's pixels, clipped to it; best first
  std::string boxes;                  // the picture written, relative to the output folder
  bool computed = false;
  bool done() const { return error || computed; }
};

using DetectSummary = PerImageSummary<DetectResult>;

// A detection in the network input's pixels carried to the source image's
// (the inverse of the resize, crop or letterbox of `box`), clipped to it.
Detection to_source(const Detection& d, const CropBox& box);
// A box of the source image's pixels carried to the network input's (the
// resize, crop or letterbox of `box`), with the image's place in the input
// as its area (BoxQuery).
BoxQuery to_input(const BoxQuery& q, const CropBox& box);
// Whether the box `q`, in the source's pixels, ends within the image `box`
// was made for (its x2 and y2 at most the image's width and height).
bool inside_image(const BoxQuery& q, const CropBox& box);

// Finds the boxes of `images` with the detector `model` (ModelInfo::layout
// says how to read its output). With an output folder, writes STEM_boxes.png,
// the image with each box drawn in its class's colour with its label and
// score; STEM is the run's unique stem of the image. An image with no box
// above the minimum score gets a note naming it, and an empty list: it is
// not a failure. `on_result` sees each computed result as soon as it is
// done; failures go to `progress`, and never stop the others. Throws
// Error(kModel) when the model's output does not fit its layout,
// Error(kOutput) when the folder cannot be written.
DetectSummary detect(const Model& model, const std::vector<std::string>& images,
                     const DetectOptions& options, Progress& progress,
                     const std::function<void(const DetectResult&)>& on_result);

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_DETECT_H_
