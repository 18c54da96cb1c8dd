// A detector's boxes from its raw dense predictions (model.h, DetectLayout):
// decoding, the score threshold, and non-maximum suppression.
#ifndef CNNVIZ_CORE_DETECTIONS_H_
#define CNNVIZ_CORE_DETECTIONS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cnnviz/core/model.h"

namespace cnnviz {

struct Detection {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // corners, in pixels
  double score = 0;
  int64_t label = 0;
  int64_t anchor = 0;  // its prediction's index among the A anchors
};

// A box an explanation asks about (--box x1,y1,x2,y2[:label]), in the
// network input's pixels: its target is the detections of `label` (of any
// label when -1) that overlap it by at least DetectSettings::match_iou.
// A detection counts with its part inside `area`, the image's place in the
// input (a letterbox's bars and a crop's cut-offs are not the image's):
// the box `cnnviz detect` reports, clipped to the image, matches itself.
struct BoxQuery {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int64_t label = -1;
  double area_x1 = -kUnbounded, area_y1 = -kUnbounded;
  double area_x2 = kUnbounded, area_y2 = kUnbounded;
  static constexpr double kUnbounded = 1e300;
};

struct DetectSettings {
  double min_score = 0.25;  // candidates score above it (strictly)
  double iou = 0.45;        // a box overlapping a better one of its label by more is dropped
  int max_detections = 300;
  // Every class of an anchor above min_score is a candidate, not only its
  // best (ModelInfo::multi_label).
  bool multi_label = false;
  // Explanations only. Each image's box queries, by its row in the pass;
  // an image without any (or past the list's end) has its detections as
  // its targets.
  std::vector<std::vector<BoxQuery>> queries;
  double match_iou = 0.5;  // a detection matches a query at this IoU or more
};

// What each target of each image sums, as indices into that image's
// detections: [image][target]. Target k is detection k, or, for an image
// with box queries, the detections matching query k (possibly none).
using DetectionGroups = std::vector<std::vector<std::vector<size_t>>>;

// The most candidates (by score) non-maximum suppression considers per
// image, as detectors' own post-processing caps them.
constexpr int64_t kMaxNmsCandidates = 30000;

// The settings a detector decodes with unless told otherwise: cnnviz's
// defaults, with the model's own NMS IoU and multi_label where its metadata
// gives them.
DetectSettings detect_defaults(const ModelInfo& info);

// Intersection over union of two boxes (0 when both are empty).
double box_iou(const Detection& a, const Detection& b);

// The detections of `found` (one image's) that match `query`: of its label
// when it has one, overlapping it by IoU >= match_iou; best first.
std::vector<size_t> matching_detections(const std::vector<Detection>& found,
                                        const BoxQuery& query, double match_iou);
// Each image's targets (DetectionGroups) from its detections and
// settings.queries.
DetectionGroups detection_groups(const std::vector<std::vector<Detection>>& detections,
                                 const DetectSettings& settings);

// Each image's detections in `raw` ([N,...] as `layout` says; model.h), in
// the network input's pixels, best first: the candidates whose score is
// above settings.min_score (yolov8: the best class score; yolov5:
// objectness times the best class score; the label is that class; with
// settings.multi_label, every class whose score is above it), at
// most kMaxNmsCandidates of them, then greedy non-maximum suppression per
// label (by decreasing score, ties: the lower anchor), then the first
// settings.max_detections. `classes`: the model's number of classes when
// known (targets.h, known_classes). Throws Error(kModel) naming the model at
// `path`, the output's shape and the layout when they do not fit.
std::vector<std::vector<Detection>> decode_detections(const at::Tensor& raw, DetectLayout layout,
                                                      int64_t classes,
                                                      const DetectSettings& settings,
                                                      const std::string& path);

// `raw` as rows [N, A, 5+C]: cx, cy, w, h, objectness (1 for yolov8), then
// the C class scores; differentiable where `raw` is. Throws as
// decode_detections does.
at::Tensor prediction_rows(const at::Tensor& raw, DetectLayout layout, int64_t classes,
                           const std::string& path);
// decode_detections of rows [N, A, 5+C] (prediction_rows).
std::vector<std::vector<Detection>> decode_rows(const at::Tensor& rows,
                                                const DetectSettings& settings);

// The score of one detection in `rows` [N, A, 5+C] of image n:
// objectness times its class's score at its anchor, [] (differentiable).
at::Tensor detection_score(const at::Tensor& rows, int64_t n, const Detection& d);

// What explaining target k of image n differentiates: the sum of its
// group's detection scores (detection_score), as the rows give them. [N,K]
// with K the most targets of an image (at least 1); `fill` where an image
// has fewer, and where a group is empty. Differentiable where `rows` is.
at::Tensor detection_scores(const at::Tensor& rows,
                            const std::vector<std::vector<Detection>>& detections,
                            const DetectionGroups& groups, double fill);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_DETECTIONS_H_
