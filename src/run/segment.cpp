#include "cnnviz/run/segment.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>

#include "batching.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/stopwatch.h"
#include "cnnviz/io/label_map.h"
#include "cnnviz/io/png.h"
#include "cnnviz/run/manifest.h"
#include "loader.h"

namespace cnnviz {

cv::Mat scores_labels(const at::Tensor& scores) {
  const at::Tensor best = scores.argmax(0).to(at::kInt).contiguous();
  return cv::Mat(static_cast<int>(best.size(0)), static_cast<int>(best.size(1)), CV_32SC1,
                 best.data_ptr<int32_t>())
      .clone();
}

std::vector<ClassArea> areas_of(const cv::Mat& labels, int64_t classes) {
  std::vector<int64_t> count(static_cast<size_t>(classes), 0);
  for (int y = 0; y < labels.rows; ++y) {
    const int32_t* row = labels.ptr<int32_t>(y);
    for (int x = 0; x < labels.cols; ++x) ++count[static_cast<size_t>(row[x])];
  }
  std::vector<ClassArea> areas;
  const double total = static_cast<double>(labels.total());
  for (int64_t k = 0; k < classes; ++k) {
    const int64_t n = count[static_cast<size_t>(k)];
    if (n > 0) areas.push_back({k, n, static_cast<double>(n) / total});
  }
  std::stable_sort(areas.begin(), areas.end(),
                   [](const ClassArea& a, const ClassArea& b) { return a.pixels > b.pixels; });
  return areas;
}

namespace {

// The classes of one image's [K,H,W] scores at the source's size, CV_32SC1.
cv::Mat source_labels(const at::Tensor& scores, int width, int height) {
  return resize_labels(scores_labels(scores), width, height);
}

class Segmenter {
 public:
  Segmenter(const Model& model, const SegmentOptions& options, const std::vector<std::string>& images,
            SegmentSummary& summary)
      : model_(model), options_(options), stems_(unique_stems(images)), summary_(summary) {}

  // One pass over `batch` (decoded with their source images), then each
  // image's labels, areas and pictures.
  void run(std::vector<LoadedImage*>& batch, size_t begin, size_t end) {
    std::vector<at::Tensor> inputs;
    for (size_t i = begin; i < end; ++i) inputs.push_back(batch[i]->input);
    const Clock::time_point t = Clock::now();
    const at::Tensor scores = model_.pixel_logits(at::stack(inputs));
    summary_.network_ms += ms_since(t);
    for (size_t i = begin; i < end; ++i) {
      LoadedImage& img = *batch[i];
      SegmentResult& r = summary_.results[img.index];
      r.grey = img.grey;
      r.width = img.rgb.cols;
      r.height = img.rgb.rows;
      r.input_width = static_cast<int>(img.input.size(2));
      r.input_height = static_cast<int>(img.input.size(1));
      const cv::Mat labels =
          source_labels(scores[static_cast<int64_t>(i - begin)], r.width, r.height);
      r.areas = areas_of(labels, scores.size(1));
      if (!options_.outdir.empty()) write_pictures(img, labels, r, scores.size(1));
    }
  }

 private:
  void write_pictures(const LoadedImage& img, const cv::Mat& labels, SegmentResult& r,
                      int64_t classes) {
    const std::string& stem = stems_[img.index];
    std::vector<bool> painted(static_cast<size_t>(classes));
    for (int64_t k = 0; k < classes; ++k) {
      painted[static_cast<size_t>(k)] = !is_background_label(model_.info().label(k));
    }
    r.mask = stem + "_mask.png";
    r.overlay = stem + "_overlay.png";
    write_png(options_.outdir + "/" + r.mask, colour_labels(labels), PixelOrder::kRgb);
    write_png(options_.outdir + "/" + r.overlay,
              overlay_labels(img.rgb, labels, painted, options_.opacity), PixelOrder::kRgb);
  }

  const Model& model_;
  const SegmentOptions& options_;
  std::vector<std::string> stems_;
  SegmentSummary& summary_;
};

}  // namespace

SegmentSummary segment(const Model& model, const std::vector<std::string>& images,
                       const SegmentOptions& options, Progress& progress,
                       const std::function<void(const SegmentResult&)>& on_result) {
  const Clock::time_point start = Clock::now();
  SegmentSummary summary;
  if (!options.outdir.empty()) make_output_dir(options.outdir);
  Segmenter segmenter(model, options, images, summary);
  run_each_image(
      images, model.info().preprocess,
      per_image_loader(model.info().preprocess, options.batch_size, options.decoders,
                       options.max_pixels, true),
      progress, summary,
      [&](std::vector<LoadedImage*>& ok, size_t begin, size_t end) { segmenter.run(ok, begin, end); },
      on_result);
  summary.run_ms = ms_since(start);
  return summary;
}

}  // namespace cnnviz
