#include "cnnviz/run/detect.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>

#include "batching.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/stopwatch.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/io/boxes.h"
#include "cnnviz/io/png.h"
#include "cnnviz/run/manifest.h"
#include "loader.h"

namespace cnnviz {

namespace {

class Detector {
 public:
  Detector(const Model& model, const DetectOptions& options,
           const std::vector<std::string>& images, DetectSummary& summary, Progress& progress)
      : model_(model),
        options_(options),
        stems_(unique_stems(images)),
        summary_(summary),
        progress_(progress) {}

  // One pass over images [begin, end) of `batch`, then each one's boxes and
  // picture.
  void run(std::vector<LoadedImage*>& batch, size_t begin, size_t end) {
    std::vector<at::Tensor> inputs;
    for (size_t i = begin; i < end; ++i) inputs.push_back(batch[i]->input);
    const Clock::time_point t = Clock::now();
    const at::Tensor raw = model_.raw_predictions(at::stack(inputs));
    summary_.network_ms += ms_since(t);
    const std::vector<std::vector<Detection>> found =
        decode_detections(raw, model_.info().layout, known_classes(model_.info()),
                          options_.settings, model_.info().path);
    for (size_t i = begin; i < end; ++i) {
      LoadedImage& img = *batch[i];
      DetectResult& r = summary_.results[img.index];
      r.grey = img.grey;
      r.width = img.box.src_w;
      r.height = img.box.src_h;
      r.input_width = static_cast<int>(img.input.size(2));
      r.input_height = static_cast<int>(img.input.size(1));
      for (const Detection& d : found[i - begin]) r.detections.push_back(to_source(d, img.box));
      r.computed = true;
      if (r.detections.empty()) {
        progress_.note("image '" + img.path + "': no box scores above " +
                       score_text(options_.settings.min_score));
      }
      if (!options_.outdir.empty()) write_picture(img, r);
    }
  }

 private:
  static std::string score_text(double v) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.2f", v);
    return text;
  }

  void write_picture(const LoadedImage& img, DetectResult& r) {
    std::vector<LabelledBox> boxes;
    for (const Detection& d : r.detections) {
      // The palette from its second colour: its first, black, is a segmenter's background.
      boxes.push_back({d.x1, d.y1, d.x2, d.y2, d.label + 1,
                       model_.info().label(d.label) + " " + score_text(d.score)});
    }
    r.boxes = stems_[img.index] + "_boxes.png";
    write_png(options_.outdir + "/" + r.boxes, draw_boxes(img.rgb, boxes), PixelOrder::kRgb);
  }

  const Model& model_;
  const DetectOptions& options_;
  std::vector<std::string> stems_;
  DetectSummary& summary_;
  Progress& progress_;
};

}  // namespace

Detection to_source(const Detection& d, const CropBox& box) {
  const double sx = static_cast<double>(box.src_w) / box.resized_w;
  const double sy = static_cast<double>(box.src_h) / box.resized_h;
  auto clip = [](double v, double hi) { return std::min(std::max(v, 0.0), hi); };
  Detection s = d;
  s.x1 = clip((d.x1 + box.left) * sx, box.src_w);
  s.x2 = clip((d.x2 + box.left) * sx, box.src_w);
  s.y1 = clip((d.y1 + box.top) * sy, box.src_h);
  s.y2 = clip((d.y2 + box.top) * sy, box.src_h);
  return s;
}

BoxQuery to_input(const BoxQuery& q, const CropBox& box) {
  const double sx = static_cast<double>(box.resized_w) / box.src_w;
  const double sy = static_cast<double>(box.resized_h) / box.src_h;
  BoxQuery in{q.x1 * sx - box.left, q.y1 * sy - box.top, q.x2 * sx - box.left, q.y2 * sy - box.top,
              q.label};
  in.area_x1 = -box.left;
  in.area_y1 = -box.top;
  in.area_x2 = box.resized_w - box.left;
  in.area_y2 = box.resized_h - box.top;
  return in;
}

bool inside_image(const BoxQuery& q, const CropBox& box) {
  return q.x2 <= box.src_w && q.y2 <= box.src_h;
}

DetectSummary detect(const Model& model, const std::vector<std::string>& images,
                     const DetectOptions& options, Progress& progress,
                     const std::function<void(const DetectResult&)>& on_result) {
  if (model.info().task != Task::kDetect) {
    throw Error(ErrorCode::kModel, "model '" + model.info().path +
                                       "' is not a detector (its metadata says task " +
                                       task_name(model.info().task) +
                                       "; a detector without metadata needs --layout)");
  }
  const Clock::time_point start = Clock::now();
  DetectSummary summary;
  if (!options.outdir.empty()) make_output_dir(options.outdir);
  Detector detector(model, options, images, summary, progress);
  run_each_image(
      images, model.info().preprocess,
      per_image_loader(model.info().preprocess, options.batch_size, options.decoders,
                       options.max_pixels, !options.outdir.empty()),
      progress, summary,
      [&](std::vector<LoadedImage*>& ok, size_t begin, size_t end) { detector.run(ok, begin, end); },
      on_result);
  summary.run_ms = ms_since(start);
  return summary;
}

}  // namespace cnnviz
